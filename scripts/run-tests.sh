#!/bin/sh
# Runs every test given on the command line (cmocka binaries and shell
# scripts), prints one line per test and a summary, and exits non-zero when
# any failed. A failing test's output is shown in full; what a passing one
# skipped (a cmocka skip, a line with NOTE:) is shown under it.
set -u
: "${SHARED:?SHARED must name the shared data directory}"
: "${BUILD:?BUILD must name the build directory}"
export SHARED BUILD

if [ ! -d "$SHARED/models" ]; then
	echo "run-tests: shared data not found at $SHARED (set SHARED=...)" >&2
	exit 1
fi

log_dir="$BUILD/test-logs"
mkdir -p "$log_dir"
pass=0
fail=0
failed=""
for t in "$@"; do
	name=$(basename "$t")
	log="$log_dir/$name.log"
	start=$(date +%s)
	if "$t" >"$log" 2>&1; then
		status=PASS
		pass=$((pass + 1))
	else
		status=FAIL
		fail=$((fail + 1))
		failed="$failed $name"
	fi
	printf '%-4s %-32s %3ss\n' "$status" "$name" "$(( $(date +%s) - start ))"
	if [ "$status" = FAIL ]; then
		sed 's/^/    | /' "$log"
	else
		# what a test could not check here is said, not hidden in its log
		grep -E '^\[  SKIPPED \]|NOTE:' "$log" | sed 's/^/    | skipped: /'
	fi
done
echo "----"
echo "tests: $((pass + fail)), passed: $pass, failed: $fail"
if [ "$fail" -ne 0 ]; then
	echo "failed:$failed"
	exit 1
fi
