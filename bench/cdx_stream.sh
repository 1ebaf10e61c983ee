#!/usr/bin/env bash
# bench/cdx_stream.sh: the CoinDCX stream worker's throughput on one core,
# beside the Binance stream worker's, measured the same way in the same run.
#
#   bench/cdx_stream.sh [FRAMES_PER_CHANNEL] [REPEATS]
#        defaults:            10000             3
#   PG_CONFIG=/path/to/pg_config (default /usr/lib/postgresql/15/bin/pg_config)
#   BENCH_PORT=5479: the cluster's port
#   BINANCE_SYMBOLS=5: Binance synthetic perpetuals (x 8 intervals = 40
#   streams, as many as CoinDCX's 5 futures pairs x 8 intervals)
#   SPOT=1: then the same for the coindcx_spot worker (7 pairs x 4
#   intervals = 28 channels); SPOT=0 leaves it out
#   PERF=DIR: one more firehose of each worker (not counted: Binance's and
#   CoinDCX futures' after the futures repeats, spot's after its own) under
#   `perf record --call-graph dwarf` of the stream worker; prints its self time by library and the inclusive share of the
#   main steps (parse, buffer, flush); the perf.*.data files stay in DIR
#   BENCH_LOG=FILE: keep the server log there
#   BENCH_CONF='name = value': more postgresql.conf lines (newlines allowed)
#
# One cluster, two fake exchanges (test/fake_exchange/fake_binance.py
# --synthetic BINANCE_SYMBOLS, test/fake_exchange/fake_coindcx.py), and
# mdfeed.intervals = '1m,5m,15m,30m,1h,4h,8h,1d': Binance carries
# BINANCE_SYMBOLS x 8 streams, CoinDCX futures (exchange 'coindcx') its 5
# pairs x 8 channels, CoinDCX spot ('coindcx_spot') its 7 pairs x 4
# channels (spot serves 1m, 15m, 1h, 1d); one connection each.  Each repeat
# runs one firehose phase per side, one side after the other (the order
# alternates between repeats), never two at once: POST /_fake/firehose sends
# FRAMES_PER_CHANNEL consecutive closed bars on every channel as fast as the
# fake can.  Every frame is a distinct bar, so a distinct row; the summary
# counts the rows stored against the frames sent.  One fake serves both
# CoinDCX markets and its firehose goes to every joined channel, so the
# spot repeats come after the futures ones, with the futures pairs unlisted
# and the spot pairs whitelisted (each with Binance firehoses of its own).
#
# The bars start two days in the FUTURE, and each repeat's after the last
# one's: a CoinDCX bar whose close time has passed makes the stream worker
# queue a REST sync (the socket's last snapshot is not the final bar), which
# is right live but would turn a firehose of old bars into job spam.  Binance
# gets the same open times, so both sides write the same shape (appends at
# the right edge of each index).  mdfeed.backfill_workers = 0.
#
# Messages/s is read from mdfeed.workers.messages (the row of the worker's
# exchange) sampled every 0.25 s: from the first to the last sample interval
# in which the count grows at more than a fifth of its peak rate, all of the
# intervals in between counted (the worker publishes its count every second
# or every 10,000 messages, so some intervals inside a burst show no
# growth).  The CPU shares of the stream worker and of its fake over that
# window, from /proc, tell which side limits the rate: a worker near 100 %
# is the limit.  On this shared machine the worker often gets less than a
# core: "waiting for a CPU" is the share of the window it was runnable but
# not running (/proc/PID/schedstat), so CPU + waiting near 100 % means a
# CPU-bound worker that other processes crowded out.  Each line also gives
# messages per CPU-second of the worker
# (rate / its CPU share): the rate one core of its own would give, if the
# worker is CPU-bound, and the steadier figure to compare.  RssAnon (the
# worker's private memory) is read before and after each firehose.  The
# ratio is CoinDCX's figure over Binance's in the same repeat; the summary
# gives min and median over the repeats.
#
# The frames differ in kind, which the ratio includes:
#  - CoinDCX frames are socket.io events, 42["candlestick",{"event":..,
#    "data":"<JSON text>"}]: the envelope is parsed, then its data string
#    is parsed again (double-encoded JSON); Binance's are plain JSON;
#  - CoinDCX's bars are stored as forming (closed = false; their close is
#    made exact over REST), so they are flushed every
#    mdfeed.stream_flush_interval in one batch without NOTIFY; Binance's
#    closed bars are written at once, after every lws_service() pass, with a
#    NOTIFY each;
#  - CoinDCX's tables have an id column (a second index: the primary key
#    beside the unique (symbol, open_time)) and 6 numeric columns to
#    Binance's 9.
#
# Needs the extension installed (make install); runs its own cluster and
# fakes, and removes them at exit.
set -euo pipefail

per=${1:-10000}
repeats=${2:-3}
port=${BENCH_PORT:-5479}
bn_symbols=${BINANCE_SYMBOLS:-5}
spot=${SPOT:-1}
perf_dir=${PERF:-}
. "$(dirname "$0")/lib.sh"
bench_init cdx

# the fake exchanges
bench_fake bn fake_binance.py --synthetic "$bn_symbols"
bench_fake cdx fake_coindcx.py
bn_url="http://127.0.0.1:$bn_port"
cdx_url="http://127.0.0.1:$cdx_port"
# fake URL METHOD PATH [JSON]
fake() { curl -sS --max-time 600 -X "$2" -H 'Content-Type: application/json' ${4:+-d "$4"} "$1$3"; }

bench_cluster "$port" <<EOF
mdfeed.database = 'postgres'
mdfeed.backfill_workers = 0
mdfeed.derivatives_enabled = off
mdfeed.binance_rest_url = '$bn_url'
mdfeed.binance_archive_url = ''
mdfeed.binance_ws_url = 'ws://127.0.0.1:$bn_port/market'
mdfeed.coindcx_public_url = '$cdx_url'
mdfeed.coindcx_api_url = '$cdx_url'
mdfeed.coindcx_socket_url = 'ws://127.0.0.1:$cdx_port'
mdfeed.intervals = '1m,5m,15m,30m,1h,4h,8h,1d'
mdfeed.sync_lookback = '1min'
mdfeed.gap_lookback = '1min'
mdfeed.gap_check_interval = '1d'
mdfeed.instruments_refresh_interval = '1d'
shared_buffers = 512MB
max_wal_size = 4GB
${BENCH_CONF:-}
EOF
# worker EXCHANGE: pid messages streams connections malformed reconnects
worker() {
	psql_ -F ' ' -c "SELECT pid, messages, streams, connections, malformed, reconnects
		FROM mdfeed.workers WHERE role = 'stream' AND exchange = '$1'"
}
anon_kb() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# the ns a task has spent runnable but waiting for a CPU
runq_ns() { awk '{ print $2 }' "/proc/$1/schedstat"; }
hz=$(getconf CLK_TCK)

psql_ -c "CREATE EXTENSION mdfeed"
# the live pushes, quiet: once a second on both fakes (the firehose holds
# the connection while it sends anyway)
fake "$bn_url" POST /_fake/config '{"ws_interval_ms": 1000}' >/dev/null
fake "$cdx_url" POST /_fake/config '{"ws_futures_interval_ms": 1000, "ws_spot_interval_ms": 1000}' >/dev/null

bn_syms=$(seq 0 $((bn_symbols - 1)) | awk '{ printf "%s\x27S%04dUSDT\x27", (NR > 1 ? "," : ""), $1 }')
cdx_fut="'B-BTC_USDT','B-ETH_USDT','B-PEPE_USDT','B-ID_USDT','B-NEW_USDT'"
cdx_spot="'B-BTC_USDT','B-ETH_USDT','B-BTTC_USDT','I-BTC_INR','I-ETH_INR','KC-LYX_USDT','G-MLK_USDT'"
# mdfeed_whitelist loads the instruments from the fake when it does not know a pair
psql_ -c "SELECT mdfeed_whitelist(ARRAY[$bn_syms])" >/dev/null
psql_ -c "SELECT mdfeed_whitelist(ARRAY[$cdx_fut], 'coindcx')" >/dev/null
declare -A want fake_url fake_pid title pid
want[binance]=$((bn_symbols * 8)) fake_url[binance]=$bn_url fake_pid[binance]=$bn_pid
want[coindcx]=40 fake_url[coindcx]=$cdx_url fake_pid[coindcx]=$cdx_pid
want[coindcx_spot]=28 fake_url[coindcx_spot]=$cdx_url fake_pid[coindcx_spot]=$cdx_pid
title[binance]="Binance" title[coindcx]="CoinDCX futures" title[coindcx_spot]="CoinDCX spot"
# Binance carries 200 streams a connection, CoinDCX 100 channels
declare -A conns_want=([binance]=$(( (bn_symbols * 8 + 199) / 200 )) [coindcx]=1 [coindcx_spot]=1)

# wait_streaming EXCHANGE: until its worker carries every stream on one
# connection(s) (CoinDCX joins one channel per message, 5 a second); prints
# its pid
wait_streaming() {
	local w pid streams conns
	for _ in $(seq 300); do
		w=$(worker "$1" || true)
		if [[ -n "$w" ]]; then
			read -r pid _ streams conns _ <<< "$w"
			if [[ "$streams" == "${want[$1]}" && "$conns" == "${conns_want[$1]}" ]]; then
				echo "$pid"
				return 0
			fi
		fi
		sleep 0.2
	done
	echo "the $1 stream worker did not reach ${want[$1]} streams on ${conns_want[$1]} connections: $w" >&2
	return 1
}
# wait_idle EXCHANGE: until its worker carries no stream
wait_idle() {
	local w streams
	for _ in $(seq 300); do
		w=$(worker "$1" || true)
		read -r _ _ streams _ <<< "$w"
		[[ "$streams" == 0 ]] && return 0
		sleep 0.2
	done
	echo "the $1 stream worker still carries streams: $w" >&2
	return 1
}
# wait_fake EXCHANGE: until its fake has every stream subscribed or
# joined (mdfeed.workers.streams counts the keys the worker has taken on,
# and CoinDCX's joins go out one a message, paced, never acknowledged)
wait_fake() {
	local n
	for _ in $(seq 300); do
		n=$(fake "${fake_url[$1]}" GET /_fake/stats | /usr/bin/python3 -c '
import json, sys
ws = json.load(sys.stdin)["ws"]
print(ws.get("channels_joined", ws.get("subscriptions")))')
		[[ "$n" == "${want[$1]}" ]] && return 0
		sleep 0.2
	done
	echo "the fake of $1 has $n streams, not ${want[$1]}" >&2
	return 1
}
for s in binance coindcx; do
	pid[$s]=$(wait_streaming "$s")
	wait_fake "$s"
done

# the bars: from two days ahead, midnight UTC; each firehose after the last
# one's, by FRAMES_PER_CHANNEL days and one (the 1d channels' span)
day_ms=86400000
base_ms=$(( ($(date +%s) * 1000 / day_ms + 2) * day_ms ))
span_ms=$(( (per + 1) * day_ms ))
rep_start() { echo $(( base_ms + ($1 - 1) * span_ms )); }
# mdfeed takes times up to 2^47 ms (year 6429)
if (( $(rep_start $((2 * repeats + 5))) > 140737488355327 )); then
	echo "FRAMES_PER_CHANNEL x REPEATS too large: the bars would go past the year 6429" >&2
	exit 1
fi

echo "frames per channel: $per, repeats: $repeats; streams: Binance ${want[binance]} ($bn_symbols symbols x 8 intervals), CoinDCX futures ${want[coindcx]} (5 pairs x 8)$( [[ $spot == 1 ]] && echo ", CoinDCX spot ${want[coindcx_spot]} (7 pairs x 4)"); ${conns_want[binance]} + 1 connections"
echo "stream workers: Binance pid ${pid[binance]}, CoinDCX futures pid ${pid[coindcx]}; fakes $bn_url, $cdx_url"
echo "frames: CoinDCX's are socket.io events with double-encoded JSON (the envelope, then its data string: parsed twice), stored as forming rows flushed in batches; Binance's are plain JSON, stored closed at once with a NOTIFY each"

# firehose EXCHANGE START_MS TAG: one firehose phase; prints
#   rate secs cpu_worker cpu_fake sent got anon0 anon1 malformed reconnects
#   runq_worker (the share of the window it waited for a CPU)
firehose() {
	local ex=$1 start=$2 tag=$3 p=${pid[$1]} fp=${fake_pid[$1]} n=${want[$1]}
	local samples="$work/samples.$tag" out="$work/firehose.$tag"
	local m0 m m1 last_m still fh anon0 anon1 malformed reconnects sent rate secs cpu_w cpu_f runq
	read -r _ m0 _ <<< "$(worker "$ex")"
	anon0=$(anon_kb "$p")
	fake "${fake_url[$ex]}" POST /_fake/firehose "{\"frames\": $per, \"start_ms\": $start}" > "$out" &
	fh=$!
	: > "$samples"
	last_m=$m0 still=0
	while :; do
		read -r _ m _ <<< "$(worker "$ex")"
		echo "$(now_ns) $m $(cpu_ticks "$p") $(cpu_ticks "$fp") $(runq_ns "$p")" >> "$samples"
		if kill -0 "$fh" 2>/dev/null || (( m - last_m > 2 * n )); then
			still=0
		else
			still=$((still + 1))
			[[ $still -ge 4 ]] && break
		fi
		last_m=$m
		sleep 0.25
	done
	wait "$fh"
	sent=$(sed -n 's/.*"frames": *\([0-9]*\).*/\1/p' "$out")
	anon1=$(anon_kb "$p")
	read -r _ m1 _ _ malformed reconnects <<< "$(worker "$ex")"
	# the window: from the first to the last sample interval in which the
	# count grew at more than a fifth of the peak rate
	read -r rate secs cpu_w cpu_f runq <<< "$(awk -v hz="$hz" '
		{ t[NR] = $1; m[NR] = $2; w[NR] = $3; f[NR] = $4; q[NR] = $5 }
		END {
			peak = 0; a = 0; b = 0
			for (k = 2; k <= NR; k++) { r[k] = (m[k] - m[k - 1]) / ((t[k] - t[k - 1]) / 1e9); if (r[k] > peak) peak = r[k] }
			for (k = 2; k <= NR; k++) if (r[k] > peak / 5) { if (!a) a = k; b = k }
			if (!a) { print 0, 0, 0, 0, 0; exit }
			dt = (t[b] - t[a - 1]) / 1e9
			printf "%d %.1f %.0f %.0f %.0f\n", (m[b] - m[a - 1]) / dt, dt,
				100 * (w[b] - w[a - 1]) / hz / dt, 100 * (f[b] - f[a - 1]) / hz / dt,
				100 * (q[b] - q[a - 1]) / 1e9 / dt
		}' "$samples")"
	echo "$rate $secs $cpu_w $cpu_f ${sent:-0} $((m1 - m0)) $anon0 $anon1 $malformed $reconnects $runq"
}

stats() { bench_stats "$@"; }

# stage CDX_EXCHANGE: REPEATS repeats of a Binance firehose and one of the
# CoinDCX side's, in alternating order; the bars of firehose number k
# (counted over the whole run) start at rep_start k
nfh=0
declare -A rates cpu_rates anon_after ranges sent_total
summary=()
stage() {
	local cdx=$1 i s order rate secs cpu_w cpu_f sent got anon0 anon1 malformed reconnects start cpu_rate runq
	local -A r rc
	local ratios=() cpu_ratios=()
	for i in $(seq "$repeats"); do
		nfh=$((nfh + 1))
		start=$(rep_start "$nfh")
		order="binance $cdx"
		(( i % 2 == 0 )) && order="$cdx binance"
		for s in $order; do
			read -r rate secs cpu_w cpu_f sent got anon0 anon1 malformed reconnects runq <<< "$(firehose "$s" "$start" "$s.$nfh")"
			# messages per second of the worker's own CPU time: what one
			# core it had to itself would do, if the worker is CPU-bound
			cpu_rate=$(( cpu_w > 0 ? rate * 100 / cpu_w : 0 ))
			printf 'run %d: %-15s %6d msg/s over %4s s (stream worker CPU %3s%%, waiting for a CPU %3s%%: %6d msg per CPU-second; fake CPU %3s%%) | %d frames sent, %d messages | RssAnon %d -> %d kB (%+d kB) | malformed %s, reconnects %s\n' \
				"$i" "${title[$s]}" "$rate" "$secs" "$cpu_w" "$runq" "$cpu_rate" "$cpu_f" "$sent" "$got" "$anon0" "$anon1" $((anon1 - anon0)) "$malformed" "$reconnects"
			r[$s]=$rate rc[$s]=$cpu_rate
			rates[$s]="${rates[$s]:-} $rate"
			cpu_rates[$s]="${cpu_rates[$s]:-} $cpu_rate"
			anon_after[$s]="${anon_after[$s]:-} $anon1"
			ranges[$s]="${ranges[$s]:-} $start"
			sent_total[$s]=$(( ${sent_total[$s]:-0} + sent ))
			sleep 1
		done
		ratios+=("$(awk -v a="${r[$cdx]}" -v b="${r[binance]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')")
		cpu_ratios+=("$(awk -v a="${rc[$cdx]}" -v b="${rc[binance]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')")
		printf 'run %d: %s / Binance = %s (per CPU-second %s)\n' "$i" "${title[$cdx]}" "${ratios[-1]}" "${cpu_ratios[-1]}"
	done
	summary+=("$(printf '  %-15s / Binance ratio:        %s   (per CPU-second: %s)' "${title[$cdx]}" \
		"$(stats %.3f "${ratios[@]}")" "$(stats %.3f "${cpu_ratios[@]}")")")
}

# perf_phase EXCHANGE: with PERF, one more firehose (not counted) under
# perf record (DWARF call graphs) of the stream worker; keeps the share of
# the worker's samples by library (self time) and in the main steps of its
# path (with what they call)
perf_out=()
perf_phase() {
	local s=$1 pp rate cpu_w data
	[[ -n "$perf_dir" ]] || return 0
	mkdir -p "$perf_dir"
	data="$perf_dir/perf.$s.data"
	nfh=$((nfh + 1))
	perf record -F 499 --call-graph dwarf,8192 -p "${pid[$s]}" -o "$data" >/dev/null 2>&1 &
	pp=$!
	sleep 0.5
	read -r rate _ cpu_w _ <<< "$(firehose "$s" "$(rep_start "$nfh")" "$s.perf")"
	kill -INT "$pp" 2>/dev/null || true
	wait "$pp" || true
	perf_out+=("-- ${title[$s]}: $rate msg/s under perf (stream worker CPU $cpu_w%), $data")
	perf_out+=("   self time by library: $(perf report -i "$data" --no-children --stdio --sort dso 2>/dev/null |
		awk '/^ +[0-9.]+%/ && n++ < 7 { printf "%s %s  ", $2, $1 }' || true)")
	perf_out+=("   inclusive (with what they call): $(perf report -i "$data" --children --stdio --sort dso,symbol 2>/dev/null |
		awk '/^ +[0-9.]+%/ && $5 ~ /^(lws_service|ws_callback|binance_stream_frame|cdx_stream_frame|md_sio_event_args|md_json_parse|futures_klines|spot_klines|on_kline|md_streambuf_add|md_streambuf_flush|md_store_candles|ExecInsertIndexTuples|md_notify_candle|CommitTransactionCommand)$/ &&
			!seen[$5]++ { printf "%s %s  ", $5, $1 }' || true)")
}

echo
echo "== CoinDCX futures (exchange coindcx) and Binance"
stage coindcx
perf_phase binance
perf_phase coindcx
if [[ $spot == 1 ]]; then
	echo
	echo "== CoinDCX spot (exchange coindcx_spot) and Binance: the futures pairs unlisted, the spot pairs tracked"
	# one fake serves both CoinDCX markets and its firehose goes to every
	# joined channel: only one market may carry channels at a time
	psql_ -c "SELECT mdfeed_unlist(ARRAY[$cdx_fut], 'coindcx')" >/dev/null
	wait_idle coindcx
	psql_ -c "SELECT mdfeed_whitelist(ARRAY[$cdx_spot], 'coindcx_spot')" >/dev/null
	pid[coindcx_spot]=$(wait_streaming coindcx_spot)
	wait_fake coindcx_spot
	stage coindcx_spot
	perf_phase coindcx_spot
fi

# sanity check: every firehose frame is a distinct bar, so a distinct row
rows_of() {
	local ex=$1 q='' st
	for st in ${ranges[$ex]}; do
		q="$q${q:+ OR }(open_time >= to_timestamp($st / 1000.0) AND open_time < to_timestamp($((st + span_ms)) / 1000.0))"
	done
	psql_ -c "SELECT count(*) FROM mdfeed.candles WHERE exchange = '$ex' AND ($q)"
}

echo
echo "summary over $repeats repeats ($per frames per channel; CoinDCX frames are socket.io events, JSON parsed twice; Binance's plain JSON):"
for s in binance coindcx $( [[ $spot == 1 ]] && echo coindcx_spot); do
	nrep=$(wc -w <<< "${rates[$s]}")
	# shellcheck disable=SC2086
	printf '  %-15s firehose messages/s:  %s   per CPU-second of the worker: %s\n' "${title[$s]}" \
		"$(stats ${rates[$s]})" "$(stats ${cpu_rates[$s]})"
	printf '  %-15s   %d firehoses: %d frames sent, %s rows stored (%d expected)\n' "" \
		"$nrep" "${sent_total[$s]}" "$(rows_of "$s")" $((nrep * per * ${want[$s]}))
	printf '  %-15s   stream worker RssAnon after each firehose (kB):%s\n' "" "${anon_after[$s]}"
done
printf '%s\n' "${summary[@]}"

if [[ -n "$perf_dir" ]]; then
	echo
	echo "perf: one more firehose per side after its repeats, not counted"
	printf '%s\n' "${perf_out[@]}"
fi
