# The daemon end to end under valgrind's memcheck (tests/valgrind-daemon.sh,
# docs/reliability.md), on the release build: memcheck and ASan exclude
# each other, so it is a stage of its own and not part of `make test`.
.PHONY: check-valgrind
CHECK_STAGES += check-valgrind

check-valgrind: $(PROGRAMS) $(PINFER_LOAD)
	@command -v valgrind >/dev/null || scripts/install-deps.sh
	@BUILD=$(BUILD) SHARED=$(SHARED) tests/valgrind-daemon.sh
