#!/usr/bin/env bash
# bench/shards.sh: shards on distinct addresses against one server under the
# exchange's per-IP weight limit, and the replication lag from a shard's
# commit to the analytics server (issue 12).
#
#   bench/shards.sh [SECONDS] [REPEATS]     (defaults: 150 s, 2 repeats)
#   WEIGHT_LIMIT=300: the fake's weight limit a minute per IP
#   BENCH_LOG=FILE: keep the four servers' logs there
#
# One fake exchange (test/fake_exchange/fake_binance.py --weight-limit
# WEIGHT_LIMIT --synthetic 24, forming kline frames every 250 ms), which
# keeps the weight limit of each client IP apart, in clock-minute windows,
# as Binance does; four clusters in /tmp:
#   one     mdfeed.shard '0/1' from 127.0.0.2             (leg ONE)
#   s0, s1  mdfeed.shard '0/2' from 127.0.0.3, '1/2' from 127.0.0.4
#                                                          (leg TWO)
#   an      mdfeed.mode 'replica', subscribed to the publication
#           mdfeed_publish('mdfeed_data') of s0 and of s1
# All four have wal_level = logical; mdfeed.binance_archive_url = '' (REST
# only), CoinDCX pointed at a closed port, mdfeed.intervals = '1m', two
# backfill workers each, mdfeed.sync_lookback and gap_lookback 30 min.
#
# The symbols are synthetic ones chosen by mdfeed.shard_of('binance', s, 2):
# eight backfill symbols, four of each shard, and four stream symbols, two
# of each.  The stream symbols are whitelisted (mdfeed_whitelist, lists
# local to each server) on s0 and s1, each of which streams the two it owns,
# and on one, so that the two legs carry the same live load; their startup
# sync ends before the first repeat.
#
# 1. Aggregate backfill candles/s, both legs side by side on the same fake
#    and the same machine (2 cores).  At 0.5 s past a clock minute M every
#    server is given the same backfill work at once: a 1m mdfeed_backfill
#    of each backfill symbol over DAYS days (a range of its own every
#    repeat, so the tables hold none of it yet), all eight on one, each on
#    the shard that owns it in leg TWO.  DAYS is sized so that no server
#    runs out of work before the end (checked: each still has unfinished
#    jobs when the window closes).  mdfeed spends mdfeed.rest_weight_share
#    (0.8) of the per-IP limit, 2 weight a page of 499 candles: at 300 a
#    minute, 120 pages = 59,880 candles a minute per address, ~998/s.  The
#    rate is counted over the whole clock minutes after M (SECONDS rounded
#    down to whole minutes, at least one), by commit time: rows of the
#    backfill symbols in mdfeed.candles_1m whose updated_at (the writing
#    transaction's now()) lies in the window, on one for leg ONE, the sum
#    over s0 and s1 for leg TWO, divided by the window's length.  Each
#    repeat prints both rates and TWO/ONE (the goal: near 2), and from the
#    fake's GET /_fake/stats by_ip, read half a second before the window
#    and before its end (each minute's pages go in a burst at its start),
#    what each address fetched in the window: klines rows, weight, 429s;
#    and a check, since the fake's POST /_fake/reset before the repeat, that
#    each address fetched candles of its own server's symbols only (two
#    backfill workers a server, the default: two jobs at a time, so in a
#    short run two of its symbols).  When TWO/ONE is off by more than 10 %
#    it prints mdfeed.budgets and the jobs of every server.
# 2. Replication lag under that load: on an, an AFTER INSERT OR UPDATE
#    trigger on mdfeed.candles_1m, ENABLE REPLICA so that it fires in the
#    subscriptions' apply workers, notes clock_timestamp() - NEW.updated_at
#    for every row that arrives (a row that arrives for a stored key is
#    merged by mdfeed.merge_replicated_row's UPDATE, which fires it once).
#    Same host, same clock; but updated_at is the shard transaction's start,
#    so the lag includes that transaction's own duration (a backfill page,
#    499 rows, is one transaction), and it ends when the apply worker has
#    the row, before its commit.  Over rows whose updated_at lies in the
#    window of 1 (read after an has caught up): count, p50 and p99
#    (percentile_cont) for the backfilled rows, for the stream's forming
#    candles (closed = false rows of the stream symbols, written about every
#    500 ms, mdfeed.stream_flush_interval), and for those of the forming
#    updates committed after the minute's last backfill row (+1 s), which
#    met no backfill traffic.  mdfeed's workers commit with
#    synchronous_commit = off and a walsender sends only flushed WAL, so
#    the WAL writer's wal_writer_delay (200 ms, PostgreSQL's default, kept
#    here) is part of every figure: about 100 ms on average for a lone
#    forming update.
#
# Every repeat: POST /_fake/reset, the start at the next clock minute, the
# window, the catch-up of an, then the repeat's jobs canceled.  The summary
# gives min and median over the repeats.  A whole run takes about REPEATS
# x (SECONDS in whole minutes + 1.5 to 2.5 minutes) plus half a minute to
# set up: 8 minutes with the defaults.  Needs the extension installed (make
# install), curl, and 127.0.0.2-4 on lo (Linux routes all of 127/8 there);
# runs its own clusters and fake exchange, and removes them at exit.
set -euo pipefail

secs=${1:-150}
repeats=${2:-2}
weight_limit=${WEIGHT_LIMIT:-300}
mins=$(( secs / 60 ))
(( mins >= 1 )) || mins=1
win=$(( mins * 60 ))
. "$(dirname "$0")/lib.sh"
bench_init shards
trap 'exit 130' INT TERM

nodes=(one s0 s1 an)
declare -A port_of addr_of shard_of_node
addr_of=([one]=127.0.0.2 [s0]=127.0.0.3 [s1]=127.0.0.4)
shard_of_node=([one]=0/1 [s0]=0/2 [s1]=1/2)

shards_cleanup() {
	local n
	for n in "${nodes[@]}"; do
		[[ -f $work/$n/postmaster.pid ]] &&
			runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/$n" -m immediate -w stop >/dev/null 2>&1 || true
	done
	if [[ -n "${BENCH_LOG:-}" ]]; then
		for n in "${nodes[@]}"; do
			[[ -f $work/$n.log ]] && { echo "==== $n"; cat "$work/$n.log"; }
		done > "$work/log" 2>/dev/null || true
	fi
	bench_cleanup
}
trap shards_cleanup EXIT

# a port no one listens on and no socket in /tmp names, not taken already
pick_port() {
	local p
	for p in $(shuf -i 20000-29999 -n 200); do
		[[ -e /tmp/.s.PGSQL.$p || " ${port_of[*]:-} " == *" $p "* ]] && continue
		[[ -z $(ss -Hltn "( sport = :$p )" 2>/dev/null) ]] || continue
		echo "$p"
		return
	done
	echo "no free port" >&2
	exit 1
}

# cluster NAME: bench_cluster in $work/NAME (log $work/NAME.log) on a free
# port, with the settings every cluster here shares, then the caller's from
# stdin
cluster() {
	local n=$1
	port_of[$n]=$(pick_port)
	{
		cat <<EOF
wal_level = logical
max_worker_processes = 16
shared_buffers = 256MB
max_wal_size = 4GB
mdfeed.database = 'postgres'
mdfeed.binance_rest_url = 'http://127.0.0.1:$fake_port'
mdfeed.binance_ws_url = 'ws://127.0.0.1:$fake_port/market'
mdfeed.binance_archive_url = ''
mdfeed.coindcx_public_url = 'http://127.0.0.1:9'
mdfeed.coindcx_api_url = 'http://127.0.0.1:9'
mdfeed.coindcx_socket_url = 'ws://127.0.0.1:9'
mdfeed.intervals = '1m'
mdfeed.derivatives_enabled = off
mdfeed.job_poll_interval = '500ms'
mdfeed.http_timeout = '10s'
mdfeed.sync_lookback = '30min'
mdfeed.gap_lookback = '30min'
EOF
		cat
	} | bench_cluster "${port_of[$n]}" "$n"
}

# on NAME ARGS...: psql_ on that cluster
on() { local n=$1; shift; port=${port_of[$n]} psql_ "$@"; }
fake_stats() { curl -sS "http://127.0.0.1:$fake_port/_fake/stats"; }
sql_array() { local IFS=,; echo "'{$*}'::text[]"; }
sleep_ms() { (( $1 > 0 )) && sleep "$(awk -v w="$1" 'BEGIN { printf "%.3f", w / 1000 }')" || true; }
wait_for() { # TIMEOUT_S WHAT COMMAND...: until COMMAND succeeds
	local t=$1 what=$2 i
	shift 2
	for i in $(seq $(( t * 5 ))); do
		"$@" && return 0
		sleep 0.2
	done
	echo "timed out after $t s waiting for $what" >&2
	exit 1
}

bench_fake fake fake_binance.py --weight-limit "$weight_limit" --synthetic 24 --ws-interval-ms 250
for n in one s0 s1; do
	cluster "$n" <<EOF
mdfeed.shard = '${shard_of_node[$n]}'
mdfeed.source_address = '${addr_of[$n]}'
EOF
done
cluster an <<EOF
mdfeed.mode = 'replica'
max_logical_replication_workers = 8
max_sync_workers_per_subscription = 2
EOF
for n in "${nodes[@]}"; do on "$n" -c "CREATE EXTENSION mdfeed"; done

# the symbols, by the hash: 4 + 4 to backfill, 2 + 2 to stream
declare -a by0 by1
while read -r s k; do
	if [[ $k == 0 ]]; then by0+=("$s"); else by1+=("$s"); fi
done < <(on one -F ' ' -c "SELECT s, mdfeed.shard_of('binance', s, 2)
	FROM (SELECT 'S' || lpad(i::text, 4, '0') || 'USDT' s FROM generate_series(0, 23) i) x ORDER BY s")
(( ${#by0[@]} >= 6 && ${#by1[@]} >= 6 )) || { echo "the hash split the 24 synthetic symbols ${#by0[@]}/${#by1[@]}" >&2; exit 1; }
bf0=("${by0[@]:0:4}") bf1=("${by1[@]:0:4}") st0=("${by0[@]:4:2}") st1=("${by1[@]:4:2}")
bf=("${bf0[@]}" "${bf1[@]}") st=("${st0[@]}" "${st1[@]}")

# the work: enough days that no server finishes before the end (one page
# = 499 candles; each shard has four symbols, twice the time needed)
share=$(on one -c "SHOW mdfeed.rest_weight_share")
pages=$(awk -v w="$weight_limit" -v s="$share" 'BEGIN { printf "%d", int(w * s) / 2 }')
per_min=$(( pages * 499 ))
days=$(( (2 * per_min * (mins + 3) / 4 + 1439) / 1440 + 1 ))

instruments_ok() { [[ $(on "$1" -c "SELECT count(*) FROM mdfeed.instruments
	WHERE exchange = 'binance' AND symbol = ANY ($(sql_array "${bf[@]}" "${st[@]}"))") == 12 ]]; }
for n in one s0 s1; do wait_for 60 "$n's instruments" instruments_ok "$n"; done

# publications, the lag trigger, subscriptions (their initial sync done)
for k in 0 1; do
	t=$(on s$k -c "SELECT mdfeed_publish('mdfeed_data')")
	[[ $t == 33 ]] || echo "odd: mdfeed_publish on s$k published $t tables, not 33"
done
on an <<'EOF'
CREATE TABLE public.bench_lag (at timestamptz, src timestamptz, symbol text, closed boolean, ms float8);
CREATE FUNCTION public.bench_lag_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.bench_lag VALUES (pg_catalog.clock_timestamp(), NEW.updated_at, NEW.symbol, NEW.closed,
		extract(epoch FROM pg_catalog.clock_timestamp() - NEW.updated_at) * 1000);
	RETURN NULL;
END
$$;
CREATE TRIGGER bench_lag AFTER INSERT OR UPDATE ON mdfeed.candles_1m
	FOR EACH ROW EXECUTE FUNCTION public.bench_lag_note();
ALTER TABLE mdfeed.candles_1m ENABLE REPLICA TRIGGER bench_lag;
EOF
for k in 0 1; do
	on an -c "SET client_min_messages = warning" -c "CREATE SUBSCRIPTION from_s$k CONNECTION 'host=$work port=${port_of[s$k]} dbname=postgres' PUBLICATION mdfeed_data"
done
synced() { [[ $(on an -c "SELECT count(*) FILTER (WHERE srsubstate <> 'r') = 0 AND count(*) = 66 FROM pg_subscription_rel") == t ]]; }
wait_for 120 "the subscriptions' initial sync (33 tables each)" synced

# live load: the stream symbols, whitelisted on all three ingest servers
for n in one s0 s1; do on "$n" -c "SELECT mdfeed_whitelist($(sql_array "${st[@]}"))" >/dev/null; done
streams_of() { # IP: its kline streams, upper case, sorted
	fake_stats | /usr/bin/python3 -c "import json, sys
print(' '.join(sorted({s.split('@')[0].upper() for s in json.load(sys.stdin)['by_ip'].get('$1', {}).get('ws_streams', [])})))"
}
st_sorted=$(printf '%s\n' "${st[@]}" | sort | tr '\n' ' ' | sed 's/ $//')
stream_ok() { [[ $(streams_of 127.0.0.2) == "$st_sorted" && $(streams_of 127.0.0.3) == "${st0[*]}" && $(streams_of 127.0.0.4) == "${st1[*]}" ]]; }
idle() { for n in one s0 s1; do [[ $(on $n -c "SELECT count(*) FROM mdfeed.jobs WHERE state IN ('queued', 'running')") == 0 ]] || return 1; done; }
wait_for 120 "the streams" stream_ok
wait_for 120 "the stream symbols' sync" idle

echo "shards: fake weight limit $weight_limit a minute per IP, mdfeed.rest_weight_share $share: $pages pages = $per_min candles a minute per address ($(( per_min / 60 ))/s)"
echo "leg ONE: one 0/1 from 127.0.0.2, backfills ${bf[*]}"
echo "leg TWO: s0 0/2 from 127.0.0.3, backfills ${bf0[*]}; s1 1/2 from 127.0.0.4, backfills ${bf1[*]}"
echo "streams: ${st0[*]} on s0, ${st1[*]} on s1 (and all four on one); an subscribes to s0 and s1"
echo "each repeat: 8 x 1m over $days days a leg from 0.5 s past a clock minute; measured over the next $mins whole minute(s), $repeats repeats"

# check_ips BEFORE AFTER: from two GET /_fake/stats answers, what each
# address fetched between them (klines rows, weight, 429s) and which symbols
# since the reset; exit status 1 if an address fetched a symbol not its own
# server's, or none of its backfill symbols
check_ips() {
	/usr/bin/python3 - "$1" "$2" "${bf[*]}" "${st[*]}" "${bf0[*]}" "${st0[*]}" "${bf1[*]}" "${st1[*]}" <<'EOF'
import json, sys
a, b = (json.load(open(f))["by_ip"] for f in sys.argv[1:3])
bf, stall, bf0, st0, bf1, st1 = (set(x.split()) for x in sys.argv[3:9])
want = {"127.0.0.2": ("one", bf, bf | stall), "127.0.0.3": ("s0", bf0, bf0 | st0), "127.0.0.4": ("s1", bf1, bf1 | st1)}
bad = False
for ip in sorted(set(b) | set(want)):
    d, d0 = b.get(ip, {}), a.get(ip, {})
    delta = lambda k: d.get(k, 0) - d0.get(k, 0)
    got = d.get("klines_symbols", {})
    name, must, may = want.get(ip, ("other", set(), set()))
    ok = set(got) <= may and (not must or set(got) & must)
    bad |= not ok
    print("  %s (%s): window klines_rows %d, weight %d, 429s %d; since the reset klines_rows %d, weight_total %d, 429s %d, %s: %s" % (
        ip, name, delta("klines_rows"), delta("weight_total"), delta("rate_limited_429"),
        d.get("klines_rows", 0), d.get("weight_total", 0), d.get("rate_limited_429", 0),
        " ".join("%s=%d" % kv for kv in sorted(got.items())) or "nothing",
        "its own" if ok else "NOT its own (its own: %s)" % (",".join(sorted(may)) or "none")))
sys.exit(1 if bad else 0)
EOF
}

rate_one=() rate_two=() ratios=() lb50=() lb99=() ls50=() ls99=() lq50=() lq99=()
for r in $(seq "$repeats"); do
	to=$(date -u -d "$(date -u +%F) -$(( 2 + (r - 1) * days )) days" +%F)
	from=$(date -u -d "$to -$days days" +%F)
	curl -sS -X POST "http://127.0.0.1:$fake_port/_fake/reset" >/dev/null
	on an -c "TRUNCATE public.bench_lag"
	# start just after a clock minute begins (the fake's windows and mdfeed's)
	now_ms=$(( $(now_ns) / 1000000 ))
	sleep_ms $(( 60000 - now_ms % 60000 + 500 ))
	m0=$(( $(now_ns) / 1000000000 / 60 * 60 ))
	ws=$(( m0 + 60 ))
	we=$(( ws + win ))
	q() { local s out=""; for s in "$@"; do out+="SELECT mdfeed_backfill('$s', '1m', '$from', '$to');"; done; echo "$out"; }
	on one -c "$(q "${bf[@]}")" >/dev/null &
	p1=$!
	on s0 -c "$(q "${bf0[@]}")" >/dev/null &
	p2=$!
	on s1 -c "$(q "${bf1[@]}")" >/dev/null &
	p3=$!
	wait "$p1" "$p2" "$p3"
	# the fake's counts half a second before the window and before its end
	# (a minute's pages go in a burst at its start), the work left then
	sleep_ms $(( ws * 1000 - 500 - $(now_ns) / 1000000 ))
	fake_stats > "$work/stats0.json"
	sleep_ms $(( we * 1000 - 500 - $(now_ns) / 1000000 ))
	fake_stats > "$work/stats1.json"
	left=()
	for n in one s0 s1; do
		left+=("$(on $n -c "SELECT count(*) FROM mdfeed.jobs WHERE origin = 'user' AND from_time = '$from' AND state IN ('queued', 'running')")")
	done
	sleep 3.5 # the window's last transactions commit
	count() { on "$1" -c "SELECT count(*) FROM mdfeed.candles_1m WHERE symbol = ANY ($(sql_array "${bf[@]}"))
		AND updated_at >= to_timestamp($ws) AND updated_at < to_timestamp($we)"; }
	n_one=$(count one)
	n_s0=$(count s0)
	n_s1=$(count s1)
	one_rps=$(awk -v n="$n_one" -v w="$win" 'BEGIN { printf "%.1f", n / w }')
	two_rps=$(awk -v n=$(( n_s0 + n_s1 )) -v w="$win" 'BEGIN { printf "%.1f", n / w }')
	ratio=$(awk -v a="$two_rps" -v b="$one_rps" 'BEGIN { printf "%.3f", (b > 0) ? a / b : 0 }')
	printf 'repeat %d: %s..%s, window %s..%s UTC: ONE %d rows = %s candles/s; TWO %d rows (s0 %d, s1 %d) = %s candles/s; TWO/ONE %s\n' \
		"$r" "$from" "$to" "$(date -u -d @$ws +%T)" "$(date -u -d @$we +%T)" "$n_one" "$one_rps" \
		$(( n_s0 + n_s1 )) "$n_s0" "$n_s1" "$two_rps" "$ratio"
	echo "  unfinished jobs at the window's end: one ${left[0]}, s0 ${left[1]}, s1 ${left[2]}"
	for x in "${left[@]}"; do (( x > 0 )) || echo "  odd: a server ran out of work before the window ended (raise the days)"; done
	echo "  the fake's by_ip:"
	check_ips "$work/stats0.json" "$work/stats1.json" || echo "  check FAILED: an address fetched another server's symbols, or none of its own"
	if awk -v x="$ratio" 'BEGIN { exit !(x < 1.8 || x > 2.2) }'; then
		echo "  odd: TWO/ONE $ratio; budgets and jobs:"
		for n in one s0 s1; do
			echo "    $n: $(on $n -c "SELECT string_agg(format('%s %s used %s/%s rl %s thr %s blocked %s', exchange, limit_name, used, limit_value, rate_limited, throttled, blocked_until), '; ') FROM mdfeed.budgets WHERE exchange = 'binance'")"
			echo "    $n jobs: $(on $n -c "SELECT string_agg(format('%s %s %s rows %s req %s retries %s', id, symbol, state, rows_written, requests, retries), '; ' ORDER BY id) FROM mdfeed.jobs WHERE from_time = '$from'")"
		done
	fi

	# an has caught up with what the shards wrote by now
	t0=$(now_ns)
	for k in 0 1; do
		lsn=$(on s$k -c "SELECT pg_current_wal_lsn()")
		caught() { [[ $(on s$k -c "SELECT coalesce(bool_and(replay_lsn >= '$lsn'), false) FROM pg_stat_replication WHERE application_name = 'from_s$k'") == t ]]; }
		wait_for 300 "an to catch up with s$k" caught
	done
	catch_ms=$(( ($(now_ns) - t0) / 1000000 ))
	# a minute's backfill rows arrive in a burst at its start: forming
	# updates after the minute's last backfill commit (+1 s) saw no backfill
	lag() { on an -F ' ' -c "WITH b AS (SELECT date_trunc('minute', src) m, max(src) AS last FROM public.bench_lag
			WHERE symbol = ANY ($(sql_array "${bf[@]}")) GROUP BY 1)
		SELECT count(*), coalesce(round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1), 0),
		coalesce(round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1), 0), coalesce(round(max(ms)::numeric, 1), 0)
		FROM public.bench_lag l LEFT JOIN b ON b.m = date_trunc('minute', l.src)
		WHERE src >= to_timestamp($ws) AND src < to_timestamp($we) AND $1"; }
	read -r bn b50 b99 bmax < <(lag "symbol = ANY ($(sql_array "${bf[@]}"))")
	read -r sn s50 s99 smax < <(lag "symbol = ANY ($(sql_array "${st[@]}")) AND NOT closed")
	read -r qn q50 q99 qmax < <(lag "symbol = ANY ($(sql_array "${st[@]}")) AND NOT closed AND (b.last IS NULL OR src > b.last + interval '1 s')")
	burst=$(on an -c "SELECT round(avg(extract(epoch FROM last - m))::numeric, 1) FROM (SELECT date_trunc('minute', src) m, max(src) AS last
		FROM public.bench_lag WHERE symbol = ANY ($(sql_array "${bf[@]}")) AND src >= to_timestamp($ws) AND src < to_timestamp($we) GROUP BY 1) x")
	echo "  lag shard commit -> an: backfill rows $bn, p50 $b50 ms, p99 $b99 ms, max $bmax ms (each minute's committed in its first ${burst:-?} s, mean)"
	echo "    stream forming updates $sn, p50 $s50 ms, p99 $s99 ms, max $smax ms; of them after the minute's backfill $qn, p50 $q50 ms, p99 $q99 ms, max $qmax ms"
	an_rows=$(on an -c "SELECT count(*) FROM mdfeed.candles_1m WHERE symbol = ANY ($(sql_array "${bf[@]}"))
		AND updated_at >= to_timestamp($ws) AND updated_at < to_timestamp($we)")
	echo "  an holds $an_rows of the window's $(( n_s0 + n_s1 )) leg-TWO rows; caught up $catch_ms ms after the window (+3 s)"
	(( an_rows == n_s0 + n_s1 )) || echo "  odd: an does not hold every row of the window"
	rate_one+=("$one_rps") rate_two+=("$two_rps") ratios+=("$ratio")
	lb50+=("$b50") lb99+=("$b99") ls50+=("$s50") ls99+=("$s99") lq50+=("$q50") lq99+=("$q99")

	# the repeat's jobs canceled, the workers idle again
	for n in one s0 s1; do
		on "$n" -c "SELECT count(mdfeed_cancel(id)) FROM mdfeed.jobs WHERE origin = 'user' AND state IN ('queued', 'running')" >/dev/null
	done
	wait_for 60 "the canceled jobs to stop" idle
done

echo "summary: ONE candles/s $(bench_stats %.1f "${rate_one[@]}"); TWO candles/s $(bench_stats %.1f "${rate_two[@]}"); TWO/ONE $(bench_stats %.3f "${ratios[@]}")"
echo "summary: the limit allows $(( per_min / 60 )).$(( per_min * 10 / 60 % 10 )) candles/s an address: ONE at most that, TWO twice it"
echo "summary: lag backfill rows p50 ms $(bench_stats %.1f "${lb50[@]}"), p99 ms $(bench_stats %.1f "${lb99[@]}"); stream forming p50 ms $(bench_stats %.1f "${ls50[@]}"), p99 ms $(bench_stats %.1f "${ls99[@]}"); forming after the backfill burst p50 ms $(bench_stats %.1f "${lq50[@]}"), p99 ms $(bench_stats %.1f "${lq99[@]}")"
