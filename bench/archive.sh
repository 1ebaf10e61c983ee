#!/usr/bin/env bash
# bench/archive.sh: the bulk-archive import of mdfeed_backfill (issue 11),
# beside COPY, and beside REST under Binance's real weight limit.
#
#   bench/archive.sh [MONTHS] [REPEATS] [YEAR_MONTHS]
#                    (defaults: 3 months, 3 repeats, 12 months)
#
# One cluster and one fake exchange (test/fake_exchange/fake_binance.py
# --weight-limit 2400, Binance's real limit; mdfeed spends 80 % of it,
# mdfeed.rest_weight_share) serving REST and the archives on one port.
#
# 1. Archive import beside COPY: MONTHS whole months of BTCUSDT 1m from
#    2023-01-01, one mdfeed_backfill into an empty table, read from the
#    monthly zips; its time is the job's started_at -> finished_at in
#    mdfeed.jobs.  Then the same rows, exported with COPY TO, in one COPY
#    FROM into the emptied table (timed around psql).  Each repeat prints
#    both rows/s and the ratio job/COPY; the summary gives min and median.
#    The fake builds a zip in Python when a file is first asked for (about
#    0.3 s a monthly 1m file) and keeps the last 64 answers it built, as a
#    CDN would serve static files.  So that the job measures mdfeed, the
#    files are downloaded once with curl beforehand: that cold download
#    (what building them costs the fake) is printed once, and a warm
#    download of the same files (what serving them costs) with every
#    repeat, so a reader sees how much of a job is the fake.
# 2. Archives beside REST: YEAR_MONTHS of ETHUSDT 1m from 2023-01-01 through
#    the archives (files downloaded beforehand as above), then, emptied, the
#    same range with mdfeed.binance_archive_url = '' (ALTER SYSTEM and a
#    reload) through REST only, the job started just after a clock minute
#    begins: the weight limit is per clock minute (fixed windows, the fake's
#    and mdfeed's alike), so a job that starts late in a minute gets two
#    windows' allowance for the price of a few seconds.  Prints rows/s of
#    both, the ratio, the weight REST spent and the minutes it spanned, and
#    checks that both legs store the same rows (count and an md5 of every
#    column but updated_at).  REST at 1920 weight a minute, 2 weight a page
#    of 499, gets 479,040 candles a window: a range that needs no more than
#    one window (YEAR_MONTHS < 11) is not held back by the limit at all, and
#    its REST rate is the burst rate of mdfeed and the fake, which the
#    script says.  A year needs 2,108 weight: two windows, about a minute.
#
# Needs the extension installed (make install) and curl; runs its own
# cluster and fake exchange, and removes them at exit.
set -euo pipefail

months=${1:-3}
repeats=${2:-3}
year_months=${3:-12}
. "$(dirname "$0")/lib.sh"
bench_init archive
bench_fake fake fake_binance.py --weight-limit 2400
url=http://127.0.0.1:$fake_port
bench_cluster 5481 <<EOF
mdfeed.database = 'postgres'
mdfeed.binance_rest_url = '$url'
mdfeed.binance_archive_url = '$url'
mdfeed.binance_ws_url = 'ws://127.0.0.1:$fake_port/market'
mdfeed.intervals = '1m'
mdfeed.job_poll_interval = '500ms'
mdfeed.derivatives_enabled = off
max_worker_processes = 16
shared_buffers = 512MB
max_wal_size = 4GB
EOF

psql_ -c "CREATE EXTENSION mdfeed"
for _ in $(seq 100); do
	[[ $(psql_ -c "SELECT count(*) FROM mdfeed.instruments WHERE symbol IN ('BTCUSDT', 'ETHUSDT')") -ge 2 ]] && break
	sleep 0.2
done

from=2023-01-01
month_list() { # SYMBOL N: the archive paths of N monthly 1m files from $from, zip and CHECKSUM
	local ym
	for m in $(seq 0 $(( $2 - 1 ))); do
		ym=$(date -u -d "$from +$m months" +%Y-%m)
		echo "/data/futures/um/monthly/klines/$1/1m/$1-1m-$ym.zip"
		echo "/data/futures/um/monthly/klines/$1/1m/$1-1m-$ym.zip.CHECKSUM"
	done
}
download() { # SYMBOL N: downloads those files one after the other; prints ms and bytes
	local t0 t1 bytes=0 b
	t0=$(now_ns)
	for p in $(month_list "$1" "$2"); do
		b=$(curl -sS --fail -o /dev/null -w '%{size_download}' "$url$p")
		bytes=$(( bytes + b ))
	done
	t1=$(now_ns)
	echo "$(( (t1 - t0) / 1000000 )) $bytes"
}
backfill() { # SYMBOL TO: queues, waits, checks success; prints the job id
	local id state
	id=$(psql_ -c "SELECT mdfeed_backfill('$1', '1m', '$from', '$2')")
	state=$(psql_ -c "SELECT mdfeed_wait($id, '15 min')")
	if [[ $state != succeeded ]]; then
		echo "job $id: $state: $(psql_ -c "SELECT row_to_json(j) FROM mdfeed.jobs j WHERE id = $id")" >&2
		exit 1
	fi
	echo "$id"
}
job_ms() { psql_ -c "SELECT (extract(epoch FROM finished_at - started_at) * 1000)::bigint FROM mdfeed.jobs WHERE id = $1"; }
job_col() { psql_ -c "SELECT $2 FROM mdfeed.jobs WHERE id = $1"; }
fingerprint() {
	psql_ -c "SELECT count(*) || ' ' || md5(string_agg(concat_ws(',', open_time, close_time, open, high, low, close, volume,
		quote_volume, taker_buy_base_volume, taker_buy_quote_volume, trades, closed), E'\n' ORDER BY open_time))
		FROM mdfeed.candles_1m WHERE symbol = '$1'"
}
fake_stat() { curl -sS "$url/_fake/stats" | /usr/bin/python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
empty() { psql_ -c "TRUNCATE mdfeed.candles_1m" -c "CHECKPOINT"; }

# ---- 1: archive import beside COPY ----
to=$(date -u -d "$from +$months months" +%F)
read -r cold_ms cold_bytes < <(download BTCUSDT "$months")
echo "archive import: BTCUSDT 1m $from..$to ($months monthly files), $repeats repeats"
echo "fake, cold (first download, the fake builds each file): $cold_ms ms for $(( 2 * months )) files, $cold_bytes bytes, by curl one at a time"
job_rates=()
copy_rates=()
ratios=()
warm=()
for r in $(seq "$repeats"); do
	read -r warm_ms _ < <(download BTCUSDT "$months")
	warm+=("$warm_ms")
	empty
	id=$(backfill BTCUSDT "$to")
	ms=$(job_ms "$id")
	read -r n arows rrows files < <(psql_ -F ' ' -c "SELECT rows_written, archive_rows, rest_rows, archive_files FROM mdfeed.jobs WHERE id = $id")
	stored=$(psql_ -c "SELECT count(*) FROM mdfeed.candles_1m")
	psql_ -c "COPY mdfeed.candles_1m TO '$work/rows.csv' CSV"
	empty
	t0=$(now_ns)
	psql_ -c "COPY mdfeed.candles_1m FROM '$work/rows.csv' CSV"
	t1=$(now_ns)
	job_rps=$(( stored * 1000 / ms ))
	copy_rps=$(( stored * 1000000000 / (t1 - t0) ))
	ratio=$(awk -v a="$job_rps" -v b="$copy_rps" 'BEGIN { printf "%.3f", a / b }')
	printf 'repeat %d: job %d rows (archive %d, REST %d, %d files) in %d ms = %d rows/s; COPY %d rows in %d ms = %d rows/s; ratio %s; fake warm download %d ms\n' \
		"$r" "$n" "$arows" "$rrows" "$files" "$ms" "$job_rps" "$stored" $(( (t1 - t0) / 1000000 )) "$copy_rps" "$ratio" "$warm_ms"
	[[ $n -eq $stored && $rrows -eq 0 ]] || echo "  odd: rows_written $n, stored $stored, rest_rows $rrows (expected all from the archives)"
	job_rates+=("$job_rps")
	copy_rates+=("$copy_rps")
	ratios+=("$ratio")
done
echo "summary: archive job rows/s $(bench_stats "${job_rates[@]}"); COPY rows/s $(bench_stats "${copy_rates[@]}"); job/COPY $(bench_stats %.3f "${ratios[@]}")"
echo "summary: the fake serving the same files (warm, curl) $(bench_stats "${warm[@]}") ms; building them (cold, once) $cold_ms ms"

# ---- 2: archives beside REST under the weight limit ----
to=$(date -u -d "$from +$year_months months" +%F)
(( 2 * (months + year_months) <= 64 )) || echo "note: more files than the fake keeps (64): some archive downloads of the job are cold"
echo "archives vs REST: ETHUSDT 1m $from..$to ($year_months months), fake weight limit 2400 a minute, mdfeed.rest_weight_share $(psql_ -c 'SHOW mdfeed.rest_weight_share')"
read -r cold_ms cold_bytes < <(download ETHUSDT "$year_months")
echo "fake, cold (first download): $cold_ms ms for $(( 2 * year_months )) files, $cold_bytes bytes"
empty
w0=$(fake_stat "['weight_total']")
id=$(backfill ETHUSDT "$to")
w1=$(fake_stat "['weight_total']")
a_ms=$(job_ms "$id")
a_files=$(job_col "$id" archive_files)
a_rest=$(job_col "$id" rest_rows)
read -r a_n a_md5 < <(fingerprint ETHUSDT)
a_rps=$(( a_n * 1000 / a_ms ))
echo "archives: $a_n rows ($a_files files, REST rows $a_rest, REST weight $(( w1 - w0 ))) in $a_ms ms = $a_rps rows/s"

psql_ -c "ALTER SYSTEM SET mdfeed.binance_archive_url = ''" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
empty
# start just after a clock minute begins (both the fake's window and mdfeed's)
now_ms=$(( $(now_ns) / 1000000 ))
sleep "$(awk -v w=$(( 60000 - now_ms % 60000 + 500 )) 'BEGIN { printf "%.3f", w / 1000 }')"
w0=$(fake_stat "['weight_total']")
l0=$(fake_stat "['rate_limited_429']")
id=$(backfill ETHUSDT "$to")
w1=$(fake_stat "['weight_total']")
l1=$(fake_stat "['rate_limited_429']")
r_ms=$(job_ms "$id")
r_arch=$(job_col "$id" archive_rows)
r_req=$(job_col "$id" requests)
span=$(psql_ -c "SELECT (extract(epoch FROM date_trunc('minute', finished_at)) - extract(epoch FROM date_trunc('minute', started_at)))::int / 60 + 1 FROM mdfeed.jobs WHERE id = $id")
read -r r_n r_md5 < <(fingerprint ETHUSDT)
r_rps=$(( r_n * 1000 / r_ms ))
weight=$(( w1 - w0 ))
echo "REST: $r_n rows ($r_req requests, weight $weight, archive rows $r_arch, 429s $(( l1 - l0 ))) in $r_ms ms = $r_rps rows/s, over $span clock minute(s)"
if (( weight <= 1920 )); then
	echo "  note: $weight weight fits in one minute's allowance (1920): the weight limit did not hold this leg back; this is the burst rate, not the limit's (a year of 1m needs 2108)"
fi
ratio=$(awk -v a="$a_rps" -v b="$r_rps" 'BEGIN { printf "%.2f", a / b }')
echo "summary: archives $a_rps rows/s; REST $r_rps rows/s; archives/REST $ratio"
if [[ $a_n -eq $r_n && $a_md5 == "$r_md5" ]]; then
	echo "check: both legs stored the same $a_n rows (md5 $a_md5)"
else
	echo "check FAILED: archives $a_n rows md5 $a_md5, REST $r_n rows md5 $r_md5"
	exit 1
fi
