#!/bin/sh
# pinfer-model convert, quantize and pack when the disk fails under them:
# a write that fails (EIO), a disk that fills up (ENOSPC, also after a
# short write), a failing fsync, close or rename, injected by a preloaded
# library (tests/fault_write.c) at every write call of a small model, or
# at a spread of them for a bigger one; and a real full file system, a
# tmpfs a few KiB to a few hundred KiB too small. Each fails with exit
# status 1 and a message that names the output and the error, and leaves
# the output's directory as it was: no partial output, no temporary file,
# an older output untouched. A write that stores only part of its bytes
# is retried: the output is the same as without the fault.
#
# The tmpfs is mounted in a private mount namespace, which needs root (as
# in CI) or unprivileged user namespaces; without either (a container
# without CAP_SYS_ADMIN) the test says so and runs the injected faults
# only.
# PINFER_MOUNT_NS marks the run inside the namespace.
if [ "${PINFER_MOUNT_NS:-}" != private ] && [ "${PINFER_MOUNT_NS:-}" != user ]; then
	if unshare -m true 2>/dev/null; then
		PINFER_MOUNT_NS=private exec unshare -m -- "$0" "$@"
	elif unshare -r -m true 2>/dev/null; then
		PINFER_MOUNT_NS=user exec unshare -r -m -- "$0" "$@"
	fi
	# (a container without CAP_SYS_ADMIN, say)
	PINFER_MOUNT_NS=none
	echo "test_write_faults: NOTE: no mount namespace can be made here: the full file system cases" \
		"do not run, the injected ENOSPC cases stand in for them" >&2
fi
me=test_write_faults
# shellcheck source=tests/tools_lib.sh
. "$(dirname "$0")/tools_lib.sh"
src="$SHARED/models/stories260K"
text="$SHARED/text/tinystories_val_head.txt"

inj=$tmp/fault_write.so
"${CC:-cc}" -shared -fPIC -O1 -o "$inj" "$(dirname "$0")/fault_write.c" -ldl 2>"$tmp/cc.log" ||
	{ cat "$tmp/cc.log" >&2; fail "cannot build the write fault injector"; }
# a sanitizer build wants its runtime first; the injector only wraps calls
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
export ASAN_OPTIONS

run "$bin" calibrate -m "$src/stories260K.gguf" -f "$text" --lines 50 --sparsity 0.3 -o "$tmp/thr.gguf"
run "$bin" profile -m "$src/stories260K.gguf" --sparsity threshold --calibration "$tmp/thr.gguf" -f "$text" \
	--lines 10 -o "$tmp/stories.prof"

# NAME OUT [VAR=VALUE...]: runs pinfer-model NAME writing OUT, in an
# environment with the variables added; output in $tmp/out and $tmp/err.
write_model() {
	name=$1 out=$2
	shift 2
	case $name in
	convert) env "$@" "$bin" convert "$src/stories260K.bin" "$src/tok512.bin" -o "$out" ;;
	quantize) env "$@" "$bin" quantize -t 2 "$src/stories260K.gguf" "$out" q8_0 ;;
	pack) env "$@" "$bin" pack -m "$src/stories260K.gguf" --sparsity threshold \
		--calibration "$tmp/thr.gguf" --profile "$tmp/stories.prof" -o "$out" ;;
	esac >"$tmp/out" 2>"$tmp/err"
}

# NAME DIR OLD WHAT MESSAGE [VAR=VALUE...]: NAME writing DIR/model fails
# with exit status 1 and MESSAGE and the output path on stderr, and leaves
# DIR holding only what it held: nothing, or (OLD not empty) a model
# holding OLD.
fails_cleanly() {
	name=$1 dir=$2 old=$3 what=$4 msg=$5
	shift 5
	write_model "$name" "$dir/model" "$@"
	status=$?
	[ "$status" -eq 1 ] || { cat "$tmp/err" >&2; fail "$name, $what: exit status $status, want 1"; }
	expect "$tmp/err" "$dir/model"
	expect "$tmp/err" "$msg"
	left=$(ls -A "$dir")
	if [ -n "$old" ]; then
		if [ "$left" != model ] || [ "$(cat "$dir/model")" != "$old" ]; then
			fail "$name, $what: the older output was not kept as it was (left: $left)"
		fi
	else
		[ -z "$left" ] || fail "$name, $what: left behind in $dir: $left"
	fi
}

# N: the calls faulted for a command making N of them: every one up to
# 48, then 16 more spread evenly up to the last.
points() {
	awk -v n="$1" 'BEGIN {
		for (k = 1; k <= n && k <= 48; k++) print k
		if (n > 48) for (i = 1; i <= 16; i++) print 48 + int((n - 48) * i / 16)
	}'
}

# Calls counted by the injector during a run of NAME that faults nothing.
count_calls() {
	write_model "$1" "$work/count.out" FAULT_CALL="$2" FAULT_COUNT="$tmp/count" LD_PRELOAD="$inj" ||
		{ cat "$tmp/err" >&2; fail "$1 fails under the injector with no fault"; }
	cat "$tmp/count"
}

# Outputs go to a tmpfs where there is one: successful runs end with an
# fsync, slow on a disk.
work=$tmp/work
mkdir "$work"
if [ "$PINFER_MOUNT_NS" != none ]; then
	mount -t tmpfs -o size=64m,mode=0755 pinfer-test "$work" || fail "cannot mount a tmpfs on $work"
	trap 'umount "$tmp/work" "$tmp/small" 2>/dev/null; rm -rf "$tmp"' EXIT
fi
mkdir "$work/ref" "$work/d"
for name in convert quantize pack; do
	run write_model "$name" "$work/ref/$name"
	ref=$work/ref/$name
	n=$(count_calls "$name" write)
	[ "$n" -gt 1 ] || fail "$name: $n write calls counted"
	i=0
	for k in $(points "$n"); do
		fails_cleanly "$name" "$work/d" "" "write $k of $n fails with EIO" "Input/output error" \
			FAULT_CALL=write FAULT_MODE=eio FAULT_AT="$k" LD_PRELOAD="$inj"
		fails_cleanly "$name" "$work/d" "" "write $k of $n short, then the disk full" \
			"No space left on device" FAULT_CALL=write FAULT_MODE=short FAULT_AT="$k" LD_PRELOAD="$inj"
		if [ $((i % 6)) -eq 0 ] || [ "$k" -eq "$n" ]; then
			fails_cleanly "$name" "$work/d" "" "write $k of $n finds the disk full" \
				"No space left on device" FAULT_CALL=write FAULT_MODE=enospc FAULT_AT="$k" \
				LD_PRELOAD="$inj"
			write_model "$name" "$work/d/model" FAULT_CALL=write FAULT_MODE=short-once FAULT_AT="$k" \
				LD_PRELOAD="$inj" || { cat "$tmp/err" >&2; fail "$name: a short write $k of $n fails"; }
			cmp -s "$work/d/model" "$ref" || fail "$name: a short write $k of $n changes the output"
			rm "$work/d/model"
		fi
		i=$((i + 1))
	done
	for call in fsync close rename; do
		m=$(count_calls "$name" "$call")
		[ "$m" -ge 1 ] || fail "$name makes no $call call on its output"
		for k in $(points "$m"); do
			fails_cleanly "$name" "$work/d" "" "$call $k of $m fails with EIO" "Input/output error" \
				FAULT_CALL="$call" FAULT_MODE=eio FAULT_AT="$k" LD_PRELOAD="$inj"
			fails_cleanly "$name" "$work/d" "" "$call $k of $m fails with ENOSPC" "No space left on device" \
				FAULT_CALL="$call" FAULT_MODE=enospc FAULT_AT="$k" LD_PRELOAD="$inj"
		done
	done
	# an older output stays whole when its replacement fails
	for call in write fsync rename; do
		echo "the older model" >"$work/d/model"
		fails_cleanly "$name" "$work/d" "the older model" "$call fails over an older output" \
			"Input/output error" FAULT_CALL="$call" FAULT_MODE=eio LD_PRELOAD="$inj"
		rm "$work/d/model"
	done
	echo "$name: $n writes, each failing cleanly"
done

# A real full file system. The output fits in a tmpfs of its size rounded
# up to pages, and fails in smaller ones, early or late.
if [ "$PINFER_MOUNT_NS" != none ]; then
	[ "$PINFER_MOUNT_NS" = private ] || echo "$me: NOTE: not root: the tmpfs is mounted in a user namespace"
	small=$tmp/small
	mkdir "$small"
	for name in convert quantize pack; do
		size=$(wc -c <"$work/ref/$name")
		pages=$(((size + 4095) / 4096))
		fit=$((pages * 4))
		for kib in "$fit" 8 $((fit / 2)) $((fit - 4)); do
			mount -t tmpfs -o "size=${kib}k,mode=0755" pinfer-test "$small" ||
				fail "cannot mount a tmpfs of $kib KiB on $small"
			if [ "$kib" -eq "$fit" ]; then
				write_model "$name" "$small/model" ||
					{ cat "$tmp/err" >&2; fail "$name: fails on a tmpfs of $kib KiB, the output's size"; }
				cmp -s "$small/model" "$work/ref/$name" || fail "$name: another output on a tmpfs"
			else
				fails_cleanly "$name" "$small" "" "on a full tmpfs of $kib KiB" "No space left on device"
				[ "$(df -k --output=used "$small" | tail -n 1)" -eq 0 ] ||
					fail "$name: the full tmpfs of $kib KiB is not empty after the failure"
			fi
			umount "$small" || fail "cannot unmount $small"
		done
		echo "$name: fits in a tmpfs of $fit KiB, fails cleanly in smaller ones"
	done
fi
echo "$me: ok"
