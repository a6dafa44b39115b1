#!/bin/sh
# pinfer-model pack and bundle files (docs/format.md): for a synthetic
# ReLU model with a predictor (gate rows in the bundles), a dReLU model in
# gate mode (gate resident, permuted) and stories260K in threshold mode
# (thresholds from a calibration file), the packed file generates the same
# greedy tokens as the model it was packed from and the same perplexity
# (float tolerance); hottest neurons come first; damaged, truncated and
# misused files are refused with messages that say where.
me=test_pack
# shellcheck source=tests/tools_lib.sh
. "$(dirname "$0")/tools_lib.sh"
export SHARED
text="$SHARED/text/tinystories_val_head.txt"
stories="$SHARED/models/stories260K/stories260K.gguf"

# The summary line and the profile order: position 0 is the neuron the
# profile counted most often (blk.0.ffn_count is non-increasing).
check_order() {
	PYTHONPATH=$(dirname "$0") python3 - "$1" <<'EOF' || fail "$1: neuron order"
import sys
import gguf_layout
f = gguf_layout.read(sys.argv[1])
assert f.alignment == 4096, f.alignment
counts = f.i32('blk.0.ffn_count')
assert all(counts[i] >= counts[i + 1] for i in range(len(counts) - 1)), 'counts not sorted'
assert counts[0] > counts[-1], 'no hot neurons'
order = f.i32('blk.0.ffn_order')
assert sorted(order) == list(range(len(order))), 'order is not a permutation'
for name, (ne, t, off) in f.tensors.items():
    if name.endswith('.ffn_clusters'):
        assert ne[0] % 4096 == 0 and off % 4096 == 0, name
print('order ok: hottest neuron fired %d times, coldest %d' % (counts[0], counts[-1]))
EOF
}

# 1. ReLU with a predictor: gate rows in the bundles, fc2 rows permuted.
synth_and_pack pred 40 --dim 256 --ff 768 --layers 3 --heads 4 --type q4_0 --act relu --sparsity 0.9 --predictor 64
expect "$tmp/out" "bundles of 432 bytes (gate + q4_0 + q4_0 down), 9 per 4096-byte cluster"
check_order "$tmp/pred.pack"
same_as_source "$tmp/pred.gguf" "$tmp/pred.pack"
run "$bin" perplexity -m "$tmp/pred.pack" -f "$text" --lines 2
expect "$tmp/err" "predictor mode"

# 2. dReLU in gate mode: the gate stays resident, its rows permuted.
synth_and_pack drelu 40 --dim 256 --ff 768 --layers 3 --heads 4 --type q8_0 --act drelu --sparsity 0.9
expect "$tmp/out" "(q8_0 + q8_0 down)"
same_as_source "$tmp/drelu.gguf" "$tmp/drelu.pack"

# 2b. Bundles larger than a block: one per 8 KiB cluster.
synth_and_pack wide 10 --dim 2048 --ff 512 --layers 2 --heads 16 --type q8_0 --act relu --sparsity 0.9
expect "$tmp/out" "bundles of 4352 bytes (q8_0 + q8_0 down), 1 per 8192-byte cluster"
same_as_source "$tmp/wide.gguf" "$tmp/wide.pack"

# 3. stories260K in threshold mode: the thresholds travel with the file.
run "$bin" calibrate -m "$stories" -f "$text" --skip-lines 100 --lines 200 --sparsity 0.3 -o "$tmp/thr.gguf"
run "$bin" profile -m "$stories" --sparsity threshold --calibration "$tmp/thr.gguf" -f "$text" --lines 40 \
	-o "$tmp/stories.prof"
run "$bin" pack -m "$stories" --sparsity threshold --calibration "$tmp/thr.gguf" --profile "$tmp/stories.prof" \
	-o "$tmp/stories.pack"
same_as_source "$stories" "$tmp/stories.pack" --sparsity threshold --calibration "$tmp/thr.gguf"

# Damage: a flipped bit in a cluster, in a resident tensor (the output
# matrix, which the vocabulary check would not notice), a truncated file.
python3 - "$tmp/pred.pack" "$tmp" <<'EOF'
import sys
src, tmp = sys.argv[1], sys.argv[2]
d = bytearray(open(src, 'rb').read())
n = len(d)
c = bytearray(d); c[n - 64 * 1024] ^= 0x10; open(tmp + '/cluster.bad', 'wb').write(c)
open(tmp + '/short.bad', 'wb').write(d[:n - 40000])
EOF
refuse 1 "checksum 0x" "$bin" run -m "$tmp/cluster.bad" -p x -n 1
expect "$tmp/err" "the file is damaged"
expect "$tmp/err" "cluster"
refuse 1 "outside" "$bin" run -m "$tmp/short.bad" -p x -n 1
PYTHONPATH=$(dirname "$0") python3 - "$tmp/pred.pack" "$tmp/resident.bad" <<'EOF'
import sys
import gguf_layout
f = gguf_layout.read(sys.argv[1])
d = bytearray(f.data)
d[f.tensors['token_embd.weight'][2] + 100] ^= 0x01
open(sys.argv[2], 'wb').write(d)
EOF
refuse 1 "the file is damaged" "$bin" run -m "$tmp/resident.bad" -p x -n 1
expect "$tmp/err" "tensor token_embd.weight"

# Misuse: dense mode, packing twice, a dense model, a profile of another
# model, missing arguments.
refuse 1 "dense mode needs the model it was packed from" "$bin" run -m "$tmp/pred.pack" --sparsity dense -p x -n 1
refuse 1 "already a bundle file" "$bin" pack -m "$tmp/pred.pack" --profile "$tmp/pred.prof" -o "$tmp/x.pack"
refuse 1 "pack needs a sparse mode" "$bin" pack -m "$stories" --profile "$tmp/stories.prof" -o "$tmp/x.pack"
refuse 1 "a profile of another model" "$bin" pack -m "$tmp/drelu.gguf" --profile "$tmp/stories.prof" -o "$tmp/x.pack"
refuse 2 "no profile given" "$bin" pack -m "$tmp/pred.gguf" -o "$tmp/x.pack"
refuse 2 "no output file given" "$bin" pack -m "$tmp/pred.gguf" --profile "$tmp/pred.prof"
[ ! -e "$tmp/x.pack" ] || fail "a refused pack left $tmp/x.pack behind"
echo "$me: ok"
