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
