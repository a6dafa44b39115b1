#!/bin/sh
# `make bench`: speed figures on a synthetic Llama-2-7B-shaped Q4_0 model
# (written once into build/bench/ by `pinfer-model synth`, ~3.8 GB), with the
# machine's memory bandwidth and sgemm peak measured in the same run.
# BENCH_SHAPE / BENCH_TYPE / BENCH_THREADS override the defaults.
set -eu
: "${BUILD:=build/rel}"
: "${SHARED:=../shared}"
shape=${BENCH_SHAPE:-llama2-7b}
type=${BENCH_TYPE:-q4_0}
threads=${BENCH_THREADS:-2}
tool="$BUILD/pinfer-model"
dir=build/bench
model="$dir/$shape-$type.gguf"

mkdir -p "$dir"
if [ ! -f "$model" ]; then
	echo "bench: writing $model (once)"
	"$tool" synth --shape "$shape" --type "$type" \
		--vocab-from "$SHARED/models/llama-2-tiny-random/llama-2-tiny-random.gguf" -o "$model"
fi
echo "== pinfer-model bench -m $model -t $threads -n 16 -p 128"
"$tool" bench -m "$model" -t "$threads" -n 16 -p 128

# Activation sparsity (docs/sparsity.md): a ReLU model 90% sparse with a
# predictor of 128 hidden units (recall 0.995 as with 256, at half the
# bytes: docs/sparsity.md), in PowerInfer's format, decoded in each mode
# one after the other, then predictor against dense in alternated rounds
# (set BENCH_SPARSE=0 to skip; the file is ~4.7 GB).
if [ "${BENCH_SPARSE:-1}" = 1 ]; then
	sparse="$dir/$shape-$type-relu90-pred128.gguf"
	if [ ! -f "$sparse" ]; then
		echo "bench: writing $sparse (once)"
		"$tool" synth --shape "$shape" --type "$type" --act relu --sparsity 0.9 --predictor 128 \
			--vocab-from "$SHARED/models/llama-2-tiny-random/llama-2-tiny-random.gguf" -o "$sparse"
	fi
	for mode in dense gate predictor; do
		echo "== pinfer-model bench -m $sparse -t $threads -n 32 -p 16 --sparsity $mode"
		"$tool" bench -m "$sparse" -t "$threads" -n 32 -p 16 --sparsity "$mode" | grep -E "sparsity|decode"
	done
	echo "== pinfer-model bench -m $sparse --vs $sparse --vs-sparsity dense -t $threads -n 32"
	"$tool" bench -m "$sparse" --vs "$sparse" --vs-sparsity dense -t "$threads" -n 32
fi

# The same model through pinferd: decode rate and time to first token as the
# client sees them, to set against the in-process figures above. The prompt
# is empty (BOS alone), as in the in-process first-token figure, so both
# evaluate exactly one token whatever the daemon's prompt cache holds.
tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
mkdir "$tmp/models"
ln -s "$PWD/$model" "$tmp/models/bench.gguf"
"$BUILD/pinferd" --socket "$tmp/sock" --models "$tmp/models" --slots 1 --threads "$threads" \
	--ctx-size 512 --log-level warn &
pid=$!
for _ in $(seq 200); do [ -S "$tmp/sock" ] && break; sleep 0.05; done
prompt=""
"$BUILD/pinfer" --socket "$tmp/sock" load bench --keep-alive -1 >/dev/null
"$BUILD/pinfer" --socket "$tmp/sock" run bench "$prompt" -n 4 --temp 0 >/dev/null  # warm
for run in 1 2; do
	echo "== through pinferd: pinfer run \"\" -n 32 --temp 0 -v (run $run)"
	"$BUILD/pinfer" --socket "$tmp/sock" run bench "$prompt" -n 32 --temp 0 --raw -v 2>&1 >/dev/null |
		grep -E "generated|client"
done
