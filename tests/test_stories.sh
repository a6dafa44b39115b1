#!/bin/sh
# End-to-end checks of pinfer-model on stories260K against llama2.c's
# reference outputs: greedy text and ids from the shipped GGUF and from our
# own conversion of the llama2.c checkpoint, and the reference perplexity.
set -eu
tool="$BUILD/pinfer-model"
ref="$SHARED/models/stories260K"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

grep -v '^#' "$ref/ref/greedy_n200.tokens" | head -n 1 | tr -s ' \n' ' ' | sed 's/ *$//' >"$tmp/want.ids"

for model in "$ref/stories260K.gguf" "$tmp/converted.gguf"; do
	if [ "$model" = "$tmp/converted.gguf" ]; then
		"$tool" convert "$ref/stories260K.bin" "$ref/tok512.bin" -o "$model" >/dev/null ||
			fail "convert failed"
	fi
	"$tool" run -m "$model" -n 200 --temp 0 --ids 2>/dev/null | tr -s ' \n' ' ' | sed 's/ *$//' >"$tmp/got.ids"
	cmp -s "$tmp/want.ids" "$tmp/got.ids" || fail "$model: greedy ids differ from llama2.c"
	"$tool" run -m "$model" -n 200 --temp 0 -t 2 2>/dev/null >"$tmp/got.txt"
	cmp -s "$ref/ref/greedy_n200.stdout" "$tmp/got.txt" || fail "$model: greedy text differs from llama2.c"
	echo "ok: $model reproduces llama2.c's 200 greedy tokens and text"
done

ppl=$("$tool" perplexity -m "$ref/stories260K.gguf" -f "$SHARED/text/tinystories_val_head.txt" --lines 100 2>/dev/null |
	sed -n 's/^ppl //p')
[ -n "$ppl" ] || fail "perplexity printed nothing"
awk -v p="$ppl" 'BEGIN { d = (p - 4.1857) / 4.1857; if (d < 0) d = -d; exit !(d < 0.001) }' ||
	fail "perplexity $ppl is not within 0.1% of 4.1857"
echo "ok: perplexity $ppl (reference 4.1857)"

# A seeded sample is reproducible and differs from the greedy text.
a=$("$tool" run -m "$ref/stories260K.gguf" -n 50 --temp 1 --top-p 0.9 -s 7 2>/dev/null)
b=$("$tool" run -m "$ref/stories260K.gguf" -n 50 --temp 1 --top-p 0.9 -s 7 2>/dev/null)
[ "$a" = "$b" ] || fail "same seed gave different samples"
echo "ok: seeded sampling is reproducible"

# Bad input gets a clear error and a non-zero exit, not a crash.
printf 'GGUF\003\000\000\000garbage' >"$tmp/bad.gguf"
if "$tool" run -m "$tmp/bad.gguf" -n 1 2>"$tmp/err"; then
	fail "a malformed model was accepted"
fi
grep -q "bad.gguf" "$tmp/err" || fail "the error does not name the file: $(cat "$tmp/err")"
echo "ok: malformed model refused: $(cat "$tmp/err")"
