#!/usr/bin/env bash
# bench/stream.sh: one stream worker under as many kline frames as the fake
# exchange can send.
#
#   bench/stream.sh [SYMBOLS] [FRAMES_PER_STREAM] [REPEATS] [LIVE_SECONDS]
#        defaults:         400       2500                3         25
#   PG_CONFIG=/path/to/pg_config (default /usr/lib/postgresql/15/bin/pg_config)
#   CLOSE_EVERY_MS=250: how often every stream closes a candle in the closes
#   phases
#   BENCH_LOG=FILE: keep the server log there
#
# The fake exchange (test/fake_exchange/fake_binance.py, --synthetic SYMBOLS)
# serves SYMBOLS tracked perpetuals, one 1m stream each (mdfeed.intervals =
# '1m'), on ceil(SYMBOLS / 200) connections of one stream worker, which
# lives through every repeat.  Each repeat has four phases:
#
#  live:      the fake pushes the forming candle of every stream every 20 ms
#             (instead of 250 ms) for LIVE_SECONDS; frames carry the current
#             event time, so mdfeed.workers.latency_p50_ms / latency_p99_ms
#             are the event-to-commit latency under that load (the worker
#             keeps the last 16384 samples, one per candle per flush: 25 s of
#             400 streams replace them all);
#  closes:    the same forming pushes, and every CLOSE_EVERY_MS every stream
#             also closes a candle (the fake's ws_close_every_ms: a closed
#             frame of a new old row, with the current event time), as the
#             whole board does at a candle boundary: SYMBOLS closes at once,
#             amid the forming updates.  close_latency_p50_ms / p99 are the
#             close-event-to-commit latency (the worker keeps the last 16384
#             closes; the phase lasts long enough to replace them all);
#  closes only: the closes alone (ws_forming = 0), for builds that keep one
#             latency for every event: there latency_p50_ms / p99 are then
#             the closes' own;
#  firehose:  POST /_fake/firehose sends FRAMES_PER_STREAM consecutive closed
#             candles per stream (SYMBOLS x FRAMES_PER_STREAM frames, 1 million
#             by default) as fast as the fake can; each is a distinct row to
#             upsert, with a NOTIFY.  Messages/s is read from
#             mdfeed.workers.messages sampled every 0.25 s, over the samples
#             where the count grows at more than a fifth of its peak rate.
#             The stream worker's memory (/proc/PID/status: VmRSS, which
#             counts the shared buffers it touched, and RssAnon, its private
#             memory) is read before and after.  The frames' event times are
#             those of old candles, so the latency columns mean nothing here.
#
# The CPU share of the stream worker and of the fake over the firehose
# window tells which side limits the rate.  The summary gives min and
# median over the repeats; RssAnon after each repeat shows whether memory
# keeps growing.  Needs the extension installed (make install); runs its own
# cluster and fake exchange, and removes them at exit.
set -euo pipefail

symbols=${1:-400}
per=${2:-2500}
repeats=${3:-3}
live_secs=${4:-25}
close_every=${CLOSE_EVERY_MS:-250}
. "$(dirname "$0")/lib.sh"
bench_init stream

# the fake exchange
bench_fake fake fake_binance.py --synthetic "$symbols"
fport=$fake_port
fake_url="http://127.0.0.1:$fport"
fake() { curl -sS --max-time 600 -X "$1" -H 'Content-Type: application/json' ${3:+-d "$3"} "$fake_url$2"; }

bench_cluster 5478 <<EOF
mdfeed.database = 'postgres'
mdfeed.backfill_workers = 0
mdfeed.binance_rest_url = '$fake_url'
mdfeed.binance_archive_url = ''
mdfeed.binance_ws_url = 'ws://127.0.0.1:$fport/market'
mdfeed.intervals = '1m'
mdfeed.sync_lookback = '1min'
mdfeed.gap_lookback = '1min'
mdfeed.gap_check_interval = '1d'
mdfeed.instruments_refresh_interval = '1d'
shared_buffers = 512MB
max_wal_size = 4GB
EOF
worker() { psql_ -F ' ' -c "SELECT pid, messages, streams, connections, coalesce(latency_p50_ms, -1), coalesce(latency_p99_ms, -1), malformed, reconnects, $close_cols FROM mdfeed.workers WHERE role = 'stream'"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# private memory only (VmRSS also counts the shared buffers the worker touched)
anon_kb() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
nconn=$(( (symbols + 199) / 200 ))

psql_ -c "CREATE EXTENSION mdfeed"
# builds that keep the closes' latency apart show it in mdfeed.workers
if [[ $(psql_ -c "SELECT count(*) FROM pg_attribute WHERE attrelid = 'mdfeed.workers'::regclass AND attname = 'close_latency_p99_ms'") == 1 ]]; then
	close_cols='coalesce(close_latency_p50_ms, -1), coalesce(close_latency_p99_ms, -1)'
	has_close=1
else
	close_cols='-1, -1'
	has_close=0
fi
# the closes phases last until the worker has replaced its 16384 samples
closes_secs=$(( 16384 * 5 * close_every / (symbols * 4000) + 1 ))
(( closes_secs < live_secs )) && closes_secs=$live_secs
syms=$(seq 0 $((symbols - 1)) | awk '{ printf "%s\x27S%04dUSDT\x27", (NR > 1 ? "," : ""), $1 }')
psql_ -c "SELECT mdfeed_whitelist(ARRAY[$syms])" >/dev/null

wait_streaming() {
	local old=$1 w
	for _ in $(seq 300); do
		w=$(worker || true)
		if [[ -n "$w" ]]; then
			read -r pid _ streams conns _ <<< "$w"
			if [[ "$pid" != "$old" && "$streams" == "$symbols" && "$conns" == "$nconn" ]]; then
				echo "$pid"
				return 0
			fi
		fi
		sleep 0.2
	done
	echo "the stream worker did not reach $symbols streams on $nconn connections: $w" >&2
	return 1
}

pid=$(wait_streaming none)
echo "symbols: $symbols (1m), connections: $nconn, firehose frames per repeat: $((symbols * per)), repeats: $repeats"
echo "stream worker pid $pid; fake exchange $fake_url"

live_rates=() p50s=() p99s=() fh_rates=() rss_growths=() rss_afters=() anon_growths=() anon_afters=()
cl_rates=() cl_p50s=() cl_p99s=() clf_p50s=() clf_p99s=() co_rates=() co_p50s=() co_p99s=()
# closes_phase CONFIG: run the fake with CONFIG for closes_secs; prints the
# message rate and the worker's latencies: forming p50 p99, closes p50 p99
closes_phase() {
	local m0 m1 t0 t1 p50 p99 c50 c99
	fake POST /_fake/config "$1" >/dev/null
	sleep 1.5
	read -r _ m0 _ <<< "$(worker)"
	t0=$(now_ns)
	sleep "$closes_secs"
	read -r _ m1 _ _ p50 p99 _ _ c50 c99 <<< "$(worker)"
	t1=$(now_ns)
	fake POST /_fake/config '{"ws_interval_ms": 1000, "ws_close_every_ms": 0, "ws_forming": 1}' >/dev/null
	sleep 1.5
	echo "$(( (m1 - m0) * 1000000000 / (t1 - t0) )) $p50 $p99 $c50 $c99"
}
base_ms=$(( ($(date +%s) - 86400) * 1000 ))
for i in $(seq "$repeats"); do
	# live phase
	fake POST /_fake/config '{"ws_interval_ms": 20}' >/dev/null
	sleep 1.5
	read -r _ m0 _ <<< "$(worker)"
	t0=$(now_ns)
	sleep "$live_secs"
	read -r _ m1 _ _ p50 p99 _ <<< "$(worker)"
	t1=$(now_ns)
	live_rate=$(( (m1 - m0) * 1000000000 / (t1 - t0) ))
	# nearly quiet (the firehose holds the connection while it sends anyway)
	fake POST /_fake/config '{"ws_interval_ms": 1000}' >/dev/null
	sleep 1.5

	# closes phases: amid forming updates, then alone
	read -r cl_rate clf_p50 clf_p99 cl_p50 cl_p99 <<< \
		"$(closes_phase "{\"ws_interval_ms\": 20, \"ws_close_every_ms\": $close_every}")"
	read -r co_rate co_f50 co_f99 co_p50 co_p99 <<< \
		"$(closes_phase "{\"ws_interval_ms\": 20, \"ws_close_every_ms\": $close_every, \"ws_forming\": 0}")"
	if [[ $has_close == 0 ]]; then
		# one latency for every event: the closes' own when they come alone
		co_p50=$co_f50 co_p99=$co_f99 cl_p50=-1 cl_p99=-1
	fi

	# firehose phase
	read -r _ m0 _ <<< "$(worker)"
	rss0=$(rss_kb "$pid")
	anon0=$(anon_kb "$pid")
	start_ms=$(( base_ms - i * (per + 100) * 60000 ))
	fake POST /_fake/firehose "{\"frames\": $per, \"start_ms\": $start_ms}" > "$work/firehose.out" &
	fh=$!
	samples="$work/samples.$i"
	: > "$samples"
	last_m=$m0 still=0
	while :; do
		read -r _ m _ <<< "$(worker)"
		t=$(now_ns)
		echo "$t $m $(cpu_ticks "$pid") $(cpu_ticks "$fake_pid")" >> "$samples"
		if kill -0 "$fh" 2>/dev/null || (( m - last_m > 2 * symbols )); then
			still=0
		else
			still=$((still + 1))
			[[ $still -ge 4 ]] && break
		fi
		last_m=$m
		sleep 0.25
	done
	wait "$fh"
	sent=$(sed -n 's/.*"frames":\([0-9]*\).*/\1/p' "$work/firehose.out")
	rss1=$(rss_kb "$pid")
	anon1=$(anon_kb "$pid")
	read -r _ m1 _ _ _ _ malformed reconnects _ <<< "$(worker)"
	# the window: the sample intervals in which the count grew at more than
	# a fifth of the peak rate (the live pushes, once a second, stay below)
	read -r fh_rate secs cpu_w cpu_f <<< "$(awk -v hz="$hz" '
		{ t[NR] = $1; m[NR] = $2; w[NR] = $3; f[NR] = $4 }
		END {
			peak = 0
			for (k = 2; k <= NR; k++) { r[k] = (m[k] - m[k - 1]) / ((t[k] - t[k - 1]) / 1e9); if (r[k] > peak) peak = r[k] }
			dm = 0; dt = 0; dw = 0; df = 0
			for (k = 2; k <= NR; k++) if (r[k] > peak / 5) {
				dm += m[k] - m[k - 1]; dt += (t[k] - t[k - 1]) / 1e9; dw += w[k] - w[k - 1]; df += f[k] - f[k - 1]
			}
			if (dt == 0) { print 0, 0, 0, 0; exit }
			printf "%d %.1f %.0f %.0f\n", dm / dt, dt, 100 * dw / hz / dt, 100 * df / hz / dt
		}' "$samples")"
	got=$((m1 - m0))
	printf 'run %d: closes amid forming %d msg/s, close latency p50 %s ms p99 %s ms (forming p50 %s p99 %s) | closes only %d msg/s, close latency p50 %s ms p99 %s ms\n' \
		"$i" "$cl_rate" "$cl_p50" "$cl_p99" "$clf_p50" "$clf_p99" "$co_rate" "$co_p50" "$co_p99"
	printf 'run %d: live %d msg/s, latency p50 %s ms p99 %s ms | firehose %d frames sent, %d messages in all, %s s at %d msg/s (stream worker CPU %s%%, fake CPU %s%%), VmRSS %d -> %d kB, RssAnon %d -> %d kB (%+d kB), malformed %s, reconnects %s\n' \
		"$i" "$live_rate" "$p50" "$p99" "$sent" "$got" "$secs" "$fh_rate" "$cpu_w" "$cpu_f" "$rss0" "$rss1" "$anon0" "$anon1" $((anon1 - anon0)) "$malformed" "$reconnects"
	live_rates+=("$live_rate")
	cl_rates+=("$cl_rate") cl_p50s+=("$cl_p50") cl_p99s+=("$cl_p99") clf_p50s+=("$clf_p50") clf_p99s+=("$clf_p99")
	co_rates+=("$co_rate") co_p50s+=("$co_p50") co_p99s+=("$co_p99")
	p50s+=("$p50")
	p99s+=("$p99")
	fh_rates+=("$fh_rate")
	rss_growths+=($((rss1 - rss0)))
	rss_afters+=("$rss1")
	anon_growths+=($((anon1 - anon0)))
	anon_afters+=("$anon1")
done

stats() { bench_stats "$@"; }
rows=$(psql_ -c "SELECT count(*) FROM mdfeed.candles_1m")
echo
echo "summary over $repeats repeats ($symbols streams, $nconn connections, $((symbols * per)) firehose frames each; $rows rows stored):"
echo "  firehose messages/s sustained:      $(stats "${fh_rates[@]}")"
echo "  live messages/s (20 ms pushes):     $(stats "${live_rates[@]}")"
echo "  event-to-commit latency p50 (ms):   $(stats "${p50s[@]}")   (live phase)"
echo "  event-to-commit latency p99 (ms):   $(stats "${p99s[@]}")   (live phase)"
echo "  closes amid forming: messages/s:    $(stats "${cl_rates[@]}")   ($symbols closes every $close_every ms)"
if [[ $has_close == 1 ]]; then
	echo "  close-event-to-commit p50 (ms):     $(stats "${cl_p50s[@]}")   (closes amid forming)"
	echo "  close-event-to-commit p99 (ms):     $(stats "${cl_p99s[@]}")   (closes amid forming)"
	echo "  forming latency p50 / p99 (ms):     $(stats "${clf_p50s[@]}") / $(stats "${clf_p99s[@]}")   (closes amid forming)"
else
	echo "  close-event-to-commit amid forming: not kept apart by this build (mdfeed.workers has no close_latency_p50_ms)"
fi
echo "  closes only: messages/s:            $(stats "${co_rates[@]}")"
echo "  close-event-to-commit p50 (ms):     $(stats "${co_p50s[@]}")   (closes only)"
echo "  close-event-to-commit p99 (ms):     $(stats "${co_p99s[@]}")   (closes only)"
echo "  stream worker VmRSS growth over the firehose (kB):   $(stats "${rss_growths[@]}")   (includes shared buffers touched)"
echo "  stream worker VmRSS after (kB):                      $(stats "${rss_afters[@]}")"
echo "  stream worker RssAnon growth over the firehose (kB): $(stats "${anon_growths[@]}")   (private memory)"
echo "  stream worker RssAnon after (kB):                    $(stats "${anon_afters[@]}")"
