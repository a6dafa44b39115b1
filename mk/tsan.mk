# check-tsan: the tests that run more than one thread, rebuilt with
# ThreadSanitizer (SANITIZE=thread, build/tsan): the engine's pool in decode
# and prefill, the offload pipeline (reader thread, reaper among the compute
# threads, budget changes from another thread), and the daemon's scheduler,
# loader and bus threads, driven by the cmocka tests and by the scripts
# that run pinferd and pinfer.
# OpenBLAS is not instrumented; the engine runs it on the calling thread
# only (pf_blas_single_threaded) and behind one lock.
# test_daemon is left out: under TSan its long-prompt tests outlast the
# harness's 60 s receive timeout (docs/reliability.md).
# Any report fails the stage, also one from a daemon that a script stopped
# without looking at its exit status: every report goes to a file under
# build/tsan/reports, and that directory must stay empty.

CHECK_STAGES += check-tsan
.PHONY: check-tsan

TSAN_BUILD   := build/tsan
TSAN_REPORTS := $(TSAN_BUILD)/reports
# Chosen for the threads they run, not for coverage (the other stages have
# that): TSan slows the single-threaded bulk of test_prefill,
# test_sparsity and test_offload.sh ten-fold for nothing it can see.
TSAN_TESTS   := $(addprefix $(TSAN_BUILD)/tests/,test_forward test_memory test_io test_offload_budget \
                test_loop test_access) \
                $(addprefix tests/,test_stories.sh test_client.sh test_dbus.sh)

check-tsan:
	@$(MAKE) --no-print-directory SANITIZE=thread all
	@rm -rf $(TSAN_REPORTS) && mkdir -p $(TSAN_REPORTS) && status=0 && \
	TSAN_OPTIONS="halt_on_error=1 suppressions=$(abspath tests/tsan.supp) log_path=$(abspath $(TSAN_REPORTS))/report" \
		BUILD=$(TSAN_BUILD) SHARED=$(SHARED) WITH_SYSTEMD=$(WITH_SYSTEMD) \
		scripts/run-tests.sh $(TSAN_TESTS) || status=1; \
	if [ -n "$$(ls -A $(TSAN_REPORTS))" ]; then \
		echo "ThreadSanitizer reports:"; cat $(TSAN_REPORTS)/*; status=1; \
	fi; \
	exit $$status
