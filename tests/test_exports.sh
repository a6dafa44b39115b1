#!/bin/sh
# libpinfer.so exports engine/pinfer.h and nothing else, and a program
# built against that header alone runs a model through it.
set -eu
lib="$BUILD/libpinfer.so"
extra=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^pinfer_' || true)
if [ -n "$extra" ]; then
	echo "FAIL: libpinfer.so exports symbols outside pinfer.h: $extra" >&2
	exit 1
fi
declared=$(grep -o 'pinfer_[a-z_]*(' engine/pinfer.h | tr -d '(' | sort -u)
exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | sort -u)
missing=$(echo "$declared" | grep -vxF "$exported" || true)
if [ -n "$missing" ]; then
	echo "FAIL: declared in pinfer.h but not exported: $missing" >&2
	exit 1
fi
echo "ok: $(echo "$exported" | wc -l) symbols exported, all from pinfer.h"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/user.c" <<'C'
#include <stdio.h>
#include "pinfer.h"
int main(int argc, char **argv)
{
	struct pinfer_model *m;
	struct pinfer_ctx *c;
	struct pf_err err;
	(void)argc;
	if (pinfer_model_open(&m, argv[1], NULL, &err) || pinfer_ctx_new(&c, m, NULL, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	int32_t tok = pinfer_token_bos(m);
	if (pinfer_eval(c, &tok, 1, &err))
		return 1;
	const float *l = pinfer_logits(c, -1);
	int best = 0;
	for (int i = 1; i < pinfer_model_info(m)->n_vocab; i++)
		if (l[i] > l[best])
			best = i;
	printf("%d\n", best);
	pinfer_ctx_free(c);
	pinfer_model_free(m);
	return 0;
}
C
# A sanitized library needs a sanitized program to load it.
case "$BUILD" in
*san*) san="-fsanitize=address,undefined" ;;
*) san= ;;
esac
cc -std=c11 -Wall -Werror $san -Iengine "$tmp/user.c" -o "$tmp/user" -L"$BUILD" -lpinfer -Wl,-rpath,"$PWD/$BUILD"
first=$("$tmp/user" "$SHARED/models/stories260K/stories260K.gguf")
[ "$first" = 403 ] || { echo "FAIL: first greedy token $first, expected 403" >&2; exit 1; }
echo "ok: a program linked to libpinfer.so alone generates the reference first token"
