#!/usr/bin/env bash
# bench/models.sh: models, live and replayed.
#
#   bench/models.sh [SYMBOLS] [CLOSES] [DAYS] [REPEATS]
#                   (defaults: 100 symbols, 5 closes, 365 days, 3 repeats)
#
# Live: the fake exchange streams SYMBOLS synthetic perpetuals in 1m; the
# bundled mdfeed.model_realized_volatility (window 100) is registered on all
# tracked symbols, and CLOSES minute closes are watched.  For each output:
# close to output (computed_at - the candle's end) and stored to output
# (computed_at - the candle row's updated_at, when the stream wrote it
# closed); p50 and p99 over all outputs of those closes.
#
# Replay: DAYS of 1m candles of one symbol are stored (generated in SQL:
# prices of two decimals); the same model is registered with from_time at
# the first candle and runs on every one in order, as a replay after
# downtime would.  Beside it, the same computation as one set-based query
# over the same rows (window functions, into a table).  Each repeat prints
# runs/s of the model worker, rows/s of the query and their ratio; the
# summary gives min and median.  Needs the extension installed (make
# install); runs its own cluster and fake exchange, and removes them at exit.
set -euo pipefail

symbols=${1:-100}
closes=${2:-5}
days=${3:-365}
repeats=${4:-3}
. "$(dirname "$0")/lib.sh"
bench_init models
bench_fake fake fake_binance.py --synthetic "$symbols"
bench_cluster 5479 <<EOF
mdfeed.database = 'postgres'
mdfeed.binance_rest_url = 'http://127.0.0.1:$fake_port'
mdfeed.binance_archive_url = ''
mdfeed.binance_ws_url = 'ws://127.0.0.1:$fake_port/market'
mdfeed.intervals = '1m'
mdfeed.sync_lookback = '3h'
mdfeed.gap_lookback = '3h'
max_worker_processes = 16
shared_buffers = 512MB
max_wal_size = 4GB
EOF

psql_ <<EOF
CREATE EXTENSION mdfeed;
CREATE ROLE bench_models;
GRANT USAGE ON SCHEMA mdfeed TO bench_models;
GRANT SELECT ON ALL TABLES IN SCHEMA mdfeed TO bench_models;
GRANT EXECUTE ON FUNCTION mdfeed_register_model(text, regprocedure, text, text[], integer, timestamptz, text),
	mdfeed_unregister_model(text) TO bench_models;
EOF
for _ in $(seq 100); do
	[[ $(psql_ -c "SELECT count(*) FROM mdfeed.instruments WHERE symbol LIKE 'S%USDT'") -ge $symbols ]] && break
	sleep 0.2
done

# ---- live ----
psql_ -c "SELECT mdfeed_whitelist(ARRAY(SELECT symbol FROM mdfeed.instruments WHERE symbol LIKE 'S%USDT' ORDER BY 1 LIMIT $symbols))" >/dev/null
echo "live: $symbols symbols; waiting for the stream and 100 minutes of history each"
for _ in $(seq 600); do
	have=$(psql_ -c "SELECT count(*) FROM (SELECT symbol FROM mdfeed.candles_1m WHERE closed GROUP BY 1 HAVING count(*) >= 100) x")
	[[ $have -ge $symbols ]] && break
	sleep 1
done
psql_ -c "SET ROLE bench_models" \
	-c "SELECT mdfeed_register_model('live', 'mdfeed.model_realized_volatility(text,text,mdfeed.candle[])', '1m', NULL, 100)" >/dev/null
first=$(psql_ -c "SELECT extract(epoch FROM mdfeed.interval_floor('1m', now()))::bigint")
last=$(( first + 60 * (closes - 1) ))
echo "live: watching the closes of the candles opening $(date -u -d @"$first" +%H:%M) to $(date -u -d @"$last" +%H:%M)"
sleep $(( last + 60 - $(date +%s) + 15 ))
psql_ -F ' ' <<EOF
SELECT 'live outputs', count(*), 'expected', $symbols * $closes,
	'close->output p50', round(percentile_cont(0.5) WITHIN GROUP (ORDER BY l)::numeric, 3),
	'p99', round(percentile_cont(0.99) WITHIN GROUP (ORDER BY l)::numeric, 3),
	'| stored->output p50', round(percentile_cont(0.5) WITHIN GROUP (ORDER BY s)::numeric, 3),
	'p99', round(percentile_cont(0.99) WITHIN GROUP (ORDER BY s)::numeric, 3), 's'
FROM (SELECT extract(epoch FROM o.computed_at - (o.open_time + interval '1 minute')) AS l,
			 extract(epoch FROM o.computed_at - c.updated_at) AS s
	  FROM mdfeed.model_outputs o JOIN mdfeed.candles_1m c ON c.symbol = o.symbol AND c.open_time = o.open_time
	  WHERE o.model = 'live' AND o.open_time BETWEEN to_timestamp($first) AND to_timestamp($last)) x;
SELECT 'stream close latency (event to commit) p50', close_latency_p50_ms, 'p99', close_latency_p99_ms, 'ms'
FROM mdfeed.workers WHERE role = 'stream' AND exchange = 'binance';
EOF
psql_ -c "SET ROLE bench_models" -c "SELECT mdfeed_unregister_model('live')" >/dev/null
psql_ -c "SELECT mdfeed_unlist(ARRAY(SELECT symbol FROM mdfeed.tracked))" >/dev/null

# ---- replay ----
n=$(( days * 1440 ))
psql_ <<EOF
INSERT INTO mdfeed.instruments (exchange, symbol, status, contract_type, onboard_date, tradable)
VALUES ('binance', 'BENCHUSDT', 'TRADING', 'PERPETUAL', mdfeed.interval_floor('1d', now()) - interval '$((days + 2)) days', false);
INSERT INTO mdfeed.candles_1m
SELECT 'BENCHUSDT', t, t + interval '59.999 s', p, p + 0.5, p - 0.5, p + 0.25, 10 + i % 7, 1000 + i % 13, 5, 500, 42, true, now()
FROM generate_series(0, $n - 1) i,
	 LATERAL (SELECT mdfeed.interval_floor('1d', now()) - interval '$((days + 2)) days' + i * interval '1 minute' AS t,
					 round((20000 + 500 * sin(i / 720.0) + (i % 97) / 10.0)::numeric, 2) AS p) x;
VACUUM ANALYZE mdfeed.candles_1m;
EOF
echo "replay: $n candles ($days days of 1m), window 100, $repeats repeats"
model_rates=()
sql_rates=()
ratios=()
for r in $(seq "$repeats"); do
	start=$(psql_ -c "SELECT min(open_time) FROM mdfeed.candles_1m WHERE symbol = 'BENCHUSDT'")
	end=$(psql_ -c "SELECT max(open_time) FROM mdfeed.candles_1m WHERE symbol = 'BENCHUSDT'")
	t0=$(now_ns)
	psql_ -c "SET ROLE bench_models" \
		-c "SELECT mdfeed_register_model('replay', 'mdfeed.model_realized_volatility(text,text,mdfeed.candle[])', '1m', ARRAY['BENCHUSDT'], 100, '$start')" >/dev/null
	while [[ $(psql_ -c "SELECT next_open > '$end' FROM mdfeed.model_progress WHERE model = 'replay'") != t ]]; do
		sleep 0.2
	done
	t1=$(now_ns)
	runs=$(psql_ -c "SELECT runs FROM mdfeed.models WHERE name = 'replay'")
	psql_ -c "CHECKPOINT"
	t2=$(now_ns)
	psql_ <<EOF
CREATE TABLE bench_setbased AS
SELECT open_time, jsonb_build_object('volatility', stddev_samp(ret) OVER w, 'returns', count(ret) OVER w, 'close', close) AS output
FROM (SELECT open_time, close, ln(close::float8 / lag(close::float8) OVER (ORDER BY open_time)) AS ret
	  FROM mdfeed.candles_1m WHERE symbol = 'BENCHUSDT') s
WINDOW w AS (ORDER BY open_time ROWS BETWEEN 98 PRECEDING AND CURRENT ROW);
EOF
	t3=$(now_ns)
	rows=$(psql_ -c "SELECT count(*) FROM bench_setbased")
	same=$(psql_ -c "SELECT count(*) FROM mdfeed.model_outputs o JOIN bench_setbased b USING (open_time) WHERE o.model = 'replay' AND o.output = b.output")
	model_rps=$(( runs * 1000000000 / (t1 - t0) ))
	sql_rps=$(( rows * 1000000000 / (t3 - t2) ))
	ratio=$(awk -v a="$model_rps" -v b="$sql_rps" 'BEGIN { printf "%.4f", a / b }')
	echo "repeat $r: model $runs runs in $(( (t1 - t0) / 1000000 )) ms = $model_rps runs/s; set-based $rows rows in $(( (t3 - t2) / 1000000 )) ms = $sql_rps rows/s; ratio $ratio; outputs equal to the set-based rows: $same"
	model_rates+=("$model_rps")
	sql_rates+=("$sql_rps")
	ratios+=("$ratio")
	psql_ -c "SET ROLE bench_models" -c "SELECT mdfeed_unregister_model('replay')" >/dev/null
	psql_ -c "DROP TABLE bench_setbased" -c "VACUUM mdfeed.model_outputs"
done
echo "summary: model runs/s $(bench_stats "${model_rates[@]}"); set-based rows/s $(bench_stats "${sql_rates[@]}"); ratio $(bench_stats %.4f "${ratios[@]}")"
