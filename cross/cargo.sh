#!/usr/bin/env bash
# Runs cargo for an ARM target the docker-free way (Debian's cross gcc as linker,
# qemu-user as runner: .cargo/config.toml), in target/cross/TRIPLE — the target dir
# that the builds, the ARM end-to-end tests, the ARM unit tests in CI and
# cross/package.sh share for that target. Binaries land in
# target/cross/TRIPLE/TRIPLE/PROFILE/.
#
# One target dir per triple, not one for both: the armv7 build sets RUSTC_BOOTSTRAP
# (below), which proc-macro2's and anyhow's build scripts watch, so in a shared dir the
# two targets' builds kept invalidating each other's host proc-macros and rebuilt
# nearly every crate on each switch.
#
#   cross/cargo.sh TRIPLE SUBCOMMAND [ARGS...]
#   cross/cargo.sh armv7-unknown-linux-gnueabihf test --release -p outpost --lib
#
# When rustup has no prebuilt standard library for TRIPLE at the pinned toolchain
# (armv7-unknown-linux-gnueabihf for 1.96 on some mirrors: rustup target add fails),
# the standard library is compiled from the toolchain's own source (the rust-src
# component, pinned in rust-toolchain.toml) with cargo's -Zbuild-std. That flag is
# unstable, hence RUSTC_BOOTSTRAP=1 for that build only; the compiler is the same
# pinned release, and so is the code it builds.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: cross/cargo.sh TRIPLE SUBCOMMAND [ARGS...]" >&2; exit 2; }
triple=$1
sub=$2
shift 2
case "$triple" in
aarch64-unknown-linux-gnu) gcc=aarch64-linux-gnu-gcc ;;
armv7-unknown-linux-gnueabihf) gcc=arm-linux-gnueabihf-gcc ;;
*) echo "unsupported target $triple" >&2; exit 2 ;;
esac
command -v "$gcc" >/dev/null || {
    echo "missing $gcc: run tests/setup.sh tests (or apt-get install the cross gcc)" >&2
    exit 1
}
extra=()
if [ ! -d "$(rustc --print sysroot)/lib/rustlib/$triple/lib" ]; then
    echo "cross/cargo.sh: no prebuilt std for $triple: building it from rust-src (-Zbuild-std)" >&2
    export RUSTC_BOOTSTRAP=1
    extra=(-Zbuild-std)
fi
unset CARGO_TARGET_DIR CARGO_ENCODED_RUSTFLAGS
exec cargo "$sub" --target "$triple" --target-dir "target/cross/$triple" "${extra[@]}" "$@"
