#!/bin/sh
# pinferd's D-Bus interface (docs/dbus-api.md) against a private
# dbus-daemon, driven by clients nobody here wrote: busctl (sd-bus),
# gdbus (GLib) and dbus-send (libdbus). Covers the name and READY=1, the
# introspection against the shipped interface files, LoadModel / EvictModel
# / ListModels with their signals and errors, properties, a generation on
# the socket showing up in them, the uid check, the shipped bus policy, a
# loop that keeps answering while a load hangs and while a generation
# runs, memory pressure, a bus that is missing, goes away or is wedged at
# startup, and a slow user database behind the uid check.
me=test_dbus
# shellcheck source=tests/dbus_lib.sh
. "$(dirname "$0")/dbus_lib.sh"
monitor=
wedged=
cleanup_test() {
	[ -z "$monitor" ] || kill "$monitor" 2>/dev/null
	[ -z "$wedged" ] || kill "$wedged" 2>/dev/null
}
dbus_setup dbus-send dbus-monitor gdbus
make_models
head -c 4096 /dev/urandom >"$tmp/models/garbage.gguf"
# A ReLU model runs sparse (gate mode) by default.
synth "$tmp/models/relu.gguf" --shape tiny --type f32 --act relu
# Memory pressure as systemd would report it, from a FIFO the test writes.
mkfifo "$tmp/pressure"
export MEMORY_PRESSURE_WATCH="$tmp/pressure"

start_bus open

# gdbus prints the error's D-Bus name, which busctl does not.
gcall() {  # object-path method args...
	path=$1 method=$2
	shift 2
	gdbus call --address "$addr" --dest "$name" --object-path "$path" --method "$method" "$@" 2>&1
}
expect_error() {  # error-name output what
	case "$2" in
	*"$1"*) ;;
	*) fail "$3: expected $1, got: $2" ;;
	esac
}
prop() {  # object-path interface property -> value without the type
	bctl get-property "$name" "$1" "$2" "$3" | cut -d' ' -f2-
}

# (1) READY=1 comes after the name is owned: the listener asks the bus the
# moment READY=1 arrives.
start_daemon() {
	rm -f "$tmp/notify" "$tmp/listening"
	python3 - "$tmp" <<'PY' &
import os, socket, subprocess, sys
tmp = sys.argv[1]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
listener.bind(tmp + "/notify")
listener.settimeout(10)
open(tmp + "/listening", "w").close()
while True:
    try:
        msg = listener.recv(4096).decode()
    except socket.timeout:
        sys.exit("test_dbus: FAIL: no READY=1 within 10 s")
    if "READY=1" in msg.splitlines():
        break
owner = subprocess.run(["dbus-send", "--session", "--print-reply=literal",
                        "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
                        "org.freedesktop.DBus.NameHasOwner", "string:org.pinfer.Pinfer1"],
                       capture_output=True, text=True).stdout
if "true" not in owner:
    sys.exit("test_dbus: FAIL: READY=1 came before org.pinfer.Pinfer1 was owned: %r" % owner)
PY
	listener=$!
	wait_for "the notify listener" test -e "$tmp/listening"
	NOTIFY_SOCKET=$tmp/notify "$pinferd" --config "$tmp/pinferd.conf" --socket "$tmp/sock" \
		--models "$tmp/models" --session-bus --threads 1 >>"$tmp/pinferd.log" 2>&1 &
	daemon=$!
	if [ "${WITH_SYSTEMD:-1}" = 1 ]; then
		wait "$listener" || fail "READY=1 and the bus name (above)"
	else
		kill "$listener" 2>/dev/null
		wait "$listener" 2>/dev/null
	fi
	wait_for "the name $name" bctl status "$name"
	wait_for "the socket" test -S "$tmp/sock"
}
start_daemon

# Signals from the daemon and its replies, in the order the bus routed them.
dbus-monitor --address "$addr" "type='signal',sender='$name'" "type='method_return',sender='$name'" \
	>"$tmp/monitor" 2>&1 &
monitor=$!
# dbus-monitor reports losing its own unique name once it is a monitor.
wait_for "dbus-monitor" grep -q NameLost "$tmp/monitor"

# (2) Introspection is the shipped interface files, member for member.
check_introspection() {  # object-path interface-file
	dbus-send --session --print-reply=literal --dest="$name" "$1" \
		org.freedesktop.DBus.Introspectable.Introspect >"$tmp/introspect.xml" ||
		fail "Introspect of $1 failed"
	python3 - "$tmp/introspect.xml" "$2" <<'PY' || fail "introspection of $1 differs from $2 (above)"
import sys, xml.etree.ElementTree as ET
def members(el):
    out = []
    for m in el:
        args = tuple((a.get("name"), a.get("type"), a.get("direction")) for a in m.findall("arg"))
        notes = tuple((a.get("name"), a.get("value")) for a in m.findall("annotation"))
        out.append((m.tag, m.get("name"), m.get("type"), m.get("access"), args, notes))
    return sorted(out)
live = ET.fromstring(open(sys.argv[1]).read())
shipped = ET.parse(sys.argv[2]).getroot().find("interface")
found = [i for i in live.findall("interface") if i.get("name") == shipped.get("name")]
if len(found) != 1:
    sys.exit("%s: interface %s is not there once" % (sys.argv[1], shipped.get("name")))
if members(found[0]) != members(shipped):
    print(members(found[0]), members(shipped), sep="\n")
    sys.exit("members differ")
std = {"org.freedesktop.DBus.Properties", "org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Peer"}
if not std <= {i.get("name") for i in live.findall("interface")}:
    sys.exit("standard interfaces missing")
PY
	# Every property the file declares is there, and nothing else.
	iface_name=$(python3 -c 'import sys,xml.etree.ElementTree as E; print(E.parse(sys.argv[1]).getroot().find("interface").get("name"))' "$2")
	gdbus call --address "$addr" --dest "$name" --object-path "$1" \
		--method org.freedesktop.DBus.Properties.GetAll "$iface_name" >"$tmp/getall" ||
		fail "GetAll $iface_name on $1 failed"
	python3 - "$tmp/getall" "$2" <<'PY' || fail "GetAll on $1 does not match $2 (above)"
import re, sys, xml.etree.ElementTree as ET
got = set(re.findall(r"'([A-Za-z]+)': ", open(sys.argv[1]).read()))
want = {p.get("name") for p in ET.parse(sys.argv[2]).getroot().iter("property")}
if got != want:
    sys.exit("GetAll gave %s, the file declares %s" % (sorted(got), sorted(want)))
PY
}
check_introspection "$mgr" systemd/org.pinfer.Pinfer1.Manager.xml
bctl tree "$name" >"$tmp/tree" || fail "busctl tree failed"
grep -q "$mgr" "$tmp/tree" || fail "busctl tree does not show $mgr: $(cat "$tmp/tree")"

# (3) LoadModel through busctl replies with the new object, after the
# InterfacesAdded signal; the object has the model's properties.
[ "$(prop "$mgr" "$iface" LoadedModels)" = "0" ] || fail "LoadedModels not empty at start"
out=$(bctl call "$name" "$mgr" "$iface" LoadModel 'sa{sv}' stories260K 1 keep-alive-ms x 600000) ||
	fail "LoadModel failed: $out"
[ "$out" = 'o "/org/pinfer/Pinfer1/Model/1"' ] || fail "LoadModel replied $out"
model=/org/pinfer/Pinfer1/Model/1
wait_for "the LoadModel reply in the monitor" grep -q 'object path "/org/pinfer/Pinfer1/Model/1"' "$tmp/monitor"
python3 - "$tmp/monitor" <<'PY' || fail "signals of the load (above)"
import sys
text = open(sys.argv[1]).read()
added = text.find("member=InterfacesAdded")
reply = text.find('method return', added if added >= 0 else 0)
if added < 0:
    sys.exit("no InterfacesAdded")
if '"/org/pinfer/Pinfer1/Model/1"' not in text[added:added + 400]:
    sys.exit("InterfacesAdded is not for Model/1")
before = text[:added]
if 'object path "/org/pinfer/Pinfer1/Model/1"' in before:
    sys.exit("LoadModel replied before InterfacesAdded")
if "member=PropertiesChanged" not in text or '"LoadedModels"' not in text:
    sys.exit("no PropertiesChanged for LoadedModels")
PY
check_introspection "$model" systemd/org.pinfer.Pinfer1.Model.xml
# A keep-alive beyond a year is forever, as on the socket.
gcall "$mgr" "$iface.LoadModel" stories260K "{'keep-alive-ms': <int64 9223372036854775807>}" >/dev/null ||
	fail "LoadModel with the largest keep-alive"
[ "$(prop "$model" org.pinfer.Pinfer1.Model KeepAlive)" = -1 ] || fail "a huge keep-alive is not forever"
gcall "$mgr" "$iface.LoadModel" stories260K "{'keep-alive-ms': <int64 600000>}" >/dev/null ||
	fail "LoadModel setting the keep-alive back"
[ "$(prop "$model" org.pinfer.Pinfer1.Model Name)" = '"stories260K"' ] || fail "Name"
[ "$(prop "$model" org.pinfer.Pinfer1.Model Architecture)" = '"llama"' ] || fail "Architecture"
[ "$(prop "$model" org.pinfer.Pinfer1.Model Quantization)" = '"f32"' ] || fail "Quantization"
[ "$(prop "$model" org.pinfer.Pinfer1.Model KeepAlive)" = 600000 ] || fail "KeepAlive is not the option's"
[ "$(prop "$model" org.pinfer.Pinfer1.Model Parameters)" -gt 0 ] || fail "Parameters"
[ "$(prop "$model" org.pinfer.Pinfer1.Model SparsityMode)" = '"dense"' ] || fail "SparsityMode of stories260K"
mem=$(prop "$mgr" "$iface" MemoryUsed)
[ "$mem" -gt 0 ] && [ "$mem" = "$(prop "$model" org.pinfer.Pinfer1.Model MemoryBytes)" ] ||
	fail "MemoryUsed $mem is not the model's MemoryBytes"
[ "$(prop "$mgr" "$iface" LoadedModels)" = "1 \"$model\"" ] || fail "LoadedModels: $(prop "$mgr" "$iface" LoadedModels)"
# LoadModel of a loaded model answers at once with the same object.
out=$(gcall "$mgr" "$iface.LoadModel" stories260K '{}') || fail "second LoadModel: $out"
[ "$out" = "(objectpath '$model',)" ] || fail "second LoadModel replied $out"
gcall "$mgr" org.freedesktop.DBus.ObjectManager.GetManagedObjects | grep -q "'$model': {'org.pinfer.Pinfer1.Model'" ||
	fail "GetManagedObjects does not list $model"

# (4) A generation on the socket shows in the model's counters.
"$pinfer" --socket "$tmp/sock" run stories260K "" -n 20 --temp 0 >/dev/null || fail "generation failed"
[ "$(prop "$model" org.pinfer.Pinfer1.Model TokensGenerated)" = 20 ] ||
	fail "TokensGenerated $(prop "$model" org.pinfer.Pinfer1.Model TokensGenerated), expected 20"
python3 -c 'import sys; sys.exit(not float(sys.argv[1]) > 0)' "$(prop "$model" org.pinfer.Pinfer1.Model DecodeTokensPerSecond)" ||
	fail "DecodeTokensPerSecond is not positive"

# (4b) A ReLU model loads in gate mode and reports the sparsity its
# generations measured.
relu=$(bctl call "$name" "$mgr" "$iface" LoadModel 'sa{sv}' relu 0 | sed 's/^o "\(.*\)"$/\1/')
[ "$(prop "$relu" org.pinfer.Pinfer1.Model SparsityMode)" = '"gate"' ] || fail "SparsityMode of the ReLU model"
[ "$(prop "$relu" org.pinfer.Pinfer1.Model MeasuredSparsity)" = 0 ] || fail "MeasuredSparsity before any generation"
"$pinfer" --socket "$tmp/sock" run relu "Once upon a time" -n 30 --temp 0 >/dev/null || fail "generation on relu"
python3 -c 'import sys; v = float(sys.argv[1]); sys.exit(not 0.2 < v < 0.8)' \
	"$(prop "$relu" org.pinfer.Pinfer1.Model MeasuredSparsity)" ||
	fail "MeasuredSparsity $(prop "$relu" org.pinfer.Pinfer1.Model MeasuredSparsity) of a random ReLU model"
gcall "$relu" org.pinfer.Pinfer1.Model.Evict >/dev/null || fail "evicting relu"

# (5) While a generation runs, the loop answers property reads (which see
# it running), Ping on the socket, and EvictModel with Busy.
mid=$(bctl call "$name" "$mgr" "$iface" LoadModel 'sa{sv}' mid 0 | sed 's/^o "\(.*\)"$/\1/')
[ "$mid" = /org/pinfer/Pinfer1/Model/3 ] || fail "LoadModel mid replied '$mid'"
start_generation "$mid"
"$pinfer" --socket "$tmp/sock" ping >/dev/null || fail "ping during a generation"
[ "$(prop "$mgr" "$iface" ActiveGenerations)" = 1 ] || fail "ActiveGenerations during a generation"
out=$(gcall "$mgr" "$iface.EvictModel" mid)
expect_error org.pinfer.Pinfer1.Error.Busy "$out" "EvictModel during a generation"
kill "$gen"
wait "$gen" 2>/dev/null
wait_for "the generation to end" sessions_are "$mid" 0
gcall "$mid" org.pinfer.Pinfer1.Model.Evict >/dev/null || fail "Model.Evict of mid"

# (6) The uid check: nobody may read but not load or evict.
out=$(as_nobody gdbus call --address "$addr" --dest "$name" --object-path "$mgr" \
	--method "$iface.LoadModel" stories260K '{}' 2>&1)
expect_error org.pinfer.Pinfer1.Error.PermissionDenied "$out" "LoadModel as nobody"
out=$(as_nobody dbus-send --session --print-reply --dest="$name" "$mgr" "$iface.EvictModel" string:stories260K 2>&1)
expect_error org.pinfer.Pinfer1.Error.PermissionDenied "$out" "EvictModel as nobody"
out=$(as_nobody busctl --address="$addr" get-property "$name" "$model" org.pinfer.Pinfer1.Model Name) ||
	fail "nobody cannot read properties: $out"
as_nobody busctl --address="$addr" call "$name" "$mgr" "$iface" ListModels >/dev/null ||
	fail "nobody cannot list models"

# (7) Errors carry the documented names.
expect_error org.pinfer.Pinfer1.Error.NotFound "$(gcall "$mgr" "$iface.LoadModel" nope '{}')" "LoadModel nope"
expect_error org.pinfer.Pinfer1.Error.NotFound "$(gcall "$mgr" "$iface.EvictModel" nope)" "EvictModel nope"
expect_error org.pinfer.Pinfer1.Error.InvalidArgument \
	"$(gcall "$mgr" "$iface.LoadModel" stories260K "{'keep-alive': <'5m'>}")" "an unknown option"
expect_error org.pinfer.Pinfer1.Error.InvalidArgument \
	"$(gcall "$mgr" "$iface.LoadModel" stories260K "{'keep-alive-ms': <'5m'>}")" "an option of the wrong type"
expect_error org.pinfer.Pinfer1.Error.InvalidArgument \
	"$(gcall "$mgr" "$iface.LoadModel" stories260K "{'sparsity': <'sparse'>}")" "an unknown sparsity"
expect_error org.pinfer.Pinfer1.Error.Busy \
	"$(gcall "$mgr" "$iface.LoadModel" stories260K "{'sparsity': <'threshold'>}")" "another sparsity while loaded"
out=$(gcall "$mgr" "$iface.LoadModel" mid "{'sparsity': <'gate'>}")
expect_error org.pinfer.Pinfer1.Error.LoadFailed "$out" "gate sparsity on a SiLU model"
case "$out" in *ReLU*) ;; *) fail "the gate refusal does not say why: $out" ;; esac
expect_error org.pinfer.Pinfer1.Error.InvalidArgument "$(gcall "$mgr" "$iface.LoadModel" ../etc '{}')" "a path as name"
expect_error org.pinfer.Pinfer1.Error.OutOfMemory \
	"$(gcall "$mgr" "$iface.LoadModel" stories260K "{'max-memory': <uint64 1000>}")" "max-memory below the model"
expect_error org.pinfer.Pinfer1.Error.LoadFailed "$(gcall "$mgr" "$iface.LoadModel" garbage '{}')" "a corrupt file"
grep -q "garbage" "$tmp/pinferd.log" || fail "the failed load of garbage.gguf is not logged"
expect_error org.freedesktop.DBus.Error.UnknownObject \
	"$(gcall /org/pinfer/Pinfer1/Model/99 org.pinfer.Pinfer1.Model.Evict)" "a model object that does not exist"
expect_error org.freedesktop.DBus.Error.PropertyReadOnly \
	"$(gcall "$mgr" org.freedesktop.DBus.Properties.Set "$iface" MemoryBudget '<uint64 1>')" "Set"
expect_error org.freedesktop.DBus.Error.UnknownProperty \
	"$(gcall "$mgr" org.freedesktop.DBus.Properties.Get "$iface" Nope)" "Get of an unknown property"
expect_error org.freedesktop.DBus.Error.UnknownMethod "$(gcall "$mgr" "$iface.Nope")" "an unknown method"
# A long property name cut inside a character in the error text: the
# daemon answers (libdbus would abort it on text that is not UTF-8).
long=$(python3 -c 'print("\u00e9" * 400)')
expect_error org.freedesktop.DBus.Error.UnknownProperty \
	"$(gcall "$mgr" org.freedesktop.DBus.Properties.Get "$iface" "$long")" "Get of a long name"
prop "$mgr" "$iface" Version >/dev/null || fail "the daemon did not survive a long property name"
expect_error org.freedesktop.DBus.Error.InvalidArgs \
	"$(dbus-send --session --print-reply --dest="$name" "$mgr" "$iface.LoadModel" string:x 2>&1)" "bad signature"

# (8) EvictModel (through dbus-send) unloads; the object goes, after
# InterfacesRemoved.
dbus-send --session --print-reply --dest="$name" "$mgr" "$iface.EvictModel" string:stories260K >/dev/null ||
	fail "EvictModel failed"
wait_for "InterfacesRemoved" grep -q "member=InterfacesRemoved" "$tmp/monitor"
grep -A1 "member=InterfacesRemoved" "$tmp/monitor" | grep -q '"/org/pinfer/Pinfer1/Model/1"' ||
	fail "InterfacesRemoved is not for Model/1"
[ "$(prop "$mgr" "$iface" LoadedModels)" = "0" ] || fail "LoadedModels after the evict"
[ "$(prop "$mgr" "$iface" MemoryUsed)" = "0" ] || fail "MemoryUsed after the evict"
expect_error org.freedesktop.DBus.Error.UnknownObject \
	"$(gcall "$model" org.freedesktop.DBus.Properties.Get org.pinfer.Pinfer1.Model Name)" "the evicted object"
bctl call "$name" "$mgr" "$iface" ListModels | grep -q '"stories260K" "[^"]*" "unloaded" [0-9]* 0 "/"' ||
	fail "ListModels after the evict: $(bctl call "$name" "$mgr" "$iface" ListModels)"
# Loaded again, it is a new object.
[ "$(bctl call "$name" "$mgr" "$iface" LoadModel 'sa{sv}' stories260K 0)" = 'o "/org/pinfer/Pinfer1/Model/4"' ] ||
	fail "the load after the evict is not a new object"

# (9) A load that hangs (its file became a FIFO nobody writes) leaves the
# loop serving: ListModels says "loading", Ping and property reads answer.
bctl call "$name" "$mgr" "$iface" ListModels | grep -q '"slow"' || fail "slow.gguf not listed"
rm "$tmp/models/slow.gguf"
mkfifo "$tmp/models/slow.gguf"
gcall "$mgr" "$iface.LoadModel" slow '{}' >"$tmp/slow.out" 2>&1 &
slow=$!
# Not ListModels until the load began: it rescans the directory, where
# slow.gguf is no model file any more.
wait_for "the hanging load" grep -q "loading model slow" "$tmp/pinferd.log"
bctl call "$name" "$mgr" "$iface" ListModels | grep -q '"slow" "[^"]*" "loading"' ||
	fail "ListModels during the load: $(bctl call "$name" "$mgr" "$iface" ListModels)"
"$pinfer" --socket "$tmp/sock" ping >/dev/null || fail "ping during a load"
prop "$mgr" "$iface" Version >/dev/null || fail "property read during a load"
"$pinfer" --socket "$tmp/sock" run stories260K "" -n 5 --temp 0 >/dev/null || fail "generation during another load"
[ "$(prop "$mgr" "$iface" LoadedModels)" = '1 "/org/pinfer/Pinfer1/Model/4"' ] || fail "LoadedModels during a load"
# The writer comes and goes: the load reads nothing and fails cleanly.
: >"$tmp/models/slow.gguf"
wait "$slow"
expect_error org.pinfer.Pinfer1.Error.LoadFailed "$(cat "$tmp/slow.out")" "the load of a FIFO"
rm "$tmp/models/slow.gguf"

# (10) Memory pressure evicts idle models, and only those: mid is busy.
mid=$(bctl call "$name" "$mgr" "$iface" LoadModel 'sa{sv}' mid 0 | sed 's/^o "\(.*\)"$/\1/')
start_generation "$mid"
echo some >"$tmp/pressure"
wait_for "the eviction under pressure" grep -q "memory pressure .*: 1 idle model evicted" "$tmp/pinferd.log"
[ "$(prop "$mgr" "$iface" LoadedModels)" = "1 \"$mid\"" ] ||
	fail "after memory pressure, LoadedModels is $(prop "$mgr" "$iface" LoadedModels), expected only $mid"
removed() {  # object-path: InterfacesRemoved was signalled for it
	python3 - "$tmp/monitor" "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
paths = re.findall(r'member=InterfacesRemoved\n\s*object path "([^"]*)"', text)
sys.exit(sys.argv[2] not in paths)
PY
}
wait_for "InterfacesRemoved for Model/4" removed /org/pinfer/Pinfer1/Model/4
kill "$gen"
wait "$gen" 2>/dev/null

# (10b) Offloaded models (docs/offload.md): a bundle file loads under the
# memory-budget option, on D-Bus and on the socket, generates, and reports
# its budget, neuron cache and reads; a budget for a file that is not a
# bundle fails the load with the engine's reason, and the daemon goes on.
wait_for "the generation on mid to end" sessions_are "$mid" 0
gcall "$mid" org.pinfer.Pinfer1.Model.Evict >/dev/null || fail "Model.Evict of mid before offload"
synth "$tmp/pred.gguf" --dim 256 --ff 768 --layers 3 --heads 4 --type q4_0 --act relu --sparsity 0.9 --predictor 64
"$BUILD/pinfer-model" profile -m "$tmp/pred.gguf" -f "$SHARED/text/tinystories_val_head.txt" --lines 20 \
	-o "$tmp/pred.prof" >"$tmp/pack.log" 2>&1 &&
	"$BUILD/pinfer-model" pack -m "$tmp/pred.gguf" --profile "$tmp/pred.prof" -o "$tmp/models/packed.gguf" \
		>>"$tmp/pack.log" 2>&1 || { cat "$tmp/pack.log" >&2; fail "profile and pack"; }
mp() { prop "$packed" org.pinfer.Pinfer1.Model "$1"; }
check_offloaded() {  # what: the properties of $packed after a generation
	[ "$(mp MemoryBudget)" -gt 0 ] || fail "$1: MemoryBudget $(mp MemoryBudget)"
	[ "$(mp MemoryBudget)" = "$(mp MemoryBytes)" ] || fail "$1: MemoryBytes $(mp MemoryBytes) is not the budget"
	[ "$(mp NeuronCacheBytes)" -gt 0 ] || fail "$1: NeuronCacheBytes $(mp NeuronCacheBytes)"
	python3 -c 'import sys; v = float(sys.argv[1]); sys.exit(not 0 <= v <= 1)' "$(mp NeuronCacheHitRate)" ||
		fail "$1: NeuronCacheHitRate $(mp NeuronCacheHitRate)"
	python3 -c 'import sys; sys.exit(not float(sys.argv[1]) > 0)' "$(mp BytesReadPerToken)" ||
		fail "$1: BytesReadPerToken $(mp BytesReadPerToken) at the minimum budget"
}
packed=$(bctl call "$name" "$mgr" "$iface" LoadModel 'sa{sv}' packed 1 memory-budget s min | sed 's/^o "\(.*\)"$/\1/')
case "$packed" in /org/pinfer/Pinfer1/Model/*) ;; *) fail "LoadModel packed with memory-budget min: '$packed'" ;; esac
[ "$(mp TokensGenerated)" = 0 ] || fail "TokensGenerated of the new packed model"
[ "$(mp BytesReadPerToken)" = 0 ] || fail "BytesReadPerToken before any token"
"$pinfer" --socket "$tmp/sock" run packed "Once upon a time" -n 16 --temp 0 >/dev/null || fail "generation on packed"
check_offloaded "D-Bus load"
expect_error org.pinfer.Pinfer1.Error.Busy \
	"$(gcall "$mgr" "$iface.LoadModel" packed "{'memory-budget': <'none'>}")" "all in memory while offloaded"
gcall "$mgr" "$iface.LoadModel" packed "{'memory-budget': <'min'>}" >/dev/null || fail "the same budget again"
expect_error org.pinfer.Pinfer1.Error.InvalidArgument \
	"$(gcall "$mgr" "$iface.LoadModel" packed "{'memory-budget': <'lots'>}")" "a budget that is no size"
gcall "$packed" org.pinfer.Pinfer1.Model.Evict >/dev/null || fail "evicting packed"
# The socket, through the client.
"$pinfer" --socket "$tmp/sock" --json load packed --memory-budget min >"$tmp/load.json" ||
	fail "pinfer load --memory-budget min: $(cat "$tmp/load.json")"
python3 - "$tmp/load.json" <<'PY' || fail "the socket's ModelInfo of packed (above)"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["memory_budget"] > 0 and m["memory_budget"] == m["memory_bytes"], m
assert m["neuron_cache_bytes"] > 0, m
PY
"$pinfer" --socket "$tmp/sock" run packed "Once upon a time" -n 16 --temp 0 >/dev/null ||
	fail "generation on packed (socket load)"
"$pinfer" --socket "$tmp/sock" --json ps >"$tmp/ps.json" || fail "pinfer ps"
python3 - "$tmp/ps.json" <<'PY' || fail "pinfer ps of packed (above)"
import json, sys
text = open(sys.argv[1]).read()
models = [json.loads(l) for l in text.splitlines() if l.strip()]
models = [m for l in models for m in (l if isinstance(l, list) else l.get("models", [l]))]
m = [m for m in models if m.get("name") == "packed"]
assert m, text
m = m[0]
assert m["memory_budget"] > 0 and m["neuron_cache_bytes"] > 0, m
assert 0 <= m["neuron_cache_hit_rate"] <= 1 and m["bytes_read_per_token"] > 0, m
PY
out=$("$pinfer" --socket "$tmp/sock" load packed --memory-budget none 2>&1) &&
	fail "all in memory on the socket while offloaded: $out"
case "$out" in *"memory budget"*) ;; *) fail "all in memory on the socket: $out" ;; esac
"$pinfer" --socket "$tmp/sock" unload packed >/dev/null || fail "unloading packed"
# The client on the bus.
"$pinfer" --bus session --json load packed --memory-budget 50%ffn >"$tmp/load.json" ||
	fail "pinfer --bus session load --memory-budget: $(cat "$tmp/load.json")"
python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); sys.exit(not m["memory_budget"] > 0)' \
	"$tmp/load.json" || fail "the bus's ModelInfo of packed: $(cat "$tmp/load.json")"
"$pinfer" --socket "$tmp/sock" unload packed >/dev/null || fail "unloading packed"
# A plain model with a budget: the engine's reason, and the daemon serves on.
out=$(gcall "$mgr" "$iface.LoadModel" relu "{'memory-budget': <'min'>}")
expect_error org.pinfer.Pinfer1.Error.LoadFailed "$out" "a budget for a plain model"
case "$out" in *"needs a bundle file"*) ;; *) fail "the refusal of a budget does not say why: $out" ;; esac
out=$("$pinfer" --socket "$tmp/sock" load relu --memory-budget 1G 2>&1) && fail "a budget for relu on the socket: $out"
case "$out" in *"needs a bundle file"*) ;; *) fail "the socket's refusal of a budget: $out" ;; esac
"$pinfer" --socket "$tmp/sock" ping >/dev/null || fail "ping after the refused budgets"
relu=$(bctl call "$name" "$mgr" "$iface" LoadModel 'sa{sv}' relu 0 | sed 's/^o "\(.*\)"$/\1/')
[ "$(prop "$relu" org.pinfer.Pinfer1.Model MemoryBudget)" = 0 ] || fail "MemoryBudget of a model in memory"
[ "$(prop "$relu" org.pinfer.Pinfer1.Model NeuronCacheBytes)" = 0 ] || fail "NeuronCacheBytes of a model in memory"
gcall "$relu" org.pinfer.Pinfer1.Model.Evict >/dev/null || fail "evicting relu"

# (11) The daemon outlives its bus: serving the socket, D-Bus off.
kill "$monitor" 2>/dev/null
monitor=
stop_bus
wait_for "the warning about the lost bus" grep -q "the bus went away" "$tmp/pinferd.log"
"$pinfer" --socket "$tmp/sock" ping >/dev/null || fail "ping after the bus went away"
stop_daemon_checked

# (12) No bus at all: a warning, and the socket works.
DBUS_SESSION_BUS_ADDRESS=unix:path=$tmp/nobus "$pinferd" --config "$tmp/pinferd.conf" --socket "$tmp/sock" \
	--models "$tmp/models" --session-bus >"$tmp/nobus.log" 2>&1 &
daemon=$!
wait_for "the socket without a bus" test -S "$tmp/sock"
"$pinfer" --socket "$tmp/sock" ping >/dev/null || fail "ping without a bus"
grep -q "D-Bus off: cannot connect to the session bus" "$tmp/nobus.log" || fail "no warning without a bus: $(cat "$tmp/nobus.log")"
stop_daemon_checked

# (13) The shipped policy: anyone may read, only root and the pinfer
# group may load. Root stands in for the pinferd user as the name's owner.
# From here on, the config's offload-budget applies to bundle files only.
echo "offload-budget = min" >>"$tmp/pinferd.conf"
start_bus policy
start_daemon
packed=$(bctl call "$name" "$mgr" "$iface" LoadModel 'sa{sv}' packed 0 | sed 's/^o "\(.*\)"$/\1/')
[ "$(mp MemoryBudget)" -gt 0 ] || fail "offload-budget: MemoryBudget of packed $(mp MemoryBudget)"
gcall "$packed" org.pinfer.Pinfer1.Model.Evict >/dev/null || fail "evicting packed"
out=$(as_nobody gdbus call --address "$addr" --dest "$name" --object-path "$mgr" \
	--method "$iface.LoadModel" stories260K '{}' 2>&1)
expect_error org.freedesktop.DBus.Error.AccessDenied "$out" "the policy: LoadModel as nobody"
as_nobody busctl --address="$addr" get-property "$name" "$mgr" "$iface" Version >/dev/null ||
	fail "the policy: nobody cannot read properties"
as_nobody busctl --address="$addr" call "$name" "$mgr" "$iface" ListModels >/dev/null ||
	fail "the policy: nobody cannot list models"
as_nobody busctl --address="$addr" introspect "$name" "$mgr" >/dev/null ||
	fail "the policy: nobody cannot introspect"
st=$(bctl call "$name" "$mgr" "$iface" LoadModel 'sa{sv}' stories260K 0 | sed 's/^o "\(.*\)"$/\1/')
[ -n "$st" ] || fail "the policy: root cannot load"
[ "$(prop "$st" org.pinfer.Pinfer1.Model MemoryBudget)" = 0 ] || fail "offload-budget applied to a plain file"
out=$(as_nobody dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
	org.freedesktop.DBus.RequestName string:$name uint32:0 2>&1)
expect_error org.freedesktop.DBus.Error.AccessDenied "$out" "the policy: nobody owning the name"
stop_daemon_checked
stop_bus

# (14) A slow user database (LDAP, sssd) holds up only the caller it is
# asked about. A shim preloaded into pinferd stands in for a slow NSS
# backend: getpwuid_r of nobody touches $tmp/lookup, then takes 4 s. While
# it runs, the loop answers Ping, property reads and root's LoadModel; the
# answer is cached afterwards, and SIGHUP forgets it.
cat >"$tmp/slowdb.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t size, struct passwd **out)
{
	int (*real)(uid_t, struct passwd *, char *, size_t, struct passwd **) =
		(int (*)(uid_t, struct passwd *, char *, size_t, struct passwd **))dlsym(RTLD_NEXT, "getpwuid_r");
	const char *slow = getenv("SLOWDB_UID"), *mark = getenv("SLOWDB_MARK");
	if (slow && mark && uid == (uid_t)strtoul(slow, NULL, 10)) {
		int fd = open(mark, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd >= 0)
			close(fd);
		struct timespec t = { 4, 0 };
		while (nanosleep(&t, &t) < 0)
			;
	}
	return real(uid, pw, buf, size, out);
}
EOF
"${CC:-cc}" -shared -fPIC -O1 -o "$tmp/slowdb.so" "$tmp/slowdb.c" -ldl 2>"$tmp/cc.log" ||
	fail "cannot build the slow user database: $(cat "$tmp/cc.log")"
now_ms() { date +%s%3N; }
start_bus open
# ASan insists on coming first among the preloaded libraries; the shim
# forwards to the next getpwuid_r, whichever that is.
LD_PRELOAD=$tmp/slowdb.so SLOWDB_UID=65534 SLOWDB_MARK=$tmp/lookup \
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
	"$pinferd" --config "$tmp/pinferd.conf" --socket "$tmp/sock" --models "$tmp/models" --session-bus \
	--threads 1 >>"$tmp/pinferd.log" 2>&1 &
daemon=$!
wait_for "the name $name" bctl status "$name"
wait_for "the socket" test -S "$tmp/sock"
# What a blocked loop would hold up while nobody is looked up; t1 and t2
# bracket them.
others_answer() {  # what
	t1=$(now_ms)
	"$pinfer" --socket "$tmp/sock" ping >/dev/null || fail "ping while $1"
	prop "$mgr" "$iface" Version >/dev/null || fail "property read while $1"
	bctl call "$name" "$mgr" "$iface" LoadModel 'sa{sv}' stories260K 0 >/dev/null || fail "root's LoadModel while $1"
	t2=$(now_ms)
	# Before the fix, these waited for the lookup: ~4000 ms.
	[ $((t2 - t1)) -lt 3000 ] || fail "the loop waited for the user database while $1: $((t2 - t1)) ms"
}
# On D-Bus: nobody's LoadModel waits for the lookup, then is refused.
rm -f "$tmp/lookup"
t0=$(now_ms)
as_nobody gdbus call --address "$addr" --dest "$name" --object-path "$mgr" --method "$iface.LoadModel" \
	stories260K '{}' >"$tmp/slow.out" 2>&1 &
slow=$!
wait_for "the slow lookup" test -e "$tmp/lookup"
others_answer "nobody's groups are looked up for D-Bus"
kill -0 "$slow" 2>/dev/null || fail "nobody's LoadModel ended before its lookup did: $(cat "$tmp/slow.out")"
wait "$slow"
t3=$(now_ms)
expect_error org.pinfer.Pinfer1.Error.PermissionDenied "$(cat "$tmp/slow.out")" "LoadModel as nobody, looked up slowly"
[ $((t3 - t0)) -ge 3500 ] || fail "nobody's LoadModel took $((t3 - t0)) ms; its lookup takes 4000"
# The answer is cached: no second lookup.
rm -f "$tmp/lookup"
out=$(as_nobody dbus-send --session --print-reply --dest="$name" "$mgr" "$iface.EvictModel" string:stories260K 2>&1)
expect_error org.pinfer.Pinfer1.Error.PermissionDenied "$out" "EvictModel as nobody, cached"
[ ! -e "$tmp/lookup" ] || fail "nobody was looked up again instead of from the cache"
# SIGHUP forgets it. On the socket (open to nobody for this), nobody's
# Hello waits for the lookup, and its LoadModel is refused after it.
reloads_above() { [ "$(grep -c "reloaded " "$tmp/pinferd.log")" -gt "$1" ]; }
forget_cache() {
	n=$(grep -c "reloaded " "$tmp/pinferd.log")
	kill -HUP "$daemon"
	wait_for "the reload" reloads_above "$n"
	rm -f "$tmp/lookup"
}
forget_cache
chmod 666 "$tmp/sock"
as_nobody "$pinfer" --bus none --socket "$tmp/sock" load stories260K >"$tmp/slow.out" 2>&1 &
slow=$!
wait_for "the slow lookup" test -e "$tmp/lookup"
others_answer "nobody's groups are looked up for the socket"
kill -0 "$slow" 2>/dev/null || fail "nobody's load on the socket ended before its lookup did: $(cat "$tmp/slow.out")"
wait "$slow" && fail "nobody's load on the socket succeeded: $(cat "$tmp/slow.out")"
grep -qi "permission" "$tmp/slow.out" || fail "nobody's load on the socket: $(cat "$tmp/slow.out")"
# What a client sends right after its Hello waits with the Hello, and is
# then answered in order.
forget_cache
# A python3 nobody can run: a shim under root's home (pyenv) is not one.
for py in /usr/bin/python3 /usr/local/bin/python3 "$(command -v python3)" ""; do
	[ -n "$py" ] && as_nobody "$py" -c '' 2>/dev/null && break
done
[ -n "$py" ] || fail "no python3 that nobody may run"
as_nobody "$py" - "$tmp/sock" <<'PY' || fail "frames sent with a Hello that waits for the user database (above)"
import socket, struct, sys

def varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out

def field(num, payload):  # length-delimited
    return varint(num << 3 | 2) + varint(len(payload)) + payload

def uint(num, n):
    return varint(num << 3) + varint(n)

def frame(msg):
    return struct.pack(">I", len(msg)) + msg

def fields(buf):  # {number: [value or bytes]}
    out, i = {}, 0
    while i < len(buf):
        key = shift = 0
        while True:
            key |= (buf[i] & 0x7F) << shift
            shift += 7
            i += 1
            if not buf[i - 1] & 0x80:
                break
        if key & 7 == 0:
            v = shift = 0
            while True:
                v |= (buf[i] & 0x7F) << shift
                shift += 7
                i += 1
                if not buf[i - 1] & 0x80:
                    break
        else:
            n = shift = 0
            while True:
                n |= (buf[i] & 0x7F) << shift
                shift += 7
                i += 1
                if not buf[i - 1] & 0x80:
                    break
            v, i = buf[i:i + n], i + n
        out.setdefault(key >> 3, []).append(v)
    return out

s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sys.argv[1])
s.sendall(frame(field(1, uint(1, 1)))                                  # Hello{1}
          + frame(field(8, uint(1, 7)))                                # Ping{7}
          + frame(field(9, uint(1, 8) + field(2, b"stories260K"))))    # LoadModel{8}
data = b""
def recv_frame():
    global data
    while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("the daemon hung up")
        data += chunk
    n = struct.unpack(">I", data[:4])[0]
    msg, data = data[4:4 + n], data[4 + n:]
    (num, body), = fields(msg).items()
    return num, fields(body[0])
num, hello = recv_frame()
if num != 1 or b"model_control" in hello.get(5, []):
    sys.exit("first reply: %d %r, expected a HelloReply without model_control" % (num, hello))
num, pong = recv_frame()
if num != 9 or pong.get(1) != [7]:
    sys.exit("second reply: %d %r, expected Pong{7}" % (num, pong))
num, err = recv_frame()
if num != 2 or err.get(1) != [8] or err.get(2) != [13]:
    sys.exit("third reply: %d %r, expected Error{8, ERR_PERMISSION_DENIED}" % (num, err))
PY
[ -e "$tmp/lookup" ] || fail "the pipelined Hello did not wait for a lookup"
stop_daemon_checked
stop_bus

# (15) A wedged bus holds startup up for 5 s at most (docs/dbus-api.md):
# then an error, READY=1, and the socket without D-Bus. Wedged two ways: a
# bus socket that accepts connections into its backlog and never answers
# (the Hello waits), and one whose backlog is full (connect(2) waits).
wedged_bus() {  # full|room
	rm -f "$tmp/wedged" "$tmp/wedged.ready"
	python3 - "$tmp/wedged" "$1" <<'PY' &
import errno, socket, sys, time
path, how = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(0 if how == "full" else 16)
held = []
if how == "full":
    # Backlog 0 takes one connection; the next connect(2) blocks.
    for _ in range(2):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(path)
        except BlockingIOError:
            break
        held.append(c)
    else:
        sys.exit("test_dbus: FAIL: cannot fill the backlog of the wedged bus")
open(path + ".ready", "w").close()
time.sleep(120)
PY
	wedged=$!
	wait_for "the wedged bus" test -e "$tmp/wedged.ready"
}
wedged_start() {  # system|session
	t0=$(now_ms)
	DBUS_SESSION_BUS_ADDRESS=unix:path=$tmp/wedged DBUS_SYSTEM_BUS_ADDRESS=unix:path=$tmp/wedged \
		"$pinferd" --config "$tmp/pinferd.conf" --socket "$tmp/sock" --models "$tmp/models" \
		--bus "$1" >"$tmp/wedged.log" 2>&1 &
	daemon=$!
	wait_for "pinferd ready with a wedged bus" grep -q "ready: models in" "$tmp/wedged.log"
	t1=$(now_ms)
	grep -q "D-Bus off: the $1 bus did not answer within 5 s" "$tmp/wedged.log" ||
		fail "no error about the wedged $1 bus: $(cat "$tmp/wedged.log")"
	[ $((t1 - t0)) -ge 4500 ] && [ $((t1 - t0)) -lt 8000 ] ||
		fail "with a wedged $1 bus, pinferd was ready after $((t1 - t0)) ms, not after 5 s"
	"$pinfer" --socket "$tmp/sock" ping >/dev/null || fail "ping with a wedged $1 bus"
	# Stopping does not wait for the connection attempt left behind.
	t0=$(now_ms)
	stop_daemon_checked
	t1=$(now_ms)
	[ $((t1 - t0)) -lt 3000 ] || fail "with a wedged $1 bus, pinferd took $((t1 - t0)) ms to stop"
	kill "$wedged" 2>/dev/null
	wait "$wedged" 2>/dev/null
	wedged=
}
wedged_bus room
wedged_start session
wedged_bus full
wedged_start system

echo "test_dbus: ok"
