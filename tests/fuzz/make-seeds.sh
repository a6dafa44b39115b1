#!/bin/sh
# Writes the fuzz targets' seed corpora (tests/fuzz/corpus/TARGET/) from the
# tests' shared data and pinfer-model: small valid inputs of each kind, so
# that fuzzing starts from files, texts and requests that go deep. Run from
# the repository root after a build; the output is committed, and running
# it again gives the same files.
#   BUILD=build/rel SHARED=../shared tests/fuzz/make-seeds.sh
set -eu
: "${SHARED:?SHARED must name the shared data directory}"
: "${BUILD:?BUILD must name a build directory with pinfer-model}"
bin=$BUILD/pinfer-model
[ -x "$bin" ] || { echo "make-seeds: $bin not found (build it first)" >&2; exit 1; }
out=tests/fuzz/corpus
tmp=$(mktemp -d /tmp/pinfer-seeds-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
text=$SHARED/text/tinystories_val_head.txt
vocab=$SHARED/models/stories260K/stories260K.gguf
mkdir -p "$out/gguf" "$out/bundle" "$out/tokenizer" "$out/proto" "$out/config" "$out/dbus"

# Models: the smallest llama shapes with the 512-token vocabulary (a bundle
# file cannot be much smaller than ~92 KiB: each tensor starts a 4 KiB block).
synth() {
	name=$1
	shift
	"$bin" synth --dim 32 --ff 64 --layers 1 --heads 2 --vocab-from "$vocab" -t 1 "$@" -o "$tmp/$name.gguf" >/dev/null 2>&1 ||
		{ echo "make-seeds: synth $* failed" >&2; exit 1; }
}
synth q4_0-relu --type q4_0 --act relu --sparsity 0.9
synth q8_0 --type q8_0
synth q4_0-predictor --type q4_0 --act relu --sparsity 0.9 --predictor 4
for m in q4_0-relu q8_0 q4_0-predictor; do
	cp "$tmp/$m.gguf" "$out/gguf/$m.gguf"
done
"$bin" profile -m "$tmp/q4_0-relu.gguf" -f "$text" --lines 2 -o "$tmp/p.prof" >/dev/null 2>&1
"$bin" pack -m "$tmp/q4_0-relu.gguf" --profile "$tmp/p.prof" -o "$out/bundle/q4_0-relu.pack" >/dev/null 2>&1

# Tokenizer: the first byte picks the vocabulary (0 stories260K, 1 llama
# SPM, 2 gpt-2, 3 deepseek) and the mode (fuzz_tokenizer.c); texts from the
# tokenizer tests' cases, ids from their expected output.
python3 - "$SHARED" "$out/tokenizer" <<'PY'
import struct, sys
shared, out = sys.argv[1], sys.argv[2]
cases = open(shared + '/models/vocab/ggml-vocab-gpt-2.gguf.inp', 'rb').read().split(b'\n__ggml_vocab_test__\n')
cases = [c for c in cases if c][:24]
def put(name, data):
    open('%s/%s' % (out, name), 'wb').write(data)
for v in range(4):
    for i, c in enumerate(cases):
        put('enc-%d-%02d' % (v, i), bytes([v | 4]) + c)
specials = [b'<s>Once upon a time</s>', b'<|endoftext|>Hello<|endoftext|>', b'<\xef\xbd\x9cbegin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>Hi']
for v in range(4):
    for i, s in enumerate(specials):
        put('special-%d-%d' % (v, i), bytes([v | 12]) + s)
outs = {2: 'models/vocab/ggml-vocab-gpt-2.gguf.out', 3: 'models/vocab/ggml-vocab-deepseek-llm.gguf.out',
        1: 'models/vocab/ggml-vocab-llama-spm.gguf.out', 0: 'models/stories260K/ref/tok512.out'}
for v, path in outs.items():
    lines = [l for l in open(shared + '/' + path).read().split('\n') if l.strip()][:8]
    for i, l in enumerate(lines):
        # fuzz_tokenizer maps an id u to u % (n_vocab + 2) - 1
        put('dec-%d-%d' % (v, i), bytes([v | 16]) + b''.join(struct.pack('<I', int(x) + 1) for x in l.split()))
PY

# Protocol streams: length-prefixed ClientMessages (proto/pinfer.proto
# field numbers), a Hello first as a client sends it.
python3 - "$out/proto" <<'PY'
import struct, sys
out = sys.argv[1]
def varint(n):
    b = b''
    while True:
        if n < 0x80:
            return b + bytes([n])
        b += bytes([n & 0x7f | 0x80])
        n >>= 7
def f_int(num, n): return varint(num << 3) + varint(n & 0xffffffffffffffff)
def f_sint(num, n): return f_int(num, (n << 1) ^ (n >> 63))
def f_float(num, x): return varint(num << 3 | 5) + struct.pack('<f', x)
def f_bytes(num, b):
    if isinstance(b, str): b = b.encode()
    return varint(num << 3 | 2) + varint(len(b)) + b
def client(field, body): return f_bytes(field, body)
def frame(msg): return struct.pack('>I', len(msg)) + msg
hello = frame(client(1, f_int(1, 1) + f_int(2, 2) + f_bytes(3, 'pinfer 0.1.0')))
sampling = (f_float(1, 0.8) + f_int(2, 40) + f_float(3, 0.95) + f_float(4, 0.05) + f_float(5, 1.1) +
            f_int(6, 64) + f_float(7, 0.1) + f_float(8, 0.1) + f_int(9, 42))
gen_prompt = client(2, f_int(1, 1) + f_bytes(2, 'stories260K') + f_bytes(3, 'Once upon a time') +
                    f_bytes(7, sampling) + f_int(8, 32) + f_bytes(9, 'The end') + f_bytes(9, '\n\n') +
                    f_sint(10, 60000) + f_int(11, 1))
chat = f_bytes(1, f_bytes(1, 'system') + f_bytes(2, 'Be brief.')) + f_bytes(1, f_bytes(1, 'user') + f_bytes(2, 'Hi!'))
gen_chat = client(2, f_int(1, 2) + f_bytes(2, 'm') + f_bytes(4, chat) + f_bytes(6, 'chatml') + f_int(8, 8))
gen_raw = client(2, f_int(1, 3) + f_bytes(2, 'm') + f_bytes(3, '<s>[INST] x [/INST]') + f_int(5, 1))
tokenize = client(4, f_int(1, 4) + f_bytes(2, 'm') + f_bytes(3, 'Hello world') + f_int(4, 1) + f_int(5, 1) + f_int(6, 1))
detok = client(5, f_int(1, 5) + f_bytes(2, 'm') + f_bytes(3, b''.join(varint(i) for i in (1, 403, 407, 261))))
load = client(9, f_int(1, 6) + f_bytes(2, 'm') + f_sint(3, -1) + f_bytes(4, 'predictor') + f_bytes(5, '50%ffn'))
load2 = client(9, f_int(1, 7) + f_bytes(2, 'm') + f_bytes(5, '1500M'))
others = (frame(client(3, f_int(1, 1))) + frame(client(6, f_int(1, 8) + f_int(2, 1))) + frame(client(7, f_int(1, 9))) +
          frame(client(8, f_int(1, 10))) + frame(client(10, f_int(1, 11) + f_bytes(2, 'm'))))
seeds = {
    'generate': hello + frame(gen_prompt),
    'chat': hello + frame(gen_chat) + frame(gen_raw),
    'tokenize': hello + frame(tokenize) + frame(detok),
    'load': hello + frame(load) + frame(load2),
    'others': hello + others,
    'empty-frames': hello + frame(b'') + frame(b''),
    'too-large': hello + struct.pack('>I', 1 << 30) + b'x' * 16,
    'truncated': hello + frame(gen_prompt)[:-5],
}
for name, data in seeds.items():
    open('%s/%s' % (out, name), 'wb').write(data)
PY

# Config files: every setting, and the shipped example.
cp docs/pinferd.conf.example "$out/config/example.conf"
cat >"$out/config/all.conf" <<'CONF'
# every key pinferd --help lists
socket = /run/pinferd.sock
models = /var/lib/pinfer/models
memory-budget = 6G
keep-alive = 10m
max-loaded = 2
slots = 4
queue = 16
ctx-size = 2048
batch = 128
threads = 0
max-connections = 64
max-requests = 16
max-prompt-tokens = 8192
max-predict = 4096
max-frame = 1M
handshake-timeout = 5s
idle-timeout = 600
max-queued-output = 4096K
shutdown-grace = 250ms
log-level = debug
sparsity = threshold
offload-budget = 30%ffn
bus = session
CONF
printf 'keep-alive = -1\noffload-budget = min\nmemory-budget = 1073741824\nsparsity = auto\nbus = none\n' >"$out/config/forever.conf"
printf 'slots = 0\n' >"$out/config/bad-value.conf"

# D-Bus LoadModel arguments, in fuzz_dbus.c's line format.
printf 'stories260K\nxkeep-alive-ms=60000\ntmax-memory=1073741824\nssparsity=gate\nsmemory-budget=min\n' >"$out/dbus/all"
printf 'm\nsmemory-budget=1500M\nssparsity=predictor\n' >"$out/dbus/budget"
printf 'm\nskeep-alive-ms=10\n' >"$out/dbus/wrong-type"
printf '../m\n' >"$out/dbus/bad-name"
printf '!m\n' >"$out/dbus/name-only"
echo "make-seeds: $(find "$out" -type f | wc -l) seeds, $(du -sk --apparent-size "$out" | cut -f1) KiB in $out"
