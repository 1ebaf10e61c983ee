#!/usr/bin/env bash
# run-tests.sh: build mdfeed and run every test, on a fresh Debian 12 machine.
#
#   test/run-tests.sh            # everything: packages, build, regress, TAP
#   test/run-tests.sh --no-apt   # skip the package step
#   PROVE_TESTS='test/t/001_backfill.pl' test/run-tests.sh --no-apt
#   REGRESS='parser' ...               # a subset of the pg_regress tests
#   PROVE_JOBS=1 ...                   # TAP files one at a time (default 2:
#                                      # they mostly wait on the clock)
#
# PostgreSQL refuses to run as root, so the tests run as the postgres user on
# a copy of the tree that user can write.  The build is warnings-as-errors.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
apt=1
for arg in "$@"; do
	case "$arg" in
		--no-apt) apt=0 ;;
		*) echo "unknown argument: $arg" >&2; exit 2 ;;
	esac
done

if [[ $(id -u) -ne 0 ]]; then
	echo "run-tests.sh installs packages and the extension: run it as root" >&2
	exit 2
fi

if [[ $apt -eq 1 ]]; then
	"$here/test/install-deps.sh"
fi

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG

echo "== build (warnings are errors)"
make -C "$here" -s clean >/dev/null
make -C "$here" -s WERROR=1 PG_CONFIG="$PG_CONFIG"
make -C "$here" -s install PG_CONFIG="$PG_CONFIG" >/dev/null

work=$(mktemp -d /tmp/mdfeed-test.XXXXXX)
if [[ -n "${KEEP:-}" ]]; then
	echo "keeping $work"
else
	trap 'rm -rf "$work"' EXIT
fi
# the tests look for ../shared beside the tree, as in the repository's layout;
# a copy, not a link, since the postgres user may not be able to traverse the
# path to the checkout's parent
cp -a "$here" "$work/mdfeed"
rm -rf "$work/mdfeed/.git"
if [[ -d "$here/../shared" ]]; then
	cp -rL "$here/../shared" "$work/shared"
fi
chown -R postgres "$work"
chmod 755 "$work"

status=0
echo "== fake exchange self-test"
if ! (cd "$here" && /usr/bin/python3 -m unittest discover -s test/fake_exchange -p 'test_*.py' 2>&1 | tail -5); then
	status=1
fi

echo "== pg_regress"
if ! runuser -u postgres -- make -C "$work/mdfeed" -s installcheck PG_CONFIG="$PG_CONFIG" \
		${REGRESS:+REGRESS="$REGRESS"}; then
	status=1
	cat "$work/mdfeed/regression.diffs" 2>/dev/null | head -200 || true
fi

echo "== TAP (prove)"
if ! runuser -u postgres -- env CI="${CI:-}" make -C "$work/mdfeed" -s prove_installcheck \
		PG_CONFIG="$PG_CONFIG" ${PROVE_TESTS:+PROVE_TESTS="$PROVE_TESTS"} \
		PROVE_FLAGS="-I test/perl --timer -j${PROVE_JOBS:-2}"; then
	status=1
	for f in "$work"/mdfeed/tmp_check/log/*; do
		[[ -f "$f" ]] || continue
		echo "---- $f (last 40 lines)"
		tail -40 "$f"
	done
fi

if [[ $status -ne 0 ]]; then
	echo "TESTS FAILED"
else
	echo "ALL TESTS PASSED"
fi
exit $status
