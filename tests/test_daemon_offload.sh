#!/bin/sh
# pinferd serving an offloaded model (a bundle file under its minimum
# budget) beside stories260K in memory (docs/offload.md, "In the daemon"),
# both with F16 KV caches (--kv-type f16, the references too).
#
# Faults: a read error (EIO), a short read and a damaged cluster during a
# generation on the packed model fail that request, and the message the
# client gets names the file and what failed; the daemon serves on: a
# generation on stories260K started with the failing one and one after it
# give their reference tokens, and once the fault is gone (the injector
# turned off, the byte put back) so does a fresh generation on the packed
# model. Read faults come from tests/fault_pread.c preloaded into pinferd
# with the pread fallback (PINFER_IO=pread; io_uring reads never pass
# through pread); the damaged cluster is also read through io_uring.
#
# Budgets: LoadModel changes the loaded model's budget in place, over the
# socket and D-Bus, also while a generation runs on it (which keeps its
# tokens); what only an unload can do is refused. Memory pressure (a FIFO
# as MEMORY_PRESSURE_WATCH) shrinks the budget before any eviction.
me=test_daemon_offload
# shellcheck source=tests/dbus_lib.sh
. "$(dirname "$0")/dbus_lib.sh"
dbus_setup
text="$SHARED/text/tinystories_val_head.txt"
packed=$tmp/models/packed.gguf

mkdir "$tmp/models"
ln -s "$SHARED/models/stories260K/stories260K.gguf" "$tmp/models/stories260K.gguf"
: >"$tmp/pinferd.conf"
synth "$tmp/pred.gguf" --dim 256 --ff 768 --layers 3 --heads 4 --type q4_0 --act relu --sparsity 0.9 --predictor 64
"$BUILD/pinfer-model" profile -m "$tmp/pred.gguf" -f "$text" --lines 20 -o "$tmp/pred.prof" >"$tmp/pack.log" 2>&1 &&
	"$BUILD/pinfer-model" pack -m "$tmp/pred.gguf" --profile "$tmp/pred.prof" -o "$packed" >>"$tmp/pack.log" 2>&1 ||
	{ cat "$tmp/pack.log" >&2; fail "profile and pack"; }
"${CC:-cc}" -shared -fPIC -O1 -o "$tmp/fault.so" "$(dirname "$0")/fault_pread.c" -ldl 2>"$tmp/cc.log" ||
	{ cat "$tmp/cc.log" >&2; fail "cannot build the pread fault injector"; }
# a sanitizer build wants its runtime first; the injector only wraps pread
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
export ASAN_OPTIONS
# Pressure comes only from the test, not from the machine.
mkfifo "$tmp/pressure"
export MEMORY_PRESSURE_WATCH="$tmp/pressure"

# The references: the source model and stories260K run by pinfer-model,
# with the daemon's F16 KV caches.
prompt="Once upon a time"
"$BUILD/pinfer-model" run -m "$tmp/pred.gguf" -p "$prompt" --temp 0 --ids -n 32 --kv-type f16 \
	>"$tmp/ref.packed" 2>"$tmp/err" &&
	"$BUILD/pinfer-model" run -m "$tmp/models/stories260K.gguf" -p "$prompt" --temp 0 --ids -n 200 --kv-type f16 \
		>"$tmp/ref.stories260K" 2>"$tmp/err" || { cat "$tmp/err" >&2; fail "the reference generations"; }

start_pinferd() {  # VAR=VALUE...: pinferd with these in its environment
	env "$@" "$pinferd" --config "$tmp/pinferd.conf" --socket "$tmp/sock" --models "$tmp/models" \
		--bus session --offload-budget min --keep-alive -1 --slots 2 --ctx-size 256 --kv-type f16 --threads 2 \
		>>"$tmp/pinferd.log" 2>&1 &
	daemon=$!
	wait_for "pinferd to listen" "$pinfer" --socket "$tmp/sock" ping
}
alive() { kill -0 "$daemon" 2>/dev/null || fail "pinferd is gone"; }
gen() {  # model out: greedy ids into out, the client's stderr into out.err
	case $1 in packed) n=32 ;; *) n=200 ;; esac
	"$pinfer" --socket "$tmp/sock" run "$1" "$prompt" -n "$n" --temp 0 --ids >"$2" 2>"$2.err"
}
same() {  # model what: a generation gives the reference tokens
	gen "$1" "$tmp/got" || fail "$2: the generation on $1 failed: $(cat "$tmp/got.err")"
	cmp -s "$tmp/got" "$tmp/ref.$1" || fail "$2: $1 gave $(cat "$tmp/got"), not $(cat "$tmp/ref.$1")"
}
refused() {  # what text...: a generation on packed fails saying every text
	what=$1
	shift
	gen packed "$tmp/got" && fail "$what: the generation on packed did not fail"
	for t in "$@"; do
		grep -qF -- "$t" "$tmp/got.err" || fail "$what: '$t' is not in the message: $(cat "$tmp/got.err")"
	done
}
# FAULT TEXT...: with the fault on (a command), a generation on packed
# fails saying TEXT, one on stories260K at the same time and one after it
# are right; the fault off (the same command again), packed is right.
fault_case() {
	toggle=$1
	shift
	$toggle
	gen stories260K "$tmp/beside" &
	beside=$!
	refused "$toggle" "$packed" "$@"
	wait "$beside" || fail "$toggle: the generation on stories260K beside it failed: $(cat "$tmp/beside.err")"
	cmp -s "$tmp/beside" "$tmp/ref.stories260K" || fail "$toggle: stories260K beside it gave other tokens"
	alive
	same stories260K "$toggle: after it"
	$toggle
	same packed "$toggle: once it is gone"
}
eio() { if [ -s "$tmp/fault" ]; then : >"$tmp/fault"; else echo eio >"$tmp/fault"; fi; }
short_read() { if [ -s "$tmp/fault" ]; then : >"$tmp/fault"; else echo short >"$tmp/fault"; fi; }
# Flips a bit of the coldest cluster of layer 2, in place (the daemon has
# the file open); again, flips it back.
damage() {
	PYTHONPATH=$(dirname "$0") python3 - "$packed" <<'EOF' || fail "cannot damage $packed"
import sys
import gguf_layout
f = gguf_layout.read(sys.argv[1])
ne, t, off = f.tensors['blk.2.ffn_clusters']
at = off + (ne[1] - 1) * ne[0] + 10
with open(sys.argv[1], 'r+b') as out:
    out.seek(at)
    out.write(bytes([f.data[at] ^ 0x20]))
EOF
}
# Under the minimum budget the cluster may still be cached from an earlier
# generation: the model is loaded anew, which reads no cold cluster, and the
# generation's prefill reads them all.
damaged_cluster() {
	"$pinfer" --socket "$tmp/sock" unload packed >/dev/null || fail "unloading packed"
	damage
}

start_bus open

# (1) pread, with the injector; the resident weights copied (the default).
start_pinferd LD_PRELOAD="$tmp/fault.so" FAULT_PREAD_CONTROL="$tmp/fault" FAULT_PREAD_FILE="$packed" PINFER_IO=pread
same packed "before any fault"
same stories260K "before any fault"
grep -q "model packed loaded .*MiB of weights copied, memory budget min, reads by pread" "$tmp/pinferd.log" ||
	fail "packed is not offloaded with pread reads, its resident weights copied"
fault_case eio "read of" "Input/output error"
fault_case short_read "short read"
fault_case damaged_cluster "layer 2 cluster" "checksum" "the file is damaged"
stop_daemon_checked

# (2) io_uring: the damaged cluster again; the weights read in place (mmap
# from the config file), which gives the same tokens.
echo "mmap = yes" >"$tmp/pinferd.conf"
start_pinferd
same packed "io_uring, before the damage"
grep -q "model packed loaded .*weights read in place, memory budget min, reads by io_uring" "$tmp/pinferd.log" ||
	fail "packed does not read through io_uring: $(grep 'model packed loaded' "$tmp/pinferd.log")"
fault_case damaged_cluster "layer 2 cluster" "checksum" "the file is damaged"

# (3) Budgets in place. The minimum, from the refusal of a smaller one.
budget() {  # how (socket|bus) value: pinfer load packed --memory-budget value; the budget it reports
	"$pinfer" --bus "$([ "$1" = bus ] && echo session || echo none)" --socket "$tmp/sock" --json \
		load packed --memory-budget "$2" >"$tmp/load.json" 2>"$tmp/load.err" ||
		fail "load packed --memory-budget $2 ($1): $(cat "$tmp/load.err")"
	python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); print(m["memory_budget"]) if m["memory_budget"] == m["memory_bytes"] else sys.exit(str(m))' \
		"$tmp/load.json" || fail "load packed --memory-budget $2 ($1): no budget in $(cat "$tmp/load.json")"
}
load_refused() {  # value text: the socket refuses that budget saying text
	out=$("$pinfer" --bus none --socket "$tmp/sock" load packed --memory-budget "$1" 2>&1) &&
		fail "budget $1 for the loaded packed: accepted ($out)"
	case "$out" in *"$2"*) ;; *) fail "budget $1 for the loaded packed: $out" ;; esac
}
load_refused 4096 "below its minimum of"
min=$(echo "$out" | sed -n 's/.* below its minimum of \([0-9]*\).*/\1/p')
[ -n "$min" ] || fail "no minimum in: $out"
[ "$(budget socket min)" = "$min" ] || fail "packed is not at its minimum $min"
more=$((min + 256 * 1024))
[ "$(budget socket "$more")" = "$more" ] || fail "the socket's budget $more was not taken"
same packed "at $more bytes"
prop() { bctl get-property "$name" "$1" org.pinfer.Pinfer1.Model "$2" | cut -d' ' -f2-; }
obj=$(bctl call "$name" "$mgr" "$iface" LoadModel 'sa{sv}' packed 1 memory-budget s "$((more + 4096))" |
	sed 's/^o "\(.*\)"$/\1/')
[ "$(prop "$obj" MemoryBudget)" = $((more + 4096)) ] || fail "D-Bus LoadModel: MemoryBudget $(prop "$obj" MemoryBudget)"
[ "$(prop "$obj" MemoryBytes)" = $((more + 4096)) ] || fail "D-Bus LoadModel: MemoryBytes $(prop "$obj" MemoryBytes)"
[ "$(budget bus min)" = "$min" ] || fail "pinfer --bus session load --memory-budget min"
[ "$(prop "$obj" MemoryBudget)" = "$min" ] || fail "the same object is not at the minimum"
all=$(budget socket 100%ffn)
[ "$all" -gt "$more" ] || fail "100%ffn in place: budget $all, not above $more"
load_refused none "takes an unload"
# While a generation runs on it: its tokens stay the reference.
gen packed "$tmp/during" &
during=$!
[ "$(budget socket "$more")" = "$more" ] || fail "the budget while a generation runs"
wait "$during" || fail "the generation during the budget change: $(cat "$tmp/during.err")"
cmp -s "$tmp/during" "$tmp/ref.packed" || fail "the generation during the budget change gave other tokens"
alive

# (4) Memory pressure: the budget shrinks to half its room above the
# minimum; stories260K, idle, stays.
same stories260K "before the pressure"
echo some >"$tmp/pressure"
half=$((min + (more - min) / 2))
shrunk() { [ "$(prop "$obj" MemoryBudget)" = "$half" ]; }
wait_for "the budget to shrink under pressure" shrunk
grep -q "memory pressure .*: 1 memory budget shrinking" "$tmp/pinferd.log" || fail "no shrink in the log"
"$pinfer" --bus none --socket "$tmp/sock" --json ps >"$tmp/ps.json" || fail "pinfer ps"
grep -q '"stories260K"' "$tmp/ps.json" || fail "stories260K was evicted while a budget could shrink"
same packed "under pressure"
stop_daemon_checked
echo "$me: ok"
