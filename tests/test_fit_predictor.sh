#!/bin/sh
# pinfer-model fit-predictor (docs/sparsity.md "Fitting predictors"): fits
# predictors for a small synthetic ReLU model whose gates are low-rank plus
# noise (synth --predictor) with the default settings on lines 101-250 of
# the TinyStories text and 2048 tokens the model generates, checks the
# held-out recall on lines 1-100, that the written file runs in predictor
# mode, that greedy decoding gives dense's tokens for at least 95% of 256
# steps, and the refusals.
me=test_fit_predictor
# shellcheck source=tests/tools_lib.sh
. "$(dirname "$0")/tools_lib.sh"
export SHARED
text="$SHARED/text/tinystories_val_head.txt"

model="$tmp/relu.gguf"
run "$bin" synth --dim 256 --ff 768 --layers 3 --heads 4 --act relu --sparsity 0.9 --predictor 64 \
	--type f16 -o "$model"
run "$bin" fit-predictor -m "$model" -f "$text" --skip-lines 100 --lines 150 --eval-lines 100 \
	--eval-skip-lines 0 --rank 64 -o "$tmp/fit.gguf"
cat "$tmp/out"
# Every layer's held-out recall (field 8 of the table) >= 0.99.
awk '/^[0-9]+ / { n++; if ($8 + 0 < 0.99) bad = bad " layer " $1 ": " $8 }
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
# Greedy decoding, 256 steps: the positions where predictor mode gives
# dense's token (at least 95%: 244), and the first that differs.
tr ' ' '\n' <"$tmp/pred.ids" | grep . >"$tmp/p"
tr ' ' '\n' <"$tmp/dense.ids" | grep . >"$tmp/d"
[ "$(wc -l <"$tmp/d")" -eq 256 ] || fail "dense greedy decoding gave $(wc -l <"$tmp/d") tokens, not 256"
paste "$tmp/p" "$tmp/d" | awk '$1 == $2 { same++ } $1 != $2 && !f { first = NR - 1; f = 1 }
	END { if (!f) first = NR; print same + 0, first }' >"$tmp/greedy"
read -r same first <"$tmp/greedy"
echo "greedy: predictor mode gives dense's token at $same of 256 steps, first differs at step $first"
[ "$same" -ge 244 ] || fail "predictor mode matched dense at $same of 256 greedy steps (want >= 244)"

# Refusals: a SwiGLU model, no -o, bad ranks, a bad output share.
swiglu="$tmp/silu.gguf"
run "$bin" synth --dim 64 --ff 128 --layers 1 --heads 2 -o "$swiglu"
refuse 1 "predictors are for ReLU-family models" "$bin" fit-predictor -m "$swiglu" -f "$text" --lines 2 \
	--rank 8 -o "$tmp/x.gguf"
refuse 2 "no output file given" "$bin" fit-predictor -m "$model" -f "$text" --rank 8
refuse 2 "--rank is the number of hidden units" "$bin" fit-predictor -m "$model" -f "$text" --rank 0 -o "$tmp/x.gguf"
refuse 2 "--rank is the number of hidden units" "$bin" fit-predictor -m "$model" -f "$text" --rank abc -o "$tmp/x.gguf"
refuse 2 "at most n_ff" "$bin" fit-predictor -m "$model" -f "$text" --lines 2 --rank 100000 -o "$tmp/x.gguf"
refuse 2 "bad value '2' for --output-missed" "$bin" fit-predictor -m "$model" -f "$text" --rank 8 \
	--output-missed 2 -o "$tmp/x.gguf"
refuse 2 "overlap the training lines" "$bin" fit-predictor -m "$model" -f "$text" --lines 10 --eval-skip-lines 5 \
	--rank 8 -o "$tmp/x.gguf"
[ ! -e "$tmp/x.gguf" ] || fail "a refused run wrote its output"
echo "test_fit_predictor: ok"
