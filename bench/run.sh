#!/bin/sh
# Builds the benchmark programs and runs the issue-2 benchmarks (see
# bench/rest_bench.py). Usage: bench/run.sh [rest_bench.py options]
set -e
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh build bench
make all
cc -std=gnu11 -O2 -g -Isrc -D_GNU_SOURCE $(pkg-config --cflags libuv jansson) bench/append_bench.c \
    build/libjunction.a $(pkg-config --libs libuv jansson libssl libcrypto libcurl zlib) -lpthread -lm \
    -o build/append_bench
/usr/bin/python3 bench/rest_bench.py "$@"
