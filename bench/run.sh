#!/bin/sh
# Builds the benchmark programs and runs the issue-2 benchmarks (see
# bench/rest_bench.py). Usage: bench/run.sh [rest_bench.py options]
set -e
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh build bench
make all
make build/append_bench
/usr/bin/python3 bench/rest_bench.py "$@"
