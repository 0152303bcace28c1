# Junction build. `make` builds build/junction; `make run` installs what is
# missing, builds and serves; `make test` installs test needs and runs every
# test (unit, sanitizers, fuzz, integration). See README.md.

SHELL    := /bin/bash
CC       ?= cc
BUILD    ?= build
OPT      ?= -O2
PKGS     := libuv jansson libssl libcrypto libcurl zlib libzstd liblz4
CFLAGS   += -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
            -Wstrict-prototypes -Wmissing-prototypes -D_GNU_SOURCE -fno-strict-aliasing \
            -Isrc $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# wslay: Debian's libwslay-dev ships no pkg-config file (its name would be
# libwslay), so fall back to plain -lwslay; pkg-config must not see an
# unknown name in PKGS or it prints nothing at all.
WSLAY_LIBS := $(shell pkg-config --libs libwslay 2>/dev/null || echo -lwslay)
# snappy (Kafka batches) has no pkg-config file in Debian either.
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) $(WSLAY_LIBS) -lsnappy -lpthread -lm

LIB_SRC  := $(sort $(shell find src -name '*.c' ! -path 'src/cli/*'))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
GEN_SRC  := $(BUILD)/gen/assets.c
ASSETS   := $(sort $(wildcard src/proto/rest/*.json))
# The web console (web/): embedded under its relative path, e.g. "web/app.js".
WEB      := $(sort $(shell find web -type f ! -name '.*' 2>/dev/null))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/assets.o
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all run deps test-deps test unit sanitize fuzz integration bench clean format

all: $(BUILD)/junction

$(BUILD)/junction: $(CLI_OBJ) $(BUILD)/libjunction.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libjunction.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/libjunction.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/gen/assets.c: $(ASSETS) $(WEB) scripts/embed.sh
	@mkdir -p $(dir $@)
	sh scripts/embed.sh $(ASSETS) $(foreach f,$(WEB),$(f)=$(f)) > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/assets.o: $(BUILD)/gen/assets.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libjunction.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libjunction.a $(LDFLAGS) $(LDLIBS) -lcmocka

# The in-process append benchmark (bench/rest_bench.py runs it).
$(BUILD)/append_bench: bench/append_bench.c $(BUILD)/libjunction.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libjunction.a $(LDFLAGS) $(LDLIBS)

deps:
	sh scripts/install-deps.sh build

test-deps:
	sh scripts/install-deps.sh build test

run: deps
	$(MAKE) all
	$(BUILD)/junction serve

# Every test: unit tests, the same under ASan/UBSan, fuzz targets for a
# bounded time, integration tests with real clients against the binary.
test: test-deps
	sh scripts/check-banned.sh
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) sanitize
	$(MAKE) fuzz
	$(MAKE) integration
	@echo "all test suites passed"

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# The unit tests again, built with clang under AddressSanitizer and
# UndefinedBehaviorSanitizer, then the integration tests against an
# ASan/UBSan build of the server.
sanitize:
	$(MAKE) BUILD=build-asan CC=clang OPT="-O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	    LDFLAGS="-fsanitize=address,undefined" all unit
	JUNCTION_BIN=build-asan/junction ASAN_OPTIONS=detect_leaks=1 /usr/bin/python3 -m pytest -q -x tests/integration -k "not sigkill"

FUZZ_SECONDS ?= 20
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang OPT="-O1 -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" \
	    LDFLAGS="-fsanitize=address,undefined" build-fuzz/libjunction.a
	@set -eo pipefail; for f in $(FUZZ_SRC); do \
	  n=$$(basename $$f .c); \
	  clang -std=gnu11 -O1 -g -Isrc -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined $$f build-fuzz/libjunction.a \
	      $(LDLIBS) -o build-fuzz/$$n; \
	  mkdir -p build-fuzz/corpus-$$n; \
	  echo "== fuzz $$n for $(FUZZ_SECONDS)s"; \
	  dict=""; test -f tests/fuzz/$$n.dict && dict="-dict=tests/fuzz/$$n.dict"; \
	  build-fuzz/$$n -max_total_time=$(FUZZ_SECONDS) $$dict build-fuzz/corpus-$$n tests/fuzz/corpus/$$n 2>&1 | tail -n 3; \
	done

integration: all
	JUNCTION_BIN=$(BUILD)/junction /usr/bin/python3 -m pytest -q tests/integration

bench: all
	sh bench/run.sh

clean:
	rm -rf build build-asan build-fuzz

format:
	clang-format -i $$(find src tests -name '*.[ch]')

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
