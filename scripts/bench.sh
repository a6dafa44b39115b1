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
