#!/usr/bin/env bash
# Docker-free ARM release build of the agent (the same binary `cross` builds with
# Docker), into target/cross/<triple>/<triple>/release/outpost — where the ARM end-to-end tests,
# the ARM unit tests in CI and cross/package.sh find it too.
#
#   cross/build.sh                                   # aarch64-unknown-linux-gnu
#   cross/build.sh armv7-unknown-linux-gnueabihf     # 32-bit ARM cameras
#   cross/build.sh aarch64-unknown-linux-gnu --no-default-features --features runtime-only
#
# Needs Debian's cross compiler for the target (tests/setup.sh tests installs them):
# gcc-aarch64-linux-gnu libc6-dev-arm64-cross, or gcc-arm-linux-gnueabihf
# libc6-dev-armhf-cross; and qemu-user to run the result. cross/cargo.sh picks the
# linker and, where rustup has no prebuilt std for the target, builds std from source.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=aarch64-unknown-linux-gnu
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    triple=$1
    shift
fi
exec cross/cargo.sh "$triple" build --release -p outpost --bin outpost "$@"
