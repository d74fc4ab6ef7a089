# keel — thin entry points over Meson/Ninja and the scripts in tools/ and bench/.
#
#   make deps      install the Debian packages (tools/deps.sh; no-op when present)
#   make build     configure (once) and build build/keel
#   make run       build and serve on 127.0.0.1:8080 (override with RUN_ARGS=...)
#   make unit      cmocka unit tests          make api    pytest black-box tests (SQLite)
#   make api-pg    the same pytest suite on PostgreSQL 15: a throwaway cluster in
#                  $(BUILD)/pg on a free loopback port (tools/pg-cluster.sh), then stopped
#   make asan      unit + api under an ASan+UBSan build (build-asan/)
#   make asan-pg   the PostgreSQL API suite on that build
#   make style     banned calls + clang-format  make valgrind  leak check of a serve cycle
#   make test      all of the above in order, stops at the first failure, ends with a recap
#   make bench     optimised build (build-release/), API-key verification micro-benchmark,
#                  then wrk A/B against nginx; BENCH_ARGS=...
#   make clean     remove the build directories

SHELL := /bin/bash
.DEFAULT_GOAL := build
# meson and ninja parallelise internally; the stages here must run in order.
.NOTPARALLEL:

BUILD ?= build
ASAN_BUILD ?= build-asan
RELEASE_BUILD ?= build-release
# Debian's interpreter: it is the one apt gives python3-pytest and python3-requests.
PY ?= /usr/bin/python3

RUN_DATA ?= keel-data
RUN_ARGS ?= --listen 127.0.0.1:8080 --data-dir $(RUN_DATA)
BENCH_ARGS ?=

ASAN_SETUP_ARGS := -Db_sanitize=address,undefined -Db_lundef=false
RELEASE_SETUP_ARGS := -Dbuildtype=release -Dtest_hooks=false -Dtests=false
SANITIZER_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

TEST_STAGES := deps build unit api api-pg asan asan-pg style valgrind fuzz-short
TEST_LOGS := $(BUILD)-logs

# $(call meson_setup,DIR,ARGS): configure DIR once. The arguments used are kept
# in DIR/.keel-setup-args; the directory is reconfigured only when they differ
# (e.g. a build-release configured by hand) or when an earlier setup did not
# finish. Later changes to meson.build are picked up by ninja itself.
define meson_setup
	@stamp='$(1)/.keel-setup-args'; args='$(strip $(2))'; \
	if [ -f '$(1)/meson-private/coredata.dat' ]; then \
	  if [ -f '$(1)/build.ninja' ] && { [ -z "$$args" ] || \
	      { [ -f "$$stamp" ] && [ "$$(cat "$$stamp")" = "$$args" ]; }; }; then \
	    exit 0; \
	  fi; \
	  echo "meson setup --reconfigure $(1) $$args"; \
	  meson setup --reconfigure '$(1)' $$args || exit 1; \
	else \
	  echo "meson setup $(1) $$args"; \
	  meson setup '$(1)' $$args || exit 1; \
	fi; \
	printf '%s' "$$args" > "$$stamp"
endef

.PHONY: deps build run unit api api-pg asan asan-pg style valgrind test bench clean fuzz fuzz-short

deps:
	@tools/deps.sh

build:
	$(call meson_setup,$(BUILD),)
	ninja -C $(BUILD)

# First start: `keel bootstrap` creates an administrator, an organisation and
# an API key and prints them once (it does nothing on later starts).
run: deps build
	$(BUILD)/keel bootstrap --data-dir $(RUN_DATA)
	$(BUILD)/keel serve $(RUN_ARGS)

unit: build
	meson test -C $(BUILD) --suite unit --print-errorlogs

api: build
	KEEL_BIN=$(abspath $(BUILD)/keel) $(PY) -m pytest -q tests/api

# The API suite again with KEEL_TEST_BACKEND=postgres: every keel under test gets
# its own database, a copy of the migrated keel_template (tests/api/pgtest.py).
# The cluster is stopped whatever the outcome; the stage fails with the tests.
PG_CLUSTER := $(BUILD)/pg
# $(call pg_suite,KEEL,ENV,LABEL): the pytest API suite with keel binary KEEL and
# the extra environment ENV against a throwaway cluster, stopped whatever the outcome.
define pg_suite
	@export KEEL_BIN=$(abspath $(1)); \
	tools/pg-cluster.sh start '$(PG_CLUSTER)' || { tools/pg-cluster.sh stop '$(PG_CLUSTER)'; exit 1; }; \
	eval "$$(tools/pg-cluster.sh env '$(PG_CLUSTER)')" && \
	  echo "=== API suite on PostgreSQL$(3) (127.0.0.1:$$KEEL_TEST_PG_PORT)" && \
	  $(2) $(PY) -m pytest -q tests/api; rc=$$?; \
	tools/pg-cluster.sh stop '$(PG_CLUSTER)'; exit $$rc
endef

api-pg: build
	$(call pg_suite,$(BUILD)/keel,,)

# Unit and API tests again on an ASan+UBSan build; any report aborts the process.
# KEEL_TEST_SLOW=1 stretches the API tests' timeouts (tests/api/conftest.py).
asan:
	$(call meson_setup,$(ASAN_BUILD),$(ASAN_SETUP_ARGS))
	ninja -C $(ASAN_BUILD)
	$(SANITIZER_ENV) meson test -C $(ASAN_BUILD) --suite unit --print-errorlogs
	$(SANITIZER_ENV) KEEL_TEST_SLOW=1 KEEL_BIN=$(abspath $(ASAN_BUILD)/keel) \
	  $(PY) -m pytest -q tests/api

# The PostgreSQL API suite again on the ASan+UBSan build (the libpq backend's memory).
asan-pg:
	$(call meson_setup,$(ASAN_BUILD),$(ASAN_SETUP_ARGS))
	ninja -C $(ASAN_BUILD)
	$(call pg_suite,$(ASAN_BUILD)/keel,$(SANITIZER_ENV) KEEL_TEST_SLOW=1, under ASan+UBSan)

style:
	@tools/check-style.sh

valgrind: build
	KEEL_BIN=$(abspath $(BUILD)/keel) tools/valgrind-cycle.sh

# Runs each stage as its own make, logs it to $(TEST_LOGS)/STAGE.log, stops at
# the first failure and ends with a recap: each stage's result, the meson test
# counts and the pytest summary lines (SQLite, PostgreSQL and under ASan).
test:
	@mkdir -p '$(TEST_LOGS)'; rm -f '$(TEST_LOGS)'/*.log; \
	declare -A result; failed=; \
	for stage in $(TEST_STAGES); do \
	  if [ -n "$$failed" ]; then result[$$stage]=skipped; continue; fi; \
	  echo "=== make $$stage"; \
	  $(MAKE) --no-print-directory $$stage 2>&1 | tee '$(TEST_LOGS)'/$$stage.log; \
	  if [ "$${PIPESTATUS[0]}" = 0 ]; then result[$$stage]=PASS; \
	  else result[$$stage]=FAIL; failed=$$stage; fi; \
	done; \
	pytest_summary='^=* ?([0-9]+ (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)|no tests ran)\b'; \
	summary() { \
	  local log='$(TEST_LOGS)'/$$1.log; [ -f "$$log" ] || return 0; \
	  local counts; counts=$$(grep -E '^(Ok|Expected Fail|Fail|Unexpected Pass|Skipped|Timeout): ' "$$log" \
	    | tr -s ' ' | paste -sd' ' - | sed 's/ *$$//'); \
	  [ -z "$$counts" ] || printf '  %-9s meson:  %s\n' "$$1" "$$counts"; \
	  local py; py=$$(grep -E "$$pytest_summary" "$$log" | tail -n 1); \
	  [ -z "$$py" ] || printf '  %-9s pytest: %s\n' "$$1" "$$py"; \
	}; \
	echo; \
	if [ -n "$$failed" ]; then verdict="FAILED at stage $$failed"; else verdict="all stages passed"; fi; \
	echo "=== keel test recap: $$verdict (logs in $(TEST_LOGS)/)"; \
	for stage in $(TEST_STAGES); do printf '  %-9s %s\n' "$$stage" "$${result[$$stage]}"; done; \
	summary unit; summary api; summary api-pg; summary asan; summary asan-pg; \
	passed=0; nfailed=0; \
	for stage in unit api api-pg asan asan-pg; do \
	  log='$(TEST_LOGS)'/$$stage.log; [ -f "$$log" ] || continue; \
	  n=$$(grep -E '^Ok: ' "$$log" | awk '{s+=$$2} END {print s+0}'); passed=$$((passed + n)); \
	  n=$$(grep -E '^Fail: ' "$$log" | awk '{s+=$$2} END {print s+0}'); nfailed=$$((nfailed + n)); \
	  py=$$(grep -E "$$pytest_summary" "$$log" | tail -n 1); \
	  n=$$(printf '%s' "$$py" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+'); passed=$$((passed + $${n:-0})); \
	  n=$$(printf '%s' "$$py" | grep -oE '[0-9]+ (failed|errors?)' | awk '{s+=$$1} END {print s+0}'); \
	  nfailed=$$((nfailed + $${n:-0})); \
	done; \
	[ -z "$$failed" ] || nfailed=$$((nfailed > 0 ? nfailed : 1)); \
	echo "tests: $$passed passed, $$nfailed failed"; \
	[ -z "$$failed" ]

# libFuzzer drivers (tests/fuzz) built with clang + ASan/UBSan in build-fuzz/;
# each runs FUZZ_SECONDS on a scratch copy of its seed corpus. `make test`
# runs a short pass; `make fuzz FUZZ_SECONDS=600` a long one.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
# A fixed seed and a run count make the short pass in `make test` repeatable
# (the same inputs every time); the long pass explores (seed 0: random).
FUZZ_SEED ?= 0
FUZZ_RUNS ?= -1
FUZZ_DRIVERS := json time session router events
FUZZ_SETUP_ARGS := -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined -Db_lundef=false

fuzz:
	@if [ ! -f '$(FUZZ_BUILD)/build.ninja' ]; then \
	  CC=clang meson setup '$(FUZZ_BUILD)' $(FUZZ_SETUP_ARGS) || exit 1; fi
	ninja -C $(FUZZ_BUILD) $(addprefix fuzz_,$(FUZZ_DRIVERS))
	@for d in $(FUZZ_DRIVERS); do \
	  work='$(FUZZ_BUILD)'/corpus-$$d; rm -rf "$$work"; mkdir -p "$$work"; \
	  cp tests/fuzz/corpus/$$d/* "$$work"/; \
	  echo "fuzz_$$d: $(FUZZ_SECONDS) s"; \
	  '$(FUZZ_BUILD)'/fuzz_$$d -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 \
	    -seed=$(FUZZ_SEED) -runs=$(FUZZ_RUNS) \
	    -print_final_stats=0 "$$work" > '$(FUZZ_BUILD)'/fuzz_$$d.log 2>&1 \
	    || { tail -n 40 '$(FUZZ_BUILD)'/fuzz_$$d.log; echo "fuzz_$$d FAILED"; exit 1; }; \
	  grep -E '^Done' '$(FUZZ_BUILD)'/fuzz_$$d.log || true; \
	done

fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10 FUZZ_SEED=1 FUZZ_RUNS=200000

bench: deps
	$(call meson_setup,$(RELEASE_BUILD),$(RELEASE_SETUP_ARGS))
	ninja -C $(RELEASE_BUILD)
	$(RELEASE_BUILD)/bench_keyverify
	$(PY) bench/bench.py --keel $(RELEASE_BUILD)/keel $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(RELEASE_BUILD) $(TEST_LOGS)
