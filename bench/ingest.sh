#!/usr/bin/env bash
# bench/ingest.sh: mdfeed's kline ingest against COPY, side by side.
#
#   bench/ingest.sh [ROWS] [REPEATS]      (defaults: 200000 rows, 5 repeats)
#
# mdfeed's path: /fapi/v1/klines JSON pages (499 rows each, as the workers ask
# for them, made by the fake exchange) parsed and upserted by
# mdfeed.ingest_binance_klines, one transaction per page, as a backfill
# worker does (with synchronous_commit off, as the workers run).  COPY's
# path: the very same rows, as CSV, into the same empty
# table in one COPY.  Each repeat runs both on an empty table and prints
# rows/s and the ratio mdfeed/COPY; the summary gives min and median.
# Needs the extension installed (make install) and runs its own cluster;
# PG_CONFIG picks the installation (default: PostgreSQL 15's).
set -euo pipefail

rows=${1:-200000}
repeats=${2:-5}
. "$(dirname "$0")/lib.sh"
bench_init ingest
bench_cluster 5477 <<EOF
mdfeed.backfill_workers = 0
shared_buffers = 512MB
max_wal_size = 4GB
EOF

# pages of a range that closed long ago, so every row is final
start_ms=1672531200000
pages=$(( (rows + 498) / 499 ))
/usr/bin/python3 "$here/test/fake_exchange/fake_binance.py" pages BTCUSDT 1m $start_ms "$rows" --limit 499 \
	> "$work/pages.jsonl"
chmod 644 "$work/pages.jsonl"
psql_ <<EOF
CREATE EXTENSION mdfeed;
CREATE TABLE bench_pages (n serial, body text);
-- the workers get pages from the network, not from compressed TOAST
ALTER TABLE bench_pages ALTER body SET STORAGE EXTERNAL;
COPY bench_pages (body) FROM '$work/pages.jsonl' WITH (FORMAT text, DELIMITER E'\x01');
CREATE PROCEDURE bench_ingest() LANGUAGE plpgsql AS \$\$
DECLARE r record;
BEGIN
	FOR r IN SELECT body FROM bench_pages ORDER BY n LOOP
		PERFORM mdfeed.ingest_binance_klines('BTCUSDT', '1m', r.body);
		COMMIT;
	END LOOP;
END \$\$;
EOF
echo "rows: $rows in $(psql_ -At -c 'SELECT count(*) FROM bench_pages') pages; repeats: $repeats"

ratios=()
for i in $(seq "$repeats"); do
	psql_ -c "TRUNCATE mdfeed.candles_1m" -c "CHECKPOINT"
	t0=$(now_ns)
	# as in the workers, whose commits do not wait for the WAL flush
	psql_ -c "SET synchronous_commit = off" -c "CALL bench_ingest()"
	t1=$(now_ns)
	n=$(psql_ -At -c "SELECT count(*) FROM mdfeed.candles_1m")
	psql_ -c "COPY mdfeed.candles_1m TO '$work/rows.csv' CSV"
	psql_ -c "TRUNCATE mdfeed.candles_1m" -c "CHECKPOINT"
	t2=$(now_ns)
	psql_ -c "COPY mdfeed.candles_1m FROM '$work/rows.csv' CSV"
	t3=$(now_ns)
	mdfeed_rps=$(( n * 1000000000 / (t1 - t0) ))
	copy_rps=$(( n * 1000000000 / (t3 - t2) ))
	ratio=$(awk -v a="$mdfeed_rps" -v b="$copy_rps" 'BEGIN { printf "%.3f", a / b }')
	ratios+=("$ratio")
	printf 'run %d: %d rows  mdfeed %d rows/s  COPY %d rows/s  ratio %s\n' "$i" "$n" "$mdfeed_rps" "$copy_rps" "$ratio"
done
echo "mdfeed/COPY rows per second: $(bench_stats %.3f "${ratios[@]}")  (goal >= 0.5)"
