#!/usr/bin/env bash
# The test suite, from nothing: prepares the machine (tests/setup.sh), then runs
# `cargo test --workspace` (unit tests, CLI tests, end-to-end tests with the real
# binary against real receivers, a real mosquitto and tinyproxy, WASM plugins built
# from plugins/, and the agent cross-built for ARM and run under qemu-user).
# Arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh tests
exec cargo test --workspace "$@"
