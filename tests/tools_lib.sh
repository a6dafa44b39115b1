# shellcheck shell=sh disable=SC2034,SC2154
# What the pinfer-model command-line tests share: $bin, a temporary
# directory $tmp removed on exit, and helpers. Sourced, not a test (make
# check runs tests/test_*.sh only). The sourcing test sets $me, its name
# for messages. (Hence SC2034 and SC2154 off: variables pass both ways.)
set -u
: "${SHARED:?SHARED must name the shared data directory}"
: "${BUILD:?BUILD must name the build directory}"
bin="$BUILD/pinfer-model"

fail() {
	echo "$me: FAIL: $*" >&2
	exit 1
}

[ -x "$bin" ] || fail "$bin not found (build it first)"
tmp=$(mktemp -d "/tmp/pinfer-$me-XXXXXX") || fail "cannot create a temporary directory"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

# Runs a command, keeping its output in $tmp/out and $tmp/err; fails with
# both shown when it exits non-zero.
run() {
	"$@" >"$tmp/out" 2>"$tmp/err" && return 0
	status=$?
	cat "$tmp/out" "$tmp/err" >&2
	fail "exit status $status from: $*"
}

expect() {  # FILE TEXT: FILE contains TEXT
	grep -qF -- "$2" "$1" || { cat "$1" >&2; fail "expected '$2' in the output above"; }
}

# CODE TEXT COMMAND...: exits with CODE and says TEXT on stderr.
refuse() {
	code=$1 msg=$2
	shift 2
	"$@" >"$tmp/out" 2>"$tmp/err"
	status=$?
	[ "$status" -eq "$code" ] || { cat "$tmp/err" >&2; fail "exit status $status (want $code) from: $*"; }
	expect "$tmp/err" "$msg"
}

# MODEL PACKED [model options]: same greedy tokens and perplexity; the
# packed file runs with the options in $packed_opts (word-split).
packed_opts=
same_as_source() {
	src=$1 packed=$2
	shift 2
	# the source's tokens and perplexity, once per source and options
	key=$tmp/src.$(printf '%s %s' "$src" "$*" | cksum | cut -d' ' -f1)
	if [ ! -e "$key.ppl" ]; then
		run "$bin" run -m "$src" "$@" -p "Once upon a time" --temp 0 --ids -n 64
		mv "$tmp/out" "$key.ids"
		run "$bin" perplexity -m "$src" "$@" -f "$text" --lines 20
		awk '/^ppl / { print $2 }' "$tmp/out" >"$key.ppl"
	fi
	# shellcheck disable=SC2086
	run "$bin" run -m "$packed" $packed_opts -p "Once upon a time" --temp 0 --ids -n 64
	cmp -s "$tmp/out" "$key.ids" || { cat "$key.ids" "$tmp/out" >&2; fail "$packed: other tokens than $src"; }
	a=$(cat "$key.ppl")
	# shellcheck disable=SC2086
	run "$bin" perplexity -m "$packed" $packed_opts -f "$text" --lines 20
	b=$(awk '/^ppl / { print $2 }' "$tmp/out")
	awk -v a="$a" -v b="$b" 'BEGIN { d = (a - b) / a; exit !(a > 0 && d < 1e-4 && d > -1e-4) }' ||
		fail "$packed: perplexity $b, its source $a"
	echo "$packed $packed_opts: same tokens, perplexity $b (source $a)"
}

# NAME LINES SYNTH_ARGS...: $tmp/NAME.gguf synthesized, profiled on LINES
# lines and packed into $tmp/NAME.pack (pack's summary in $tmp/out).
synth_and_pack() {
	name=$1 lines=$2
	shift 2
	run "$bin" synth "$@" -o "$tmp/$name.gguf"
	run "$bin" profile -m "$tmp/$name.gguf" -f "$text" --lines "$lines" -o "$tmp/$name.prof"
	run "$bin" pack -m "$tmp/$name.gguf" --profile "$tmp/$name.prof" -o "$tmp/$name.pack"
}
