#!/bin/sh
# pinfer-model fit-predictor (docs/sparsity.md "Fitting predictors"): fits
# predictors for a small synthetic ReLU model whose gates are low-rank plus
# noise (synth --predictor) on lines 101-400 of the TinyStories text,
# checks the held-out recall on lines 1-100, that the written file runs in
# predictor mode, how long greedy decoding follows dense, and the refusals.
me=test_fit_predictor
# shellcheck source=tests/tools_lib.sh
. "$(dirname "$0")/tools_lib.sh"
export SHARED
text="$SHARED/text/tinystories_val_head.txt"

model="$tmp/relu.gguf"
run "$bin" synth --dim 256 --ff 768 --layers 3 --heads 4 --act relu --sparsity 0.9 --predictor 64 \
	--type f16 -o "$model"
run "$bin" fit-predictor -m "$model" -f "$text" --skip-lines 100 --lines 300 --eval-lines 100 \
	--eval-skip-lines 0 --rank 64 --recall 0.995 -o "$tmp/fit.gguf"
cat "$tmp/out"
# Every layer's held-out recall (field 7 of the table) >= 0.99.
awk '/^[0-9]+ / { n++; if ($7 + 0 < 0.99) bad = bad " layer " $1 ": " $7 }
     END { if (n != 3) { print "expected 3 layer rows, got " n; exit 1 }
           if (bad != "") { print "held-out recall below 0.99:" bad; exit 1 } }' "$tmp/out" ||
	fail "held-out recall (see above)"
head -c 4 "$tmp/fit.gguf" | grep -q PWRI || fail "fit.gguf is not in PowerInfer's format (magic PWRI)"

# The file loads and runs in predictor mode, and auto picks predictor.
run "$bin" run -m "$tmp/fit.gguf" --sparsity predictor -p "Once upon a time" --temp 0 --ids -n 256
mv "$tmp/out" "$tmp/pred.ids"
run "$bin" run -m "$model" --sparsity dense -p "Once upon a time" --temp 0 --ids -n 256
mv "$tmp/out" "$tmp/dense.ids"
run "$bin" perplexity -m "$tmp/fit.gguf" -f "$text" --lines 5
grep -q "predictor" "$tmp/err" || { cat "$tmp/err" >&2; fail "auto did not pick predictor mode"; }
# Greedy decoding: the steps before the first token that differs from dense.
same=$(tr ' ' '\n' <"$tmp/pred.ids" | grep . >"$tmp/p"; tr ' ' '\n' <"$tmp/dense.ids" | grep . >"$tmp/d";
	paste "$tmp/p" "$tmp/d" | awk '$1 != $2 { print NR - 1; f = 1; exit } END { if (!f) print NR }')
echo "greedy: predictor follows dense for $same of 256 steps"
[ "$same" -ge 16 ] || fail "predictor mode left dense after $same steps"

# Refusals: a SwiGLU model, no -o, bad ranks.
swiglu="$tmp/silu.gguf"
run "$bin" synth --dim 64 --ff 128 --layers 1 --heads 2 -o "$swiglu"
refuse 1 "predictors are for ReLU-family models" "$bin" fit-predictor -m "$swiglu" -f "$text" --lines 2 \
	--rank 8 -o "$tmp/x.gguf"
refuse 2 "no output file given" "$bin" fit-predictor -m "$model" -f "$text" --rank 8
refuse 2 "--rank is the number of hidden units" "$bin" fit-predictor -m "$model" -f "$text" --rank 0 -o "$tmp/x.gguf"
refuse 2 "--rank is the number of hidden units" "$bin" fit-predictor -m "$model" -f "$text" --rank abc -o "$tmp/x.gguf"
refuse 2 "at most n_ff" "$bin" fit-predictor -m "$model" -f "$text" --lines 2 --rank 100000 -o "$tmp/x.gguf"
refuse 2 "overlap the training lines" "$bin" fit-predictor -m "$model" -f "$text" --lines 10 --eval-skip-lines 5 \
	--rank 8 -o "$tmp/x.gguf"
[ ! -e "$tmp/x.gguf" ] || fail "a refused run wrote its output"
echo "test_fit_predictor: ok"
