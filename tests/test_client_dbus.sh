#!/bin/sh
# pinfer load, evict (unload) and ps over D-Bus (docs/client.md, "D-Bus or
# socket"), against pinferd on a private dbus-daemon: the bus is really
# used (the named socket does not exist), the output is the socket's, the
# errors map to the documented messages and exit codes (not found, busy,
# permission denied by pinferd and by the shipped bus policy), Ctrl-C ends
# the wait for a load, --bus and PINFER_BUS choose as documented, auto
# follows the socket, and a missing bus or a bus without pinferd falls back
# to the socket.
me=test_client_dbus
# shellcheck source=tests/dbus_lib.sh
. "$(dirname "$0")/dbus_lib.sh"
bus2=
gen=
cleanup_test() {
	[ -z "$gen" ] || kill "$gen" 2>/dev/null
	[ -z "$bus2" ] || kill "$bus2" 2>/dev/null
}
dbus_setup

make_models
mkdir "$tmp/xdg"
chmod 755 "$tmp/xdg"
# A bus of our own, where what is refused below is pinferd's own uid
# check, until the shipped policy is tried at the end.
start_bus open
unset PINFER_SOCKET PINFER_BUS DBUS_SYSTEM_BUS_ADDRESS
sock=$tmp/sock

loaded_models() { bctl get-property "$name" "$mgr" "$iface" LoadedModels; }

start_daemon() {
	"$pinferd" --config "$tmp/pinferd.conf" --socket "$sock" --models "$tmp/models" \
		--session-bus --threads 1 >>"$tmp/pinferd.log" 2>&1 &
	daemon=$!
	wait_for "pinferd's socket" test -S "$sock"
	wait_for "the name $name" bctl status "$name"
}
start_daemon

# run ARGS...: runs pinfer with $with (env's arguments: VAR=VALUE, -u VAR)
# added to the environment, then forgets $with; stdout in $tmp/out, stderr
# in $tmp/err, the exit status in $rc. (Not "VAR=VALUE run": what an
# assignment before a function does afterwards differs between shells.)
with=
run() {
	# shellcheck disable=SC2086
	env $with "$pinfer" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
	rc=$?
	with=
}
run_as_nobody() {  # as run, as nobody
	# shellcheck disable=SC2086
	as_nobody env $with "$pinfer" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
	rc=$?
	with=
}
expect_rc() {  # CODE what
	[ "$rc" -eq "$1" ] || { cat "$tmp/out" "$tmp/err" >&2; fail "$2: exit status $rc, expected $1"; }
}
expect() {  # FILE TEXT what
	grep -qF -- "$2" "$1" || { cat "$tmp/out" "$tmp/err" >&2; fail "$3: expected '$2' in $(basename "$1")"; }
}
expect_empty() {  # FILE what
	[ ! -s "$1" ] || { cat "$1" >&2; fail "$2: $(basename "$1") is not empty"; }
}
json_lines() {  # FILE what
	python3 -c '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines, "no output"
for l in lines:
    assert isinstance(json.loads(l), dict), l
' "$1" || { cat "$1" >&2; fail "$2: not one JSON object per line (above)"; }
}
# The same fields as the socket's ModelInfo, with the same values except
# chat_template (null: the bus does not tell) and object (the bus only).
same_model_json() {  # SOCKET-FILE BUS-FILE what
	python3 - "$1" "$2" <<'PY' || fail "$3: the JSON over D-Bus differs from the socket's (above)"
import json, sys
sock = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
bus = [json.loads(l) for l in open(sys.argv[2]).read().splitlines()]
assert len(sock) == len(bus) >= 1, (sock, bus)
for s, b in zip(sock, bus):
    assert b.get("object", "").startswith("/org/pinfer/Pinfer1/Model/"), b
    assert b["chat_template"] is None, b
    assert set(b) - {"object"} == set(s), (sorted(b), sorted(s))
    for k in s:
        if k != "chat_template":
            assert s[k] == b[k], (k, s[k], b[k])
PY
}

# (1) load over D-Bus: the socket named cannot be used, LoadedModels shows
# the model, and the line is the socket's.
[ "$(loaded_models)" = "ao 0" ] || fail "LoadedModels not empty at start: $(loaded_models)"
run --bus session --socket /nonexistent load stories260K --keep-alive 10m
expect_rc 0 "load over D-Bus"
expect_empty "$tmp/err" "load over D-Bus"
grep -Eq '^stories260K loaded: [0-9.]+ [KM]iB, [0-9]+ slots, unloads in (9m 5[0-9]s|10m 0s)$' "$tmp/out" ||
	fail "load over D-Bus printed: $(cat "$tmp/out")"
[ "$(loaded_models)" = 'ao 1 "/org/pinfer/Pinfer1/Model/1"' ] || fail "LoadedModels after the load: $(loaded_models)"
[ "$(bctl get-property "$name" /org/pinfer/Pinfer1/Model/1 org.pinfer.Pinfer1.Model KeepAlive)" = "x 600000" ] ||
	fail "--keep-alive 10m did not reach LoadModel as keep-alive-ms"
# -v says which way it went.
run --bus session --socket /nonexistent -v load stories260K --keep-alive 10m
expect_rc 0 "load -v over D-Bus"
expect "$tmp/err" "asking $name on the session bus" "load -v over D-Bus"
# With keep-alive -1 the expiry is fixed, and both ways print the same.
run --socket "$sock" load stories260K --keep-alive -1
expect_rc 0 "load over the socket"
cp "$tmp/out" "$tmp/load.sock"
run --bus session --socket /nonexistent load stories260K --keep-alive -1
expect_rc 0 "load over D-Bus, loaded already"
cmp -s "$tmp/out" "$tmp/load.sock" || fail "load over D-Bus printed '$(cat "$tmp/out")', over the socket '$(cat "$tmp/load.sock")'"
run --socket "$sock" --json load stories260K --keep-alive -1
expect_rc 0 "load --json over the socket"
cp "$tmp/out" "$tmp/load.sock.json"
run --bus session --socket /nonexistent load stories260K --keep-alive -1 --json
expect_rc 0 "load --json over D-Bus"
json_lines "$tmp/out" "load --json over D-Bus"
same_model_json "$tmp/load.sock.json" "$tmp/out" "load --json"

# (2) ps over D-Bus: the socket's table and JSON.
run --socket "$sock" ps
expect_rc 0 "ps over the socket"
cp "$tmp/out" "$tmp/ps.sock"
grep -Eq '^stories260K +[0-9.]+ [KM]iB +0/[0-9]+ +dense +- +forever$' "$tmp/ps.sock" || fail "ps over the socket: $(cat "$tmp/ps.sock")"
run --bus session --socket /nonexistent ps
expect_rc 0 "ps over D-Bus"
cmp -s "$tmp/out" "$tmp/ps.sock" || { diff "$tmp/ps.sock" "$tmp/out" >&2; fail "ps over D-Bus differs from the socket's (above)"; }
run --socket "$sock" ps --json
cp "$tmp/out" "$tmp/ps.sock.json"
run --bus session --socket /nonexistent ps --json
expect_rc 0 "ps --json over D-Bus"
json_lines "$tmp/out" "ps --json over D-Bus"
same_model_json "$tmp/ps.sock.json" "$tmp/out" "ps --json"
# Reading is for everyone.
run_as_nobody --bus session --socket /nonexistent ps
expect_rc 0 "ps as nobody"
cmp -s "$tmp/out" "$tmp/ps.sock" || fail "ps as nobody: $(cat "$tmp/out")"

# (3) Errors: not found, and pinferd's own uid check.
run --bus session --socket /nonexistent load nosuch
expect_rc 1 "load of an unknown model"
expect "$tmp/err" "pinfer: no model named 'nosuch' in $tmp/models (not found)" "load nosuch"
expect_empty "$tmp/out" "load nosuch"
run --bus session --socket /nonexistent evict nosuch
expect_rc 1 "evict of an unknown model"
expect "$tmp/err" "(not found)" "evict nosuch"
run --bus session --socket /nonexistent --json load ../x
expect_rc 1 "load of a path"
expect "$tmp/err" "(invalid argument)" "load ../x"
expect_empty "$tmp/out" "load ../x --json"
run_as_nobody --bus session --socket /nonexistent load stories260K
expect_rc 1 "load as nobody"
expect "$tmp/err" "(permission denied)" "load as nobody"
run_as_nobody --bus session --socket /nonexistent evict stories260K
expect_rc 1 "evict as nobody"
expect "$tmp/err" "(permission denied)" "evict as nobody"
[ "$(loaded_models)" = 'ao 1 "/org/pinfer/Pinfer1/Model/1"' ] || fail "nobody's evict changed LoadedModels: $(loaded_models)"

# (4) evict over D-Bus unloads; unload is the same command.
run --bus session --socket /nonexistent evict stories260K
expect_rc 0 "evict over D-Bus"
[ "$(cat "$tmp/out")" = "stories260K unloaded" ] || fail "evict printed: $(cat "$tmp/out")"
[ "$(loaded_models)" = "ao 0" ] || fail "LoadedModels after the evict: $(loaded_models)"
run --bus session --socket /nonexistent evict stories260K
expect_rc 0 "evict of a model not loaded"
[ "$(cat "$tmp/out")" = "stories260K was not loaded" ] || fail "second evict printed: $(cat "$tmp/out")"
run --socket "$sock" ps
cp "$tmp/out" "$tmp/ps0.sock"
run --bus session --socket /nonexistent ps
expect_rc 0 "ps with nothing loaded"
cmp -s "$tmp/out" "$tmp/ps0.sock" || fail "ps with nothing loaded: '$(cat "$tmp/out")', over the socket '$(cat "$tmp/ps0.sock")'"
run --bus session --socket /nonexistent ps --json
expect_rc 0 "ps --json with nothing loaded"
expect_empty "$tmp/out" "ps --json with nothing loaded"
run --bus session --socket /nonexistent load stories260K
expect_rc 0 "load again"
run --bus session --socket /nonexistent --json unload stories260K
expect_rc 0 "unload --json over D-Bus"
[ "$(cat "$tmp/out")" = '{"model":"stories260K","was_loaded":true}' ] || fail "unload --json printed: $(cat "$tmp/out")"
[ "$(loaded_models)" = "ao 0" ] || fail "LoadedModels after unload: $(loaded_models)"
# keep-alive 0: unloaded as soon as the load is done, before its
# properties can be read; described as the socket describes it.
run --socket "$sock" load stories260K --keep-alive 0
expect_rc 0 "load --keep-alive 0 over the socket"
cp "$tmp/out" "$tmp/load0.sock"
run --bus session --socket /nonexistent load stories260K --keep-alive 0
expect_rc 0 "load --keep-alive 0 over D-Bus"
cmp -s "$tmp/out" "$tmp/load0.sock" || fail "load --keep-alive 0 over D-Bus printed '$(cat "$tmp/out")', over the socket '$(cat "$tmp/load0.sock")'"

# (5) A model in use: EvictModel refuses it as busy, the socket's unload
# waits for the generation.
run --bus session --socket /nonexistent load mid
expect_rc 0 "load mid"
mid=$(loaded_models | sed 's/^ao 1 "\(.*\)"$/\1/')
start_generation "$mid"
run --bus session --socket /nonexistent ps
grep -Eq '^mid +[0-9.]+ MiB +1/[0-9]+ +dense +- +when idle$' "$tmp/out" || fail "ps over D-Bus during a generation: $(cat "$tmp/out")"
run --bus session --socket /nonexistent evict mid
expect_rc 1 "evict over D-Bus of a busy model"
expect "$tmp/err" "(busy)" "evict of a busy model"
expect "$tmp/err" "in use" "evict of a busy model"
bctl get-property "$name" "$mid" org.pinfer.Pinfer1.Model Name >/dev/null || fail "the busy model was evicted"
run --bus none --socket "$sock" unload mid
expect_rc 0 "unload over the socket of a busy model"
[ "$(cat "$tmp/out")" = "mid unloaded" ] || fail "unload over the socket printed: $(cat "$tmp/out")"
kill "$gen" 2>/dev/null
wait "$gen" 2>/dev/null
gen=
wait_for "the deferred unload of mid" sh -c "[ \"\$(busctl --address='$addr' get-property $name $mgr $iface LoadedModels)\" = 'ao 0' ]"

# (6) Ctrl-C ends the wait for a load that hangs (its file became a FIFO
# nobody writes; pinferd knows the model from its scan at start, and
# LoadModel does not scan again for a model it knows): exit 130, nothing
# printed. pinfer handles SIGINT itself, so that a background job, which
# starts with SIGINT ignored, is interrupted too.
rm "$tmp/models/slow.gguf"
mkfifo "$tmp/models/slow.gguf"
"$pinfer" --bus session --socket /nonexistent load slow >"$tmp/slow.out" 2>"$tmp/slow.err" &
slow=$!
wait_for "the hanging load" grep -q "loading model slow" "$tmp/pinferd.log"
kill -INT "$slow"
# Not a bare wait: a pinfer deaf to Ctrl-C would hang the test. Ended is
# gone or a zombie.
wait_for "pinfer to end on Ctrl-C" sh -c "! kill -0 $slow 2>/dev/null || grep -q '^[0-9]* (.*) Z' /proc/$slow/stat"
wait "$slow"
rc=$?
[ "$rc" -eq 130 ] || { cat "$tmp/slow.out" "$tmp/slow.err" >&2; fail "Ctrl-C during a load over D-Bus: exit status $rc, expected 130"; }
expect_empty "$tmp/slow.out" "Ctrl-C during a load"
# The writer comes and goes: the load reads nothing and fails.
: >"$tmp/models/slow.gguf"
rm "$tmp/models/slow.gguf"

# (7) --bus, PINFER_BUS and auto.
run --bus session --socket /nonexistent load stories260K --keep-alive -1
expect_rc 0 "load for the choice tests"
cp "$tmp/out" "$tmp/loaded"
# auto with a socket named: the socket only, though pinferd is on the bus.
run --socket /nonexistent ps
expect_rc 3 "auto with --socket"
with="PINFER_SOCKET=/nonexistent"
run ps
expect_rc 3 "auto with PINFER_SOCKET"
# An explicit bus goes first, from the command line or the environment;
# --bus beats PINFER_BUS.
with="PINFER_BUS=session PINFER_SOCKET=/nonexistent"
run ps
expect_rc 0 "PINFER_BUS=session"
cmp -s "$tmp/out" "$tmp/ps.sock" || fail "PINFER_BUS=session ps: $(cat "$tmp/out")"
with="PINFER_BUS=session PINFER_SOCKET=/nonexistent"
run --bus none ps
expect_rc 3 "--bus none over PINFER_BUS=session"
with="PINFER_BUS=bogus"
run ps
expect_rc 2 "PINFER_BUS=bogus"
expect "$tmp/err" "PINFER_BUS" "PINFER_BUS=bogus"
run --bus bogus ps
expect_rc 2 "--bus bogus"
# auto without a socket named, as root: the default socket is
# /run/pinferd.sock, so the system bus (here: ours).
with="DBUS_SYSTEM_BUS_ADDRESS=$addr"
run -v ps
expect_rc 0 "auto as root"
expect "$tmp/err" "on the system bus" "auto as root"
cmp -s "$tmp/out" "$tmp/ps.sock" || fail "auto as root: $(cat "$tmp/out")"
run --bus system --socket /nonexistent ps
expect_rc 3 "--bus system with no system bus"
# auto for a user: the socket in $XDG_RUNTIME_DIR (not there), so the
# session bus.
with="XDG_RUNTIME_DIR=$tmp/xdg"
run_as_nobody -v ps
expect_rc 0 "auto as a user"
expect "$tmp/err" "on the session bus" "auto as a user"
cmp -s "$tmp/out" "$tmp/ps.sock" || fail "auto as a user: $(cat "$tmp/out")"

# (8) Falling back to the socket: no session bus at all, a session bus
# that is not there, and one without pinferd. Silent without -v.
run --bus session --socket "$sock" evict stories260K
expect_rc 0 "evict for the fallback tests"
with="-u DBUS_SESSION_BUS_ADDRESS XDG_RUNTIME_DIR=$tmp/xdg"
run --bus session --socket "$sock" -v load stories260K
expect_rc 0 "no session bus"
expect "$tmp/err" "no session bus" "no session bus"
expect "$tmp/err" "using the socket $sock" "no session bus"
with="DBUS_SESSION_BUS_ADDRESS=unix:path=$tmp/nobus"
run --bus session --socket "$sock" -v evict stories260K
expect_rc 0 "a session bus that is not there"
expect "$tmp/err" "cannot connect to the session bus" "a session bus that is not there"
expect "$tmp/err" "using the socket $sock" "a session bus that is not there"
[ "$(cat "$tmp/out")" = "stories260K unloaded" ] || fail "evict through the socket: $(cat "$tmp/out")"
with="DBUS_SESSION_BUS_ADDRESS=unix:path=$tmp/nobus"
run --bus session --socket "$sock" load stories260K --keep-alive -1
expect_rc 0 "fallback without -v"
expect_empty "$tmp/err" "fallback without -v"
cmp -s "$tmp/out" "$tmp/loaded" || fail "load through the socket: $(cat "$tmp/out")"
open_conf "$tmp/bus2" >"$tmp/bus2.conf"
dbus-daemon --config-file="$tmp/bus2.conf" --nofork --nosyslog >"$tmp/bus2.log" 2>&1 &
bus2=$!
wait_for "the second dbus-daemon" test -S "$tmp/bus2"
with="DBUS_SESSION_BUS_ADDRESS=unix:path=$tmp/bus2"
run --bus session --socket "$sock" -v ps
expect_rc 0 "a bus without pinferd"
expect "$tmp/err" "no pinferd on the session bus" "a bus without pinferd"
expect "$tmp/err" "using the socket $sock" "a bus without pinferd"
cmp -s "$tmp/out" "$tmp/ps.sock" || fail "ps through the socket: $(cat "$tmp/out")"
with="DBUS_SESSION_BUS_ADDRESS=unix:path=$tmp/bus2"
run --bus session --socket /nonexistent ps
expect_rc 3 "no pinferd on the bus, none on the socket"
expect "$tmp/err" "cannot connect to /nonexistent" "no pinferd on the bus, none on the socket"
kill "$bus2"
wait "$bus2" 2>/dev/null
bus2=

# (9) The shipped bus policy refuses loads to others before pinferd sees
# them. Root stands in for the pinferd user as the name's owner.
stop_daemon
stop_bus
start_bus policy
start_daemon
run_as_nobody --bus session --socket /nonexistent load stories260K
expect_rc 1 "load as nobody under the shipped policy"
expect "$tmp/err" "access denied" "load as nobody under the shipped policy"
run_as_nobody --bus session --socket /nonexistent evict stories260K
expect_rc 1 "evict as nobody under the shipped policy"
expect "$tmp/err" "access denied" "evict as nobody under the shipped policy"
run_as_nobody --bus session --socket /nonexistent ps
expect_rc 0 "ps as nobody under the shipped policy"
run --bus session --socket /nonexistent load stories260K
expect_rc 0 "load as root under the shipped policy"

echo "test_client_dbus: ok"
