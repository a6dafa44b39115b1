#!/bin/sh
# Threshold-mode sparsity tools on stories260K (docs/sparsity.md): calibrate
# thresholds on text disjoint from the evaluation lines, check the
# perplexity they give against dense, profile neuron activity and read the
# profile back, and refuse bad calibration files and bad options.
me=test_sparsity_tools
# shellcheck source=tests/tools_lib.sh
. "$(dirname "$0")/tools_lib.sh"
stories="$SHARED/models/stories260K/stories260K.gguf"
text="$SHARED/text/tinystories_val_head.txt"
command -v python3 >/dev/null || fail "python3 is needed to read the GGUF files"

# A GGUF v3 reader and writer small enough to trust: `gguf.py dump FILE`
# prints every key (arrays as their elements) and every tensor's name,
# type, shape and elements; `gguf.py write FILE ARCH N` writes a
# calibration file with N thresholds for architecture ARCH.
cat >"$tmp/gguf.py" <<'PY'
import struct, sys

def read(path):
    b = open(path, 'rb').read()
    pos = 0
    def take(fmt):
        nonlocal pos
        v = struct.unpack_from('<' + fmt, b, pos)
        pos += struct.calcsize('<' + fmt)
        return v[0]
    def string():
        nonlocal pos
        n = take('Q')
        s = b[pos:pos + n].decode()
        pos += n
        return s
    scalar = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}
    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take('I'), take('Q')
            return [value(et) for _ in range(n)]
        return take(scalar[t])
    assert b[:4] == b'GGUF', 'bad magic'
    pos = 4
    assert take('I') == 3, 'not GGUF v3'
    n_tensors, n_kv = take('Q'), take('Q')
    kv = {}
    for _ in range(n_kv):
        k = string()
        kv[k] = value(take('I'))
    infos = []
    for _ in range(n_tensors):
        name = string()
        ne = [take('Q') for _ in range(take('I'))]
        infos.append((name, ne, take('I'), take('Q')))
    align = kv.get('general.alignment', 32)
    data = (pos + align - 1) // align * align
    tensors = {}
    for name, ne, t, off in infos:
        n = 1
        for d in ne:
            n *= d
        fmt = {0: 'f', 26: 'i'}[t]
        tensors[name] = (t, ne, list(struct.unpack_from('<%d%s' % (n, fmt), b, data + off)))
    return kv, tensors

def write(path, arch, n):
    def s(x):
        x = x.encode()
        return struct.pack('<Q', len(x)) + x
    out = b'GGUF' + struct.pack('<IQQ', 3, 0, 2)
    out += s('general.architecture') + struct.pack('<I', 8) + s(arch)
    out += s('pinfer.sparsity.thresholds') + struct.pack('<IIQ', 9, 6, n) + struct.pack('<%df' % n, *([0.1] * n))
    open(path, 'wb').write(out)

if sys.argv[1] == 'write':
    write(sys.argv[2], sys.argv[3], int(sys.argv[4]))
else:
    kv, tensors = read(sys.argv[2])
    for k, v in kv.items():
        print('kv', k, *(v if isinstance(v, list) else [v]))
    for name, (t, ne, vals) in tensors.items():
        print('tensor', name, t, 'x'.join(map(str, ne)), *vals)
PY
gguf() { python3 "$tmp/gguf.py" "$@"; }

# Dense reference on the first 100 lines: nothing is skipped.
run "$bin" perplexity -m "$stories" -f "$text" --lines 100
dense=$(sed -n 's/^ppl //p' "$tmp/out")
expect "$tmp/out" "ffn_sparsity 0.000000"
lines=$(sed -n 's/^lines=\([0-9]*\) .*/\1/p' "$tmp/err")
predicted=$(sed -n 's/.*predicted_tokens=\([0-9]*\) .*/\1/p' "$tmp/err")
[ "$lines" = 100 ] || fail "perplexity read '$lines' lines, expected 100"

# Calibrate on lines 101..400, evaluate on 1..100.
for s in 10 30 70; do
	run "$bin" calibrate -m "$stories" -f "$text" --skip-lines 100 --lines 300 --sparsity 0.$s -o "$tmp/c$s.gguf"
	expect "$tmp/out" "300 lines"
	expect "$tmp/out" "target sparsity $(awk -v s="$s" 'BEGIN { print s / 100 }') (quantile)"
	expect "$tmp/err" "wrote $tmp/c$s.gguf"
	gguf dump "$tmp/c$s.gguf" >"$tmp/c$s.txt" || fail "cannot read $tmp/c$s.gguf"
	expect "$tmp/c$s.txt" "kv general.architecture llama"
	awk -v s="$s" '
		$2 == "pinfer.sparsity.target" { t = $3 }
		$2 == "pinfer.sparsity.thresholds" { n = NF - 2; for (i = 3; i <= NF; i++) if (!($i > 0)) bad = 1 }
		END { exit !(n == 5 && !bad && t > s / 100 - 1e-6 && t < s / 100 + 1e-6) }' "$tmp/c$s.txt" ||
		{ cat "$tmp/c$s.txt" >&2; fail "c$s.gguf should hold target 0.$s and 5 positive thresholds"; }
	# The printed thresholds are the file's.
	awk 'NR == FNR { if ($2 == "pinfer.sparsity.thresholds") for (i = 3; i <= NF; i++) t[i - 3] = $i; next }
	     $1 ~ /^[0-4]$/ { d = $2 - t[$1]; if (d < 0) d = -d; if (d > 1e-5 * t[$1]) bad = 1; n++ }
	     END { exit !(n == 5 && !bad) }' "$tmp/c$s.txt" "$tmp/out" ||
		{ cat "$tmp/out" "$tmp/c$s.txt" >&2; fail "calibrate printed other thresholds than it wrote"; }

	run "$bin" perplexity -m "$stories" -f "$text" --lines 100 --sparsity threshold --calibration "$tmp/c$s.gguf"
	eval "ppl$s=\$(sed -n 's/^ppl //p' \"\$tmp/out\")"
	measured=$(sed -n 's/^ffn_sparsity //p' "$tmp/out")
	# Disjoint text, so only close to the target.
	awk -v m="$measured" -v s="$s" 'BEGIN { d = m - s / 100; if (d < 0) d = -d; exit !(d < 0.02) }' ||
		fail "thresholds for $s% sparsity skip $measured of the neurons of the evaluation text"
	echo "ok: target $s%: measured sparsity $measured, ppl $(eval echo \$ppl$s) (dense $dense)"
done
# shellcheck disable=SC2154
awk -v d="$dense" -v a="$ppl10" -v b="$ppl30" -v c="$ppl70" 'BEGIN { exit !(d <= a && a <= b && b <= c) }' ||
	fail "perplexity should grow with sparsity: dense $dense, 10% $ppl10, 30% $ppl30, 70% $ppl70"
awk -v d="$dense" -v p="$ppl30" 'BEGIN { exit !(p <= 1.07 * d) }' ||
	fail "30% sparsity gives perplexity $ppl30, more than 7% above dense $dense"
awk -v d="$dense" -v p="$ppl70" 'BEGIN { exit !(p >= 1.5 * d) }' ||
	fail "70% sparsity gives perplexity $ppl70, expected clearly worse than dense $dense"

# Equal-error calibration: every layer drops the same share of its
# activation energy, the mean sparsity still the target; on stories260K it
# beats equal per-layer sparsity.
run "$bin" calibrate -m "$stories" -f "$text" --skip-lines 100 --lines 300 --sparsity 0.3 --method energy -o "$tmp/e30.gguf"
expect "$tmp/out" "target sparsity 0.3 (energy)"
run "$bin" perplexity -m "$stories" -f "$text" --lines 100 --sparsity threshold --calibration "$tmp/e30.gguf"
ppl=$(sed -n 's/^ppl //p' "$tmp/out")
measured=$(sed -n 's/^ffn_sparsity //p' "$tmp/out")
awk -v m="$measured" -v p="$ppl" -v q="$ppl30" 'BEGIN { d = m - 0.3; if (d < 0) d = -d; exit !(d < 0.02 && p <= q) }' ||
	fail "energy calibration for 30%: sparsity $measured, ppl $ppl (quantile: $ppl30)"
echo "ok: energy method at 30%: measured sparsity $measured, ppl $ppl"

# Profile the same 100 lines in threshold mode: every token of every line
# (BOS included) is counted once, no neuron more often than there are
# tokens, and the printed sparsities are the file's.
run "$bin" profile -m "$stories" -f "$text" --lines 100 -o "$tmp/prof.gguf" --sparsity threshold --calibration "$tmp/c30.gguf"
cp "$tmp/out" "$tmp/prof.out"
tokens=$((predicted + lines))
expect "$tmp/prof.out" "threshold mode, 100 lines, $tokens tokens, 5 layers x 172 neurons"
gguf dump "$tmp/prof.gguf" >"$tmp/prof.txt" || fail "cannot read $tmp/prof.gguf"
expect "$tmp/prof.txt" "kv general.architecture llama"
expect "$tmp/prof.txt" "kv pinfer.profile.tokens $tokens"
expect "$tmp/prof.txt" "kv pinfer.profile.model "
expect "$tmp/prof.txt" "kv pinfer.profile.sparsity threshold"
awk -v T="$tokens" '
	NR == FNR {
		if ($1 != "tensor") next
		split($2, p, "."); l = p[2]
		if ($2 != "blk." l ".ffn_act_count" || $3 != 26 || $4 != 172 || NF != 176) { print "bad tensor " $1 " " $2 " " $3 " " $4; bad = 1 }
		for (i = 5; i <= NF; i++) { if ($i < 0 || $i > T) { print "count " $i " of " $2; bad = 1 } sum[l] += $i; all += $i }
		n++
		next
	}
	$1 ~ /^[0-4]$/ || $1 == "total" {
		want = $1 == "total" ? 100 * (1 - all / (T * 172 * 5)) : 100 * (1 - sum[$1] / (T * 172))
		got = $2; sub(/%/, "", got)
		d = got - want; if (d < 0) d = -d
		if (d > 0.001) { print "layer " $1 " printed " got "%, the file gives " want "%"; bad = 1 }
		rows++
	}
	END { exit !(n == 5 && rows == 6 && !bad) }' "$tmp/prof.txt" "$tmp/prof.out" ||
	{ cat "$tmp/prof.out" >&2; fail "the profile file and the printed table disagree"; }
# The same tokens were evaluated by the threshold perplexity run.
run "$bin" perplexity -m "$stories" -f "$text" --lines 100 --sparsity threshold --calibration "$tmp/c30.gguf"
measured=$(sed -n 's/^ffn_sparsity //p' "$tmp/out")
awk -v m="$measured" '$1 == "total" { got = $2; sub(/%/, "", got); d = got - 100 * m; if (d < 0) d = -d; ok = d < 0.001 }
	END { exit !ok }' "$tmp/prof.out" || fail "profile's total sparsity differs from perplexity's $measured"
echo "ok: profile of $tokens tokens matches its file and perplexity's sparsity $measured"

# Dense SwiGLU: every neuron fires, and the output says why.
run "$bin" profile -m "$stories" -f "$text" --lines 10 -o "$tmp/dense.gguf"
expect "$tmp/out" "SiLU is never exactly zero"
expect "$tmp/out" "--sparsity threshold --calibration FILE"

# Calibration files that do not fit the model are refused, naming why.
gguf write "$tmp/qwen.gguf" qwen2 5
refuse 1 "thresholds for architecture 'qwen2', the model is 'llama'" \
	"$bin" perplexity -m "$stories" -f "$text" --lines 1 --sparsity threshold --calibration "$tmp/qwen.gguf"
gguf write "$tmp/three.gguf" llama 3
refuse 1 "has 3 thresholds, the model has 5 layers" \
	"$bin" perplexity -m "$stories" -f "$text" --lines 1 --sparsity threshold --calibration "$tmp/three.gguf"
refuse 1 "threshold sparsity needs thresholds" \
	"$bin" profile -m "$stories" -f "$text" --lines 1 -o "$tmp/x.gguf" --sparsity threshold
refuse 1 "thresholds are for SwiGLU" \
	"$bin" calibrate -m "$stories" -f "$text" --lines 1 --sparsity 0.5 -o "$tmp/x.gguf" --act relu
[ ! -e "$tmp/x.gguf" ] || fail "a refused command wrote $tmp/x.gguf"

# Usage errors exit 2: --sparsity is calibrate's target, never a mode.
refuse 2 "no output file given (-o FILE)" "$bin" calibrate -m "$stories" -f "$text" --sparsity 0.5
refuse 2 "no output file given (-o PROFILE)" "$bin" profile -m "$stories" -f "$text"
refuse 2 "no target given" "$bin" calibrate -m "$stories" -f "$text" -o "$tmp/x.gguf"
for s in 0 1 1.5 -0.1 threshold; do
	refuse 2 "--sparsity is the target fraction of neurons to skip" \
		"$bin" calibrate -m "$stories" -f "$text" --sparsity "$s" -o "$tmp/x.gguf"
done
refuse 2 "unrecognized option '--calibration" \
	"$bin" calibrate -m "$stories" -f "$text" --sparsity 0.5 -o "$tmp/x.gguf" --calibration "$tmp/c30.gguf"
[ ! -e "$tmp/x.gguf" ] || fail "a usage error wrote $tmp/x.gguf"

echo "test_sparsity_tools: OK"
