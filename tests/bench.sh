#!/usr/bin/env bash
# Outpost benchmarks: builds the agent and the bench tool in release mode, then runs
# the scenarios (default: all; see tests/src/bin/bench.rs) and prints the figures.
#
#   tests/bench.sh                  # smoke10k plugin http http-batch mqtt mqtt-window steady backlog
#   tests/bench.sh http steady      # some of them
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p outpost -p outpost-tests --bin outpost --bin bench
exec target/release/bench "$@"
