#!/bin/sh
# pinfer, the client, end to end against a real pinferd on a temporary
# socket: greedy output matches llama2.c's reference token for token and
# byte for byte, every command answers sanely, --json parses, and the exit
# codes are the documented ones. Ctrl-C is tested on a synthesized model
# slow enough to interrupt. pinferd must exit 0 on SIGTERM at the end.
set -u
: "${SHARED:?SHARED must name the shared data directory}"
: "${BUILD:?BUILD must name the build directory}"
pinfer="$BUILD/pinfer"
pinferd="$BUILD/pinferd"
ref="$SHARED/models/stories260K/ref"

fail() {
	echo "test_client: FAIL: $*" >&2
	exit 1
}

for bin in "$pinfer" "$pinferd" "$BUILD/pinfer-model"; do
	[ -x "$bin" ] || fail "$bin not found (build it first)"
done
command -v python3 >/dev/null || fail "python3 is needed to validate --json output"
tmp=$(mktemp -d /tmp/pinfer-client-XXXXXX) || fail "cannot create a temporary directory"
sock="$tmp/pinferd.sock"
daemon=

# Stops pinferd with SIGTERM and fails unless it exits 0.
stop_daemon() {
	[ -n "$daemon" ] || return 0
	kill -TERM "$daemon" 2>/dev/null
	wait "$daemon"
	dstatus=$?
	daemon=
	if [ "$dstatus" -ne 0 ]; then
		sed 's/^/    pinferd: /' "$tmp/pinferd.log" >&2
		echo "test_client: FAIL: pinferd exited with status $dstatus on SIGTERM" >&2
		return 1
	fi
}

cleanup() {
	status=$?
	stop_daemon || status=1
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

mkdir "$tmp/models"
ln -s "$SHARED/models/stories260K/stories260K.gguf" "$tmp/models/stories260K.gguf"
# A random model big enough that a generation lasts seconds, to interrupt.
"$BUILD/pinfer-model" synth --dim 768 --ff 2048 --layers 8 --heads 12 --type q4_0 \
	-o "$tmp/models/slow.gguf" >"$tmp/synth.log" 2>&1 ||
	{ cat "$tmp/synth.log" >&2; fail "pinfer-model synth failed"; }

"$pinferd" --socket "$sock" --models "$tmp/models" --slots 4 --ctx-size 1024 \
	>"$tmp/pinferd.log" 2>&1 &
daemon=$!
tries=0
while [ ! -S "$sock" ]; do
	kill -0 "$daemon" 2>/dev/null || { cat "$tmp/pinferd.log" >&2; daemon=; fail "pinferd exited"; }
	tries=$((tries + 1))
	[ "$tries" -le 100 ] || fail "no socket at $sock after 10 s"
	sleep 0.1
done

# p ARGS...: runs pinfer on the test socket; stdout in $tmp/out, stderr in
# $tmp/err, the exit status in $rc. Not in a pipeline: that would be a
# subshell, and $rc would be lost.
p() {
	"$pinfer" --socket "$sock" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
}

# ok ARGS...: p, and fail unless it exits 0.
ok() {
	p "$@" </dev/null
	[ "$rc" -eq 0 ] && return 0
	cat "$tmp/out" "$tmp/err" >&2
	fail "exit status $rc from: pinfer $*"
}

expect() {  # FILE TEXT: FILE contains TEXT
	grep -qF -- "$2" "$1" || { cat "$1" >&2; fail "expected '$2' in the output above"; }
}

expect_rc() {  # CODE: the last p exited with CODE
	[ "$rc" -eq "$1" ] || { cat "$tmp/out" "$tmp/err" >&2; fail "exit status $rc, expected $1"; }
}

# json_lines FILE: every line of FILE is one JSON object.
json_lines() {
	python3 -c '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines, "no output"
for l in lines:
    assert isinstance(json.loads(l), dict), l
' "$1" || { cat "$1" >&2; fail "not one JSON object per line (above)"; }
}

# Greedy ids from BOS match llama2.c's: the first line after the comments.
ok run stories260K "" -n 200 --temp 0 --ids
want=$(grep -v '^#' "$ref/greedy_n200.tokens" | head -n 1)
set -- $want
[ "$#" -eq 200 ] || fail "reference has $# ids, expected 200"
[ "$(cat "$tmp/out")" = "$*" ] || fail "--ids output differs from the reference: $(cat "$tmp/out")"
[ "$(wc -l <"$tmp/out")" -eq 1 ] || fail "--ids output is not one line"

# The text, byte for byte: run ends its output with one newline, as
# llama2.c's run does. No prompt and an empty stdin: the empty prompt.
ok run stories260K --temp 0 -n 200
cmp -s "$tmp/out" "$ref/greedy_n200.stdout" || {
	diff "$tmp/out" "$ref/greedy_n200.stdout" >&2
	fail "run's text differs from $ref/greedy_n200.stdout"
}

# --json: the exact text (no newline added) and the Done statistics.
ok --json run stories260K --temp 0 -n 200
json_lines "$tmp/out"
python3 -c '
import json, sys
o = json.load(open(sys.argv[1]))
want = open(sys.argv[2]).read()
assert o["text"] + "\n" == want, "text differs from the reference"
assert o["reason"] == "length" and o["generated_tokens"] == 200, o
assert o["prompt_tokens"] == 1 and o["stop"] is None, o
' "$tmp/out" "$ref/greedy_n200.stdout" || fail "run --json: $(cat "$tmp/out")"

# The prompt from stdin, less echo's newline, is the prompt from argv.
ok run stories260K "Once upon a time" -n 30 --temp 0
cp "$tmp/out" "$tmp/argv.out"
echo "Once upon a time" >"$tmp/in"
p run stories260K -n 30 --temp 0 <"$tmp/in"
expect_rc 0
cmp -s "$tmp/out" "$tmp/argv.out" || fail "prompt from stdin: '$(cat "$tmp/out")', from argv: '$(cat "$tmp/argv.out")'"
ok run stories260K Once upon a time -n 30 --temp 0
cmp -s "$tmp/out" "$tmp/argv.out" || fail "prompt words joined: '$(cat "$tmp/out")'"

# -v: the statistics on stderr; stdout keeps only the text.
ok run stories260K "" -n 10 --temp 0 -v
expect "$tmp/err" "generated: 10 tokens"
expect "$tmp/err" "ended:     length"
[ "$(wc -l <"$tmp/out")" -eq 1 ] || fail "-v changed stdout: $(cat "$tmp/out")"

# --stop cuts the text before the stop string.
ok run stories260K "" -n 200 --temp 0 --stop Lily
[ "$(cat "$tmp/out")" = "Once upon a time, there was a little girl named " ] ||
	fail "--stop Lily: '$(cat "$tmp/out")'"
ok --json run stories260K "" -n 200 --temp 0 --stop Lily --stop "never there"
python3 -c '
import json, sys
o = json.load(open(sys.argv[1]))
assert o["reason"] == "stop" and o["stop"] == "Lily", o
assert o["text"] == "Once upon a time, there was a little girl named ", o
' "$tmp/out" || fail "run --json --stop: $(cat "$tmp/out")"

# Seeded sampling is repeatable.
ok run stories260K "" -n 40 --temp 1 --top-p 0.9 -s 42
cp "$tmp/out" "$tmp/seed.out"
ok run stories260K "" -n 40 --temp 1 --top-p 0.9 -s 42
cmp -s "$tmp/out" "$tmp/seed.out" || fail "-s 42 twice gave different text"

# tokenize: ids, pieces with -v, JSON.
ok tokenize stories260K "Once upon a time"
[ "$(cat "$tmp/out")" = "1 403 407 261 378" ] || fail "tokenize: $(cat "$tmp/out")"
ok tokenize --no-bos stories260K "Once upon a time"
[ "$(cat "$tmp/out")" = "403 407 261 378" ] || fail "tokenize --no-bos: $(cat "$tmp/out")"
ok tokenize -v stories260K "Once upon"
expect "$tmp/out" '403  " Once"'
ok --json -v tokenize stories260K 'say "hi"\'
json_lines "$tmp/out"
expect "$tmp/out" '"pieces":['

# list, ps, status, ping: text and JSON.
ok list
expect "$tmp/out" "NAME"
grep -Eq '^stories260K +1\.1 MiB +yes$' "$tmp/out" || { cat "$tmp/out" >&2; fail "list: stories260K not shown as loaded"; }
grep -Eq '^slow +[0-9.]+ MiB +no$' "$tmp/out" || { cat "$tmp/out" >&2; fail "list: slow not shown as not loaded"; }
ok ps
grep -Eq '^stories260K +[0-9.]+ MiB +0/4 +dense +[0-9]+\.[0-9] +in [45]m [0-9]+s$' "$tmp/out" ||
	{ cat "$tmp/out" >&2; fail "ps: stories260K's line is wrong"; }
grep -q '^slow' "$tmp/out" && fail "ps lists a model that is not loaded"
ok status
expect "$tmp/out" "pinferd "
expect "$tmp/out" "socket:       $sock"
expect "$tmp/out" "models:       1 loaded"
expect "$tmp/out" "model stories260K: sparsity dense"
ok ping
expect "$tmp/out" "pong from pinferd"
for cmd in list ps status ping; do
	ok --json "$cmd"
	json_lines "$tmp/out"
done
[ "$(wc -l <"$tmp/out")" -eq 1 ] || fail "ping --json printed more than one line"
ok list --json
[ "$(wc -l <"$tmp/out")" -eq 2 ] || fail "list --json: expected one line per model"

# load and unload.
ok unload stories260K
expect "$tmp/out" "stories260K unloaded"
ok unload stories260K
expect "$tmp/out" "stories260K was not loaded"
ok ps --json
[ -s "$tmp/out" ] && fail "ps --json after unload: $(cat "$tmp/out")"
ok load stories260K --keep-alive -1
expect "$tmp/out" "stories260K loaded"
ok ps
grep -Eq '^stories260K .* forever$' "$tmp/out" || { cat "$tmp/out" >&2; fail "ps after load --keep-alive -1"; }
ok --json unload stories260K
json_lines "$tmp/out"
expect "$tmp/out" '"was_loaded":true'
# A sparsity mode the SwiGLU model cannot run fails the load and says why;
# a bad name is a bad request.
p load stories260K --sparsity gate
expect_rc 1
expect "$tmp/err" "ReLU"
p load stories260K --sparsity sparse
expect_rc 1
expect "$tmp/err" "(bad request)"
ok --json load stories260K --sparsity dense
expect "$tmp/out" '"sparsity":"dense"'
p load stories260K --sparsity threshold
expect_rc 1
expect "$tmp/err" "(busy)"
ok unload stories260K

# chat: two turns through a template, history kept; /exit ends it.
printf 'Hello\nTell me more\n/exit\nnever sent\n' >"$tmp/in"
p chat stories260K --template chatml -n 8 --temp 0 -v <"$tmp/in"
expect_rc 0
[ "$(grep -c '^ended:' "$tmp/err")" -eq 2 ] || { cat "$tmp/err" >&2; fail "chat: expected two replies"; }
printf 'Hello\n' >"$tmp/in"
p chat stories260K -n 8 <"$tmp/in"
expect_rc 1
expect "$tmp/err" "(bad request)"

# Failures and their exit codes.
p run nosuch "hello"
expect_rc 1
expect "$tmp/err" "not found"
p run stories260K "" -n 10 --keep-alive soon
expect_rc 2
p frobnicate
expect_rc 2
p run
expect_rc 2
"$pinfer" --socket "$tmp/nothing.sock" ping >"$tmp/out" 2>"$tmp/err"
rc=$?
expect_rc 3
expect "$tmp/err" "pinfer: cannot connect to $tmp/nothing.sock: No such file or directory"
expect "$tmp/err" "is pinferd running?"
PINFER_SOCKET="$sock" "$pinfer" ping >"$tmp/out" 2>&1 || fail "PINFER_SOCKET is not used: $(cat "$tmp/out")"

# Ctrl-C: Cancel, the Done{cancelled}, exit 130; the daemon carries on.
# A file of its own: the background job creates it, and a file left by an
# earlier command would read as output before the client even runs.
"$pinfer" --socket "$sock" run slow "Hello" -n 1000 -v >"$tmp/slow.out" 2>"$tmp/err" </dev/null &
client=$!
tries=0
while [ ! -s "$tmp/slow.out" ]; do
	tries=$((tries + 1))
	[ "$tries" -le 300 ] || { kill -TERM "$client"; fail "slow model: no output in 30 s"; }
	sleep 0.1
done
kill -INT "$client"
wait "$client"
rc=$?
expect_rc 130
expect "$tmp/err" "ended:     cancelled"
ok ping

stop_daemon || exit 1
echo "test_client: ok"
