#!/bin/sh
# pinferd under load: pinfer-load (tests/load/) runs LOAD_CLIENTS clients
# (16) for LOAD_SECONDS (20) against a real pinferd with a private
# dbus-daemon: streamed generations on two models, cancels and hang-ups
# mid-stream, malformed frames, and the second model loaded and evicted
# over D-Bus all the while. No operation may fail, the daemon must live
# through it with its RSS growing by at most LOAD_RSS_MIB (16), and exit 0
# on SIGTERM afterwards (with SANITIZE=1: no leaks). `make soak` runs this
# with 64 clients for 30 minutes.
me=test_load
# shellcheck source=tests/dbus_lib.sh
. "$(dirname "$0")/dbus_lib.sh"
clients=${LOAD_CLIENTS:-16}
seconds=${LOAD_SECONDS:-20}
rss_mib=${LOAD_RSS_MIB:-16}
load=$(cd "$BUILD" && pwd)/tests/load/pinfer-load
[ -x "$load" ] || { echo "$me: FAIL: $load not found (build it first)" >&2; exit 1; }
dbus_setup

mkdir "$tmp/models"
ln -s "$SHARED/models/stories260K/stories260K.gguf" "$tmp/models/stories260K.gguf"
ln -s "$SHARED/models/stories260K/stories260K.gguf" "$tmp/models/second.gguf"
start_bus open
# Under ASan, freed memory waits in a quarantine of up to 256 MiB, which
# would read as growth here; a small one still catches use after free.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16
export ASAN_OPTIONS
# Room for every client's connection plus the short-lived ones each opens
# to hang up or to send a malformed frame.
"$pinferd" --config /dev/null --socket "$tmp/sock" --models "$tmp/models" --session-bus --threads 1 \
	--max-connections $((clients * 2 + 8)) >"$tmp/pinferd.log" 2>&1 &
daemon=$!
wait_for "the name $name" bctl status "$name"
wait_for "the socket" test -S "$tmp/sock"

"$load" --socket "$tmp/sock" --pid "$daemon" --clients "$clients" --duration "$seconds" \
	--second-model second --bus "$addr" --max-rss-growth "$rss_mib" >"$tmp/load.out" 2>&1
status=$?
cat "$tmp/load.out"
[ "$status" -eq 0 ] || fail "pinfer-load exited with status $status (above)"
stop_daemon_checked
echo "$me: ok"
