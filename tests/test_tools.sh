#!/bin/sh
# pinfer-model end to end through its command line: synth a model, inspect
# and run it; quantize stories260K and check it still tells the same story.
me=test_tools
# shellcheck source=tests/tools_lib.sh
. "$(dirname "$0")/tools_lib.sh"
stories="$SHARED/models/stories260K/stories260K.gguf"

# synth: the default vocabulary comes from $SHARED.
run "$bin" synth --shape tiny --type q4_0 --seed 7 -o "$tmp/tiny.gguf"
expect "$tmp/err" "wrote $tmp/tiny.gguf"
run "$bin" info "$tmp/tiny.gguf"
expect "$tmp/out" "name: pinfer-synth tiny q4_0"
expect "$tmp/out" "n_embd 128, n_ff 352, n_layer 2, n_head 4, n_head_kv 2, head_dim 32"
expect "$tmp/out" "vocab: 32000 tokens"
expect "$tmp/out" "tensor types: f32 x5"
expect "$tmp/out" "q4_0 x16"

# Greedy generation from a random model: 8 valid ids, the same every time.
run "$bin" run -m "$tmp/tiny.gguf" -n 8 --temp 0 --ids
ids=$(cat "$tmp/out")
n=0
for id in $ids; do
	case $id in
	*[!0-9]*) fail "run printed '$id', expected token ids" ;;
	esac
	[ "$id" -lt 32000 ] || fail "run printed token id $id, outside the 32000-token vocabulary"
	n=$((n + 1))
done
[ "$n" -eq 8 ] || fail "run printed $n ids, expected 8: $ids"
run "$bin" run -m "$tmp/tiny.gguf" -n 8 --temp 0 --ids
[ "$(cat "$tmp/out")" = "$ids" ] || fail "greedy run is not repeatable: '$ids' then '$(cat "$tmp/out")'"

# quantize: stories260K's ffn_down rows (172) do not fit Q8_0 blocks and
# stay F32; greedy text is unchanged by Q8_0.
run "$bin" quantize "$stories" "$tmp/stories-q8_0.gguf" q8_0
expect "$tmp/err" "quantized 32 matrices to q8_0; 5 kept their type"
expect "$tmp/err" "kept as f32"
run "$bin" info "$tmp/stories-q8_0.gguf"
expect "$tmp/out" "tensor types: f32 x16"
expect "$tmp/out" "q8_0 x32"
run "$bin" run -m "$stories" -n 24 --temp 0
want=$(cat "$tmp/out")
run "$bin" run -m "$tmp/stories-q8_0.gguf" -n 24 --temp 0
got=$(cat "$tmp/out")
[ "$got" = "$want" ] || fail "q8_0 stories260K says '$got', f32 says '$want'"
case $want in
"Once upon a time"*) ;;
*) fail "stories260K greedy text '$want' does not start with 'Once upon a time'" ;;
esac

# Clean failures: usage errors exit 2, bad input 1, each with a message.
"$bin" quantize "$stories" "$tmp/x.gguf" q9_9 >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] || fail "quantize to type q9_9 should exit 2"
expect "$tmp/err" "unknown type 'q9_9'"
"$bin" quantize "$tmp/missing.gguf" "$tmp/x.gguf" q8_0 >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] || fail "quantize of a missing file should exit 1"
expect "$tmp/err" "$tmp/missing.gguf"
[ ! -e "$tmp/x.gguf" ] || fail "a failed quantize left $tmp/x.gguf behind"
"$bin" synth --shape nope -o "$tmp/x.gguf" >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] || fail "synth of an unknown shape should exit 2"
expect "$tmp/err" "unknown shape 'nope'"

echo "test_tools: OK"
