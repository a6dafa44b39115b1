#!/bin/sh
# Bundle files under a memory budget (docs/offload.md): with budgets of
# 100%, 50% and 20% of the FFN, the minimum and a size in bytes, a
# predictor model, a model whose bundles are bigger than a block and
# stories260K in threshold mode generate the tokens and the perplexity of
# their sources, with decode's prefetch on and off; reads go O_DIRECT; a damaged cold cluster, a read error
# (EIO) and a short read (injected into pread by a preloaded library) fail
# the evaluation with a message that says what and where.
me=test_offload
# shellcheck source=tests/tools_lib.sh
. "$(dirname "$0")/tools_lib.sh"
export SHARED
text="$SHARED/text/tinystories_val_head.txt"
stories="$SHARED/models/stories260K/stories260K.gguf"

synth_and_pack pred 40 --dim 256 --ff 768 --layers 3 --heads 4 --type q4_0 --act relu --sparsity 0.9 --predictor 64
synth_and_pack wide 10 --dim 2048 --ff 512 --layers 2 --heads 16 --type q8_0 --act relu --sparsity 0.9
run "$bin" calibrate -m "$stories" -f "$text" --skip-lines 100 --lines 200 --sparsity 0.3 -o "$tmp/thr.gguf"
run "$bin" profile -m "$stories" --sparsity threshold --calibration "$tmp/thr.gguf" -f "$text" --lines 40 \
	-o "$tmp/stories.prof"
run "$bin" pack -m "$stories" --sparsity threshold --calibration "$tmp/thr.gguf" --profile "$tmp/stories.prof" \
	-o "$tmp/stories.pack"

for budget in 100%ffn 50%ffn 20%ffn min; do
	packed_opts="--memory-budget $budget -c 256"
	same_as_source "$tmp/pred.gguf" "$tmp/pred.pack"
	same_as_source "$tmp/wide.gguf" "$tmp/wide.pack"
	same_as_source "$stories" "$tmp/stories.pack" --sparsity threshold --calibration "$tmp/thr.gguf"
done
# the pread fallback of the I/O layer gives the same
packed_opts="--memory-budget min -c 256"
export PINFER_IO=pread
same_as_source "$tmp/pred.gguf" "$tmp/pred.pack"
same_as_source "$tmp/wide.gguf" "$tmp/wide.pack"
unset PINFER_IO
# Decode's prefetch during attention (predictor mode under a budget), on
# and off, on both I/O paths: the same tokens.
for io in io_uring pread; do
	for prefetch in 0 1; do
		export PINFER_IO=$io PINFER_PREFETCH=$prefetch
		same_as_source "$tmp/pred.gguf" "$tmp/pred.pack"
	done
done
unset PINFER_IO PINFER_PREFETCH

# The plan in bytes: the minimum is refused below, accepted at; a budget
# in bytes between the minimum and everything runs the same. The model's
# minimum grows by its context once one is made.
refuse 1 "below this model's minimum of" "$bin" run -m "$tmp/pred.pack" --memory-budget 1M -c 256 -p x -n 1
min=$(sed -n 's/.*minimum of \([0-9]*\).*/\1/p' "$tmp/err")
refuse 1 "below this model's minimum of" "$bin" run -m "$tmp/pred.pack" --memory-budget "$min" -c 256 -p x -n 1
min=$(sed -n 's/.*minimum of \([0-9]*\).*/\1/p' "$tmp/err")
run "$bin" run -m "$tmp/pred.gguf" -p "Once upon a time" --temp 0 --ids -n 64
mv "$tmp/out" "$tmp/pred.ids"
for budget in "$min" $((min + 400000)); do
	run "$bin" run -m "$tmp/pred.pack" --memory-budget "$budget" -c 256 -p "Once upon a time" --temp 0 --ids -n 64
	cmp -s "$tmp/out" "$tmp/pred.ids" || fail "budget $budget: other tokens than the source"
done
refuse 1 "below this model's minimum of" "$bin" run -m "$tmp/pred.pack" --memory-budget $((min - 4096)) -c 256 \
	-p x -n 1

# plan: the budget spent, ending with the total; an absolute budget is
# planned to the byte, and a percentage as the model runs it
run "$bin" plan -m "$tmp/pred.pack" --memory-budget "$((min + 400000))" -c 256
expect "$tmp/out" "total: $((min + 400000)) bytes"
expect "$tmp/out" "neuron cache"
run "$bin" plan -m "$tmp/pred.pack" --memory-budget 50%ffn -c 256
total=$(sed -n 's/^total: \([0-9]*\) bytes$/\1/p' "$tmp/out")
[ -n "$total" ] || fail "plan printed no total"
run "$bin" plan -m "$tmp/pred.pack" --memory-budget "$total" -c 256
expect "$tmp/out" "total: $total bytes"
refuse 2 "no budget given" "$bin" plan -m "$tmp/pred.pack"

# bench reports the reads; the smallest cache misses
run "$bin" bench -m "$tmp/pred.pack" --memory-budget min -t 2 -n 8 -p 4
expect "$tmp/out" "offload: budget"
expect "$tmp/out" "decode time: FFN"
expect "$tmp/out" "predictor: chose"
expect "$tmp/out" "reads by io_uring, O_DIRECT"
PINFER_IO=pread run "$bin" bench -m "$tmp/pred.pack" --memory-budget min -t 2 -n 8 -p 4
expect "$tmp/out" "reads by pread, O_DIRECT"
PINFER_PREFETCH=1 run "$bin" bench -m "$tmp/pred.pack" --memory-budget min -t 2 -n 8 -p 4
expect "$tmp/out" "prefetch during attention"
awk '/^offload per decoded token/ { r = $5 + 0 } END { exit !(r > 0) }' "$tmp/out" ||
	{ cat "$tmp/out" >&2; fail "no reads per token at the minimum budget"; }

# bench --vs: both models' rates, bytes and time shares, and their ratio
run "$bin" bench -m "$tmp/pred.pack" --vs "$tmp/pred.gguf" --vs-sparsity dense -t 2 -n 4
expect "$tmp/out" "(predictor): "
expect "$tmp/out" "(dense): "
expect "$tmp/out" "MiB of weights a token; FFN"
expect "$tmp/out" "ratio: "
grep "(predictor): " "$tmp/out" | grep -q ", predictor [0-9.]* ms" ||
	{ cat "$tmp/out" >&2; fail "bench --vs gives no predictor time"; }

# A damaged cold cluster: found when it is read (under a budget, by the
# first prefill; in memory, at load).
PYTHONPATH=$(dirname "$0") python3 - "$tmp/pred.pack" "$tmp/damaged.pack" <<'EOF'
import sys
import gguf_layout
f = gguf_layout.read(sys.argv[1])
ne, t, off = f.tensors['blk.2.ffn_clusters']
d = bytearray(f.data)
d[off + (ne[1] - 1) * ne[0] + 10] ^= 0x20   # the coldest cluster of layer 2
open(sys.argv[2], 'wb').write(d)
EOF
refuse 1 "layer 2 cluster 85" "$bin" run -m "$tmp/damaged.pack" --memory-budget min -c 256 -p "Once" -n 1
refuse 1 "the file is damaged" "$bin" perplexity -m "$tmp/damaged.pack" --memory-budget min -c 256 -f "$text" --lines 2
expect "$tmp/err" "layer 2 cluster"
refuse 1 "checksum" "$bin" run -m "$tmp/damaged.pack" -p x -n 1

# Read errors from the I/O layer: pread of the bundle file fails with EIO,
# or returns short, after the load (decode reads go by pread too, so that
# the injector sees them).
export PINFER_IO=pread
"${CC:-cc}" -shared -fPIC -O1 -o "$tmp/fault.so" "$(dirname "$0")/fault_pread.c" -ldl 2>"$tmp/cc.log" ||
	{ cat "$tmp/cc.log" >&2; fail "cannot build the pread fault injector"; }
# a sanitizer build wants its runtime first; the injector only wraps pread
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
export ASAN_OPTIONS
LD_PRELOAD=$tmp/fault.so FAULT_PREAD=eio FAULT_AFTER=1 \
	refuse 1 "Input/output error" "$bin" perplexity -m "$tmp/pred.pack" --memory-budget min -c 256 -f "$text" --lines 2
expect "$tmp/err" "read of"
LD_PRELOAD=$tmp/fault.so FAULT_PREAD=short FAULT_AFTER=1 \
	refuse 1 "short read" "$bin" perplexity -m "$tmp/pred.pack" --memory-budget min -c 256 -f "$text" --lines 2
LD_PRELOAD=$tmp/fault.so FAULT_PREAD=eio FAULT_AFTER=1 \
	refuse 1 "Input/output error" "$bin" run -m "$tmp/pred.pack" -p x -n 1

unset PINFER_IO

# Misuse: a budget for a file that is not packed, bad budget strings.
refuse 1 "a memory budget needs a bundle file" "$bin" run -m "$tmp/pred.gguf" --memory-budget 1G -p x -n 1
refuse 2 "--memory-budget takes" "$bin" run -m "$tmp/pred.pack" --memory-budget 12X -p x -n 1
refuse 2 "--memory-budget takes" "$bin" run -m "$tmp/pred.pack" --memory-budget 0%ffn -p x -n 1
echo "$me: ok"
