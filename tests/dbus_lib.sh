# shellcheck shell=sh disable=SC2034,SC2154
# What the tests that run pinferd beside a bus share (test_dbus.sh,
# test_client_dbus.sh, test_daemon_offload.sh, test_load.sh,
# test_security.sh): a temporary directory, a private dbus-daemon (an open
# policy, or the shipped one), pinferd's models, and helpers. Sourced, not
# a test (make check runs tests/test_*.sh only). The sourcing test sets
# $me, its name for messages, and may define cleanup_test, which the exit
# trap runs first.
# (Hence SC2034 and SC2154 off: variables pass both ways.)
set -u
: "${SHARED:?SHARED must name the shared data directory}"
: "${BUILD:?BUILD must name the build directory}"
pinfer=$(cd "$BUILD" && pwd)/pinfer
pinferd=$(cd "$BUILD" && pwd)/pinferd
name=org.pinfer.Pinfer1
mgr=/org/pinfer/Pinfer1
iface=org.pinfer.Pinfer1.Manager
tmp=
daemon=
bus=

fail() {
	echo "$me: FAIL: $*" >&2
	[ -f "$tmp/pinferd.log" ] && { echo "--- pinferd.log" >&2; tail -n 30 "$tmp/pinferd.log" >&2; }
	exit 1
}

cleanup_test() { :; }
stop_daemon() {
	[ -z "$daemon" ] || { kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; }
	daemon=
}
# SIGTERM must end pinferd cleanly (with SANITIZE=1: without leaks).
stop_daemon_checked() {
	kill -TERM "$daemon"
	wait "$daemon"
	status=$?
	daemon=
	[ "$status" -eq 0 ] || fail "pinferd exited with status $status on SIGTERM"
}
stop_bus() {
	[ -z "$bus" ] || { kill "$bus" 2>/dev/null; wait "$bus" 2>/dev/null; }
	bus=
	rm -f "$tmp/bus"
}
cleanup() {
	status=$?
	# A load stuck on the FIFO must not keep pinferd from exiting.
	[ -p "$tmp/models/slow.gguf" ] && { : <>"$tmp/models/slow.gguf"; } 2>/dev/null
	cleanup_test
	stop_daemon
	stop_bus
	rm -rf "$tmp"
	exit "$status"
}

# dbus_setup TOOL...: checks for the tools (beyond those every D-Bus test
# needs) and the binaries, makes $tmp and sets the traps.
dbus_setup() {
	for tool in dbus-daemon busctl setpriv python3 "$@"; do
		command -v "$tool" >/dev/null || { echo "$me: FAIL: $tool is needed (scripts/install-deps.sh)" >&2; exit 1; }
	done
	for bin in "$pinfer" "$pinferd" "$BUILD/pinfer-model"; do
		[ -x "$bin" ] || { echo "$me: FAIL: $bin not found (build it first)" >&2; exit 1; }
	done
	tmp=$(mktemp -d "/tmp/pinfer-$me-XXXXXX") || { echo "$me: FAIL: no temporary directory" >&2; exit 1; }
	# Clients run as nobody, who must reach the bus socket.
	chmod 755 "$tmp"
	trap cleanup EXIT
	trap 'exit 1' INT TERM
}

wait_for() {  # what command...: retries for 10 s
	what=$1
	shift
	tries=0
	until "$@" >/dev/null 2>&1; do
		tries=$((tries + 1))
		[ "$tries" -le 200 ] || fail "timed out waiting for $what"
		sleep 0.05
	done
}

# synth OUTPUT ARGS...: pinfer-model synth with llama-2-tiny-random's vocabulary.
synth() {
	out=$1
	shift
	"$BUILD/pinfer-model" synth "$@" --vocab-from "$SHARED/models/llama-2-tiny-random/llama-2-tiny-random.gguf" \
		-o "$out" >"$tmp/synth.log" 2>&1 || { cat "$tmp/synth.log" >&2; fail "synth of $out failed"; }
}

# $tmp/models with stories260K, slow.gguf (a copy that becomes a FIFO
# nobody writes: a load that hangs) and mid.gguf (a model whose generations
# last seconds, to be seen busy); an empty $tmp/pinferd.conf.
make_models() {
	mkdir "$tmp/models"
	ln -s "$SHARED/models/stories260K/stories260K.gguf" "$tmp/models/stories260K.gguf"
	cp "$SHARED/models/stories260K/stories260K.gguf" "$tmp/models/slow.gguf"
	synth "$tmp/models/mid.gguf" --dim 1024 --ff 2816 --layers 8 --heads 16 --type q4_0 --ctx 512
	: >"$tmp/pinferd.conf"
}

# Bus configurations. open_conf: everyone may connect, own names and
# eavesdrop, so what is refused is pinferd's own uid check.
open_conf() {  # socket-path
	cat <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$1</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
EOF
}
# policy_conf: a system bus with the shipped policy; root stands in for the
# pinferd user as the name's owner.
policy_conf() {  # socket-path
	cat <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$1</listen>
  <auth>EXTERNAL</auth>
  <!-- The default policy of Debian's system.conf. -->
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <policy user="root"><allow own="$name"/></policy>
  <include>$(pwd)/systemd/org.pinfer.Pinfer1.conf</include>
</busconfig>
EOF
}

# start_bus open|policy: a dbus-daemon ($bus) at $tmp/bus, the session bus
# ($addr) from now on.
start_bus() {
	"${1}_conf" "$tmp/bus" >"$tmp/$1.conf"
	dbus-daemon --config-file="$tmp/$1.conf" --nofork --nosyslog >"$tmp/bus.log" 2>&1 &
	bus=$!
	tries=0
	while [ ! -S "$tmp/bus" ]; do
		tries=$((tries + 1))
		[ "$tries" -le 100 ] || fail "dbus-daemon did not start: $(cat "$tmp/bus.log")"
		sleep 0.05
	done
	addr=unix:path=$tmp/bus
	export DBUS_SESSION_BUS_ADDRESS="$addr"
}

bctl() { busctl --address="$addr" "$@"; }
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
sessions_are() {  # model-path count: the model's ActiveSessions
	[ "$(bctl get-property "$name" "$1" org.pinfer.Pinfer1.Model ActiveSessions)" = "u $2" ]
}
# start_generation MODEL-PATH: a long generation on mid in the background
# ($gen), running once this returns.
start_generation() {
	"$pinfer" --socket "$tmp/sock" run mid "" -n 400 --temp 1 >/dev/null 2>&1 &
	gen=$!
	wait_for "a running generation" sessions_are "$1" 1
}
