#!/bin/sh
# pinferd under valgrind's memcheck, end to end: a greedy generation with
# pinfer, then pinfer-load for a few seconds (streamed generations,
# cancels and hang-ups mid-stream, malformed frames), a generation
# interrupted by Ctrl-C, and SIGTERM. valgrind must report no error and
# no definite or indirect leak (--error-exitcode=1). Not part of `make
# test` (it takes a minute or two); run it as
#   BUILD=build/rel SHARED=../shared tests/valgrind-daemon.sh
# on a release build (not SANITIZE=1: ASan and valgrind exclude each
# other). VALGRIND_SECONDS sets the pinfer-load part (default 10).
set -u
me=valgrind-daemon
: "${SHARED:?SHARED must name the shared data directory}"
: "${BUILD:?BUILD must name the build directory}"
seconds=${VALGRIND_SECONDS:-10}
pinfer=$BUILD/pinfer
pinferd=$BUILD/pinferd
load=$BUILD/tests/load/pinfer-load

fail() {
	echo "$me: FAIL: $*" >&2
	[ -f "$tmp/valgrind.log" ] && { echo "--- valgrind.log" >&2; tail -n 60 "$tmp/valgrind.log" >&2; }
	exit 1
}
command -v valgrind >/dev/null || { echo "$me: FAIL: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
for bin in "$pinfer" "$pinferd" "$load"; do
	[ -x "$bin" ] || { echo "$me: FAIL: $bin not found (build it first)" >&2; exit 1; }
done
tmp=$(mktemp -d /tmp/pinfer-valgrind-XXXXXX) || { echo "$me: FAIL: no temporary directory" >&2; exit 1; }
daemon=
cleanup() {
	status=$?
	[ -z "$daemon" ] || { kill -KILL "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; }
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

mkdir "$tmp/models"
ln -s "$SHARED/models/stories260K/stories260K.gguf" "$tmp/models/stories260K.gguf"
# Timeouts are long because everything runs some 30 times slower.
valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1 \
	--log-file="$tmp/valgrind.log" \
	"$pinferd" --config /dev/null --socket "$tmp/sock" --models "$tmp/models" --bus none --threads 1 \
	--handshake-timeout 60s --shutdown-grace 30s >"$tmp/pinferd.log" 2>&1 &
daemon=$!
tries=0
until [ -S "$tmp/sock" ]; do
	tries=$((tries + 1))
	[ "$tries" -le 600 ] || fail "pinferd did not listen within 60 s under valgrind"
	kill -0 "$daemon" 2>/dev/null || fail "pinferd exited at startup: $(cat "$tmp/pinferd.log")"
	sleep 0.1
done

out=$("$pinfer" --socket "$tmp/sock" run stories260K "Once upon a time" -n 32 --temp 0 2>&1) ||
	fail "a generation: $out"
[ -n "$out" ] || fail "a generation printed nothing"
"$load" --socket "$tmp/sock" --pid "$daemon" --clients 2 --duration "$seconds" --n-predict 16 \
	--max-rss-growth 4096 >"$tmp/load.out" 2>&1 || { cat "$tmp/load.out" >&2; fail "pinfer-load (above)"; }
cat "$tmp/load.out"
# Ctrl-C in the middle of a long generation: the client hangs up, and the
# daemon cancels the request.
"$pinfer" --socket "$tmp/sock" run stories260K "Once upon a time" -n 400 --temp 1 >/dev/null 2>&1 &
client=$!
sleep 2
kill -INT "$client"
wait "$client"

kill -TERM "$daemon"
wait "$daemon"
status=$?
daemon=
grep -E "ERROR SUMMARY|in use at exit|All heap blocks|definitely lost|indirectly lost|possibly lost" "$tmp/valgrind.log"
[ "$status" -eq 0 ] || fail "pinferd under valgrind exited with status $status"
echo "$me: ok"
