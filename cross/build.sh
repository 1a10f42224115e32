#!/usr/bin/env bash
# Docker-free aarch64 build of the agent (the same binary `cross` builds with Docker):
#
#   cross/build.sh                 # release, stripped: target/aarch64-unknown-linux-gnu/release/outpost
#   cross/build.sh --profile qemu  # quicker build for running under qemu
#
# Needs: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross (and qemu-user to
# run it: qemu-aarch64 -L /usr/aarch64-linux-gnu target/.../outpost --help).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v aarch64-linux-gnu-gcc >/dev/null || {
    echo "missing aarch64-linux-gnu-gcc: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross" >&2
    exit 1
}
rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || true
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--release)
cargo build -p outpost --bin outpost --target aarch64-unknown-linux-gnu "${args[@]}"
