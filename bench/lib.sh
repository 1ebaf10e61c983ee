# bench/lib.sh: what every benchmark here does alike, sourced by bench/*.sh.
#
#   bench_init NAME          a scratch directory $work (/tmp/mdfeed-bench-NAME.*,
#                            the postgres user's), $here (the tree), $pgbin
#                            (PG_CONFIG's, default PostgreSQL 15), and a trap
#                            that stops the cluster and the fakes and removes
#                            $work at exit (BENCH_LOG=FILE keeps the server log)
#   bench_fake NAME SCRIPT [ARGS...]
#                            starts test/fake_exchange/SCRIPT serve on a free
#                            port; sets ${NAME}_pid and ${NAME}_port
#   bench_cluster PORT [NAME]  initdb, the common settings (no TCP, PORT, the
#                            socket in $work, mdfeed preloaded), then the
#                            caller's settings from stdin, and start; in
#                            $work/data (log $work/log), or in $work/NAME
#                            (log $work/NAME.log) for one of several
#   psql_ ARGS...            psql as postgres on that cluster, unaligned and
#                            tuples only, stopping at the first error
#   now_ns                   the clock in nanoseconds
#   bench_stats [FMT] VALUES...   "min X  median Y" (FMT a printf format, %d
#                            by default)
#
# Each benchmark states what it measures in its own header; this file only
# keeps them from repeating the same thirty lines.

bench_pids=()

bench_init() {
	here=$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)
	pgbin=$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)
	work=$(mktemp -d "/tmp/mdfeed-bench-$1.XXXXXX")
	chown postgres "$work"
	chmod 755 "$work"
	trap bench_cleanup EXIT
}

bench_cleanup() {
	runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/data" -m immediate -w stop >/dev/null 2>&1 || true
	if [[ -n "${BENCH_LOG:-}" && -f "$work/log" ]]; then
		cp "$work/log" "$BENCH_LOG"
	fi
	for p in "${bench_pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$work"
}

bench_fake() {
	local name=$1 script=$2
	shift 2
	/usr/bin/python3 "$here/test/fake_exchange/$script" serve --port 0 --port-file "$work/$name.port" "$@" \
		> "$work/$name.log" 2>&1 &
	bench_pids+=($!)
	printf -v "${name}_pid" '%s' "$!"
	for _ in $(seq 100); do [[ -s "$work/$name.port" ]] && break; sleep 0.1; done
	[[ -s "$work/$name.port" ]] || { echo "the fake $script did not start: $(cat "$work/$name.log")" >&2; exit 1; }
	printf -v "${name}_port" '%s' "$(cat "$work/$name.port")"
}

bench_cluster() {
	port=$1
	local dir=$work/${2:-data} log=$work/${2:+$2.}log
	runuser -u postgres -- "$pgbin/initdb" -D "$dir" -A trust >/dev/null
	{
		cat <<EOF
listen_addresses = ''
port = $port
unix_socket_directories = '$work'
shared_preload_libraries = 'mdfeed'
EOF
		cat
	} >> "$dir/postgresql.conf"
	runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir" -l "$log" -w start >/dev/null
}

psql_() { runuser -u postgres -- psql -X -q -At -v ON_ERROR_STOP=1 -h "$work" -p "$port" -d postgres "$@"; }
now_ns() { date +%s%N; }

bench_stats() {
	local fmt=%d
	[[ $1 == %* ]] && { fmt=$1; shift; }
	printf '%s\n' "$@" | sort -g | awk -v fmt="$fmt" '{ a[NR] = $1 } END {
		m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
		printf "min " fmt "  median " fmt, a[1], m }'
}
