#!/usr/bin/env bash
# bench/archives.sh: history from the bulk archives, beside COPY and REST.
#
#   bench/archives.sh [MONTHS] [REPEATS] [YEAR_MONTHS]
#                     (defaults: 2 months, 3 repeats, 12 months)
#
# Import: MONTHS of BTCUSDT 1m from 2023-01 through mdfeed_backfill with
# the archives on (monthly zips + CHECKSUMs from the fake exchange), into an
# empty table; its rows/s is the job's rows over finished_at - started_at.
# Beside it, in the same repeat, COPY of the very same rows (exported
# once) into the same emptied table.  The fake builds every zip in Python
# when it is asked, so the time curl takes to download the same files is
# printed too: that share of the job is the fake's, not mdfeed's.
#
# A year: YEAR_MONTHS of ETHUSDT 1m through the archives, then the same
# range with mdfeed.binance_archive_url = '' (REST only), both with the
# fake's weight limit at Binance's (2,400 a minute; mdfeed takes 80 %).
# Both must end with the same rows.
#
# Needs the extension installed (make install); runs its own cluster and
# fake exchange, and removes them at exit.
set -euo pipefail

months=${1:-2}
repeats=${2:-3}
year_months=${3:-12}
. "$(dirname "$0")/lib.sh"
bench_init archives
bench_fake fake fake_binance.py --weight-limit 2400
url=http://127.0.0.1:$fake_port
bench_cluster 5481 <<EOF
mdfeed.database = 'postgres'
mdfeed.binance_rest_url = '$url'
mdfeed.binance_archive_url = '$url'
mdfeed.binance_ws_url = 'ws://127.0.0.1:9/market'
mdfeed.stream_enabled = off
mdfeed.derivatives_enabled = off
mdfeed.backfill_workers = 1
max_worker_processes = 16
shared_buffers = 512MB
max_wal_size = 4GB
synchronous_commit = off
EOF
psql_ -c "CREATE EXTENSION mdfeed"

# job_secs ID: waits for a job and prints its run time in seconds
job_secs() {
	local state
	state=$(psql_ -c "SELECT mdfeed_wait($1, '1 hour')")
	[[ $state == succeeded ]] || { echo "job $1 $state: $(psql_ -c "SELECT error FROM mdfeed.jobs WHERE id = $1")" >&2; exit 1; }
	psql_ -c "SELECT extract(epoch FROM finished_at - started_at) FROM mdfeed.jobs WHERE id = $1"
}

end=$(date -u -d "2023-01-01 + $months months" +%Y-%m-%d)
csv=$work/rows.csv
imp=() cop=() rat=() dl=()
for r in $(seq "$repeats"); do
	psql_ -c "TRUNCATE mdfeed.candles_1m"
	id=$(psql_ -c "SELECT mdfeed_backfill('BTCUSDT', '1m', '2023-01-01', '$end')")
	secs=$(job_secs "$id")
	rows=$(psql_ -c "SELECT archive_rows FROM mdfeed.jobs WHERE id = $id")
	rest=$(psql_ -c "SELECT rest_rows FROM mdfeed.jobs WHERE id = $id")
	[[ $rest -eq 0 ]] || echo "repeat $r: $rest rows came from REST" >&2
	if [[ ! -s $csv ]]; then
		psql_ -c "COPY mdfeed.candles_1m TO '$csv' WITH (FORMAT csv)"
	fi
	psql_ -c "TRUNCATE mdfeed.candles_1m"
	t0=$(now_ns)
	psql_ -c "COPY mdfeed.candles_1m FROM '$csv' WITH (FORMAT csv)"
	t1=$(now_ns)
	copy_secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
	# the fake's own share: the same files, downloaded with curl
	t0=$(now_ns)
	for m in $(seq 0 $((months - 1))); do
		p=$(date -u -d "2023-01-01 + $m months" +%Y-%m)
		curl -fsS -o /dev/null "$url/data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-$p.zip"
		curl -fsS -o /dev/null "$url/data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-$p.zip.CHECKSUM"
	done
	t1=$(now_ns)
	dl_secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
	a=$(awk -v n="$rows" -v s="$secs" 'BEGIN { printf "%d", n / s }')
	c=$(awk -v n="$rows" -v s="$copy_secs" 'BEGIN { printf "%d", n / s }')
	x=$(awk -v a="$a" -v c="$c" 'BEGIN { printf "%.3f", a / c }')
	echo "repeat $r: $rows rows; archive import $secs s ($a rows/s), COPY $copy_secs s ($c rows/s), ratio $x; curl of the same files from the fake $dl_secs s"
	imp+=("$a") cop+=("$c") rat+=("$x") dl+=("$dl_secs")
done
echo "archive import rows/s: $(bench_stats "${imp[@]}")"
echo "COPY rows/s:           $(bench_stats "${cop[@]}")"
echo "import / COPY:         $(bench_stats %.3f "${rat[@]}")"
echo "curl of the files (s): $(bench_stats %.3f "${dl[@]}")"

# ---- a year: archives beside REST under the real weight limit ----
yend=$(date -u -d "2023-01-01 + $year_months months" +%Y-%m-%d)
id=$(psql_ -c "SELECT mdfeed_backfill('ETHUSDT', '1m', '2023-01-01', '$yend')")
asecs=$(job_secs "$id")
arows=$(psql_ -c "SELECT rows_written FROM mdfeed.jobs WHERE id = $id")
psql_ -c "DELETE FROM mdfeed.candles_1m WHERE symbol = 'ETHUSDT'"
psql_ -c "ALTER SYSTEM SET mdfeed.binance_archive_url = ''" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
w0=$(curl -fsS "$url/_fake/stats" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["weight_total"])')
id=$(psql_ -c "SELECT mdfeed_backfill('ETHUSDT', '1m', '2023-01-01', '$yend')")
rsecs=$(job_secs "$id")
rrows=$(psql_ -c "SELECT rows_written FROM mdfeed.jobs WHERE id = $id")
w1=$(curl -fsS "$url/_fake/stats" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["weight_total"])')
[[ $arows -eq $rrows ]] || { echo "the two legs wrote $arows and $rrows rows" >&2; exit 1; }
echo "a year of 1m ($year_months months, $arows rows): archives $asecs s, REST $rsecs s (weight $((w1 - w0)) at 2,400 a minute, 80 % of it)"
awk -v a="$asecs" -v r="$rsecs" -v n="$arows" 'BEGIN { printf "archives %d rows/s, REST %d rows/s: archives %.1f times faster\n", n / a, n / r, r / a }'
