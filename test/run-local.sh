#!/usr/bin/env bash
# run-local.sh: install, build, and start a local PostgreSQL with mdfeed
# preloaded, ingesting market data.
#
#   test/run-local.sh          # start (or restart) and show data arriving
#   test/run-local.sh --stop   # stop the cluster and the fake exchange
#   test/run-local.sh --fake   # use the fake exchange even if Binance answers
#
# The cluster lives in /var/tmp/mdfeed-local, runs as the postgres user and
# listens on port 5488 (socket in the same folder):
#   runuser -u postgres -- psql -h /var/tmp/mdfeed-local -p 5488 postgres
# When fapi.binance.com cannot be reached (no internet), it starts the fake
# exchange of test/fake_exchange on 127.0.0.1 and points mdfeed at it.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
base=/var/tmp/mdfeed-local
port=5488
pgbin=/usr/lib/postgresql/15/bin
mode=start
force_fake=0
for arg in "$@"; do
	case "$arg" in
		--stop) mode=stop ;;
		--fake) force_fake=1 ;;
		*) echo "unknown argument: $arg" >&2; exit 2 ;;
	esac
done
if [[ $(id -u) -ne 0 ]]; then
	echo "run-local.sh installs packages: run it as root" >&2
	exit 2
fi

stop_all() {
	if [[ -f $base/data/postmaster.pid ]]; then
		runuser -u postgres -- "$pgbin/pg_ctl" -D "$base/data" -m fast -w stop || true
	fi
	if [[ -f $base/fake.pid ]]; then
		kill "$(cat "$base/fake.pid")" 2>/dev/null || true
		rm -f "$base/fake.pid"
	fi
}

if [[ $mode == stop ]]; then
	stop_all
	exit 0
fi

"$here/test/install-deps.sh"
make -C "$here" -s PG_CONFIG="$pgbin/pg_config"
make -C "$here" -s install PG_CONFIG="$pgbin/pg_config" >/dev/null

stop_all
mkdir -p "$base"
chown postgres "$base"

rest_url=https://fapi.binance.com
ws_url=wss://fstream.binance.com/market
archive_url=https://data.binance.vision
if [[ $force_fake -eq 1 ]] || ! curl -fsS -m 5 -o /dev/null https://fapi.binance.com/fapi/v1/ping; then
	echo "== Binance is not reachable from here: starting the fake exchange"
	rm -f "$base/fake.port"
	runuser -u postgres -- bash -c "nohup /usr/bin/python3 '$here/test/fake_exchange/fake_binance.py' serve \
		--port 0 --port-file '$base/fake.port' > '$base/fake.log' 2>&1 & echo \$! > '$base/fake.pid'"
	for _ in $(seq 50); do [[ -s $base/fake.port ]] && break; sleep 0.1; done
	fport=$(cat "$base/fake.port")
	rest_url=http://127.0.0.1:$fport
	ws_url=ws://127.0.0.1:$fport/market
	archive_url=http://127.0.0.1:$fport
fi

if [[ ! -d $base/data ]]; then
	runuser -u postgres -- "$pgbin/initdb" -D "$base/data" -A peer --auth-local=peer >/dev/null
fi
cat > "$base/data/mdfeed.conf" <<EOF
# written by test/run-local.sh
listen_addresses = ''
port = $port
unix_socket_directories = '$base'
shared_preload_libraries = 'mdfeed'
mdfeed.database = 'postgres'
max_worker_processes = 16
mdfeed.binance_rest_url = '$rest_url'
mdfeed.binance_ws_url = '$ws_url'
mdfeed.binance_archive_url = '$archive_url'
EOF
grep -q "include_if_exists = 'mdfeed.conf'" "$base/data/postgresql.conf" ||
	echo "include_if_exists = 'mdfeed.conf'" >> "$base/data/postgresql.conf"
runuser -u postgres -- "$pgbin/pg_ctl" -D "$base/data" -l "$base/server.log" -w start >/dev/null

psql_() { runuser -u postgres -- psql -X -q -h "$base" -p "$port" -d postgres "$@"; }
psql_ -c "CREATE EXTENSION IF NOT EXISTS mdfeed"
# a cluster made by an older release keeps its data: upgrade it in place
installed=$(psql_ -At -c "SELECT extversion FROM pg_extension WHERE extname = 'mdfeed'")
psql_ -c "SET client_min_messages = warning" -c "ALTER EXTENSION mdfeed UPDATE"
current=$(psql_ -At -c "SELECT extversion FROM pg_extension WHERE extname = 'mdfeed'")
if [[ $installed != "$current" ]]; then
	echo "== upgraded mdfeed in $base from $installed to $current (ALTER EXTENSION mdfeed UPDATE)"
fi
# track two symbols: live streams plus a week of history, kept complete
psql_ -At -c "SELECT mdfeed_whitelist(ARRAY['BTCUSDT', 'ETHUSDT'])" >/dev/null
# and a longer history of daily candles
psql_ -At -c "SELECT mdfeed_backfill('BTCUSDT', '1d', '2019-01-01')" >/dev/null

echo "== mdfeed is running: exchange $rest_url"
for i in 1 2 3 4 5 6; do
	sleep 3
	psql_ -c "SELECT symbol, open_time, close, volume, trades, closed, updated_at
	          FROM mdfeed.candles_1m ORDER BY open_time DESC, symbol LIMIT 2"
done
psql_ -c "SELECT kind, origin, state, count(*) AS jobs, sum(rows_written) AS rows_written
          FROM mdfeed.jobs GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
psql_ -c "SELECT symbol, count(*) AS candles_1m, min(open_time) AS oldest, max(open_time) AS newest
          FROM mdfeed.candles_1m GROUP BY symbol"
psql_ -c "SELECT role, state, messages, streams, connections, latency_p50_ms, latency_p99_ms
          FROM mdfeed.workers ORDER BY role"
cat <<EOF
== connect with:   runuser -u postgres -- psql -h $base -p $port postgres
== server log:     $base/server.log
== stop with:      $here/test/run-local.sh --stop
EOF
