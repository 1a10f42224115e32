#!/usr/bin/env bash
# Prepares a fresh Debian machine with rustup for Outpost, so that the README's two
# commands work from nothing: the Rust toolchain and targets pinned in
# rust-toolchain.toml (rustup does not install them on its own when
# RUSTUP_AUTO_INSTALL=0), and the Debian packages the chosen command needs.
#
#   tests/setup.sh demo    # the demo: a C compiler and curl
#   tests/setup.sh tests   # the test suite: brokers (mosquitto, redis-server,
#                          # rabbitmq-server), proxy, certificates, ARM cross
#                          # compilers and qemu-user, FUSE (the test filesystem),
#                          # and the OpAMP test server's Python venv (PyPI:
#                          # opentelemetry-opamp-client, websockets)
#
# Idempotent: what is there already is left alone. Installs Debian packages with
# apt-get (as root, or through sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-tests}

say() { printf '== %s\n' "$*" >&2; }

# --- Rust: the pinned toolchain, its components and targets.
command -v rustup >/dev/null || {
    echo "rustup is needed (https://rustup.rs): it installs the pinned toolchain" >&2
    exit 1
}
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
list() { sed -n "s/^$1 *= *\[\(.*\)\]/\1/p" rust-toolchain.toml | tr -d '" ' ; }
components=$(list components)
targets=$(list targets)
if ! rustup toolchain list | grep -q "^$channel"; then
    say "installing Rust $channel (rust-toolchain.toml)"
    rustup toolchain install "$channel" --profile minimal --component "$components" --target "$targets"
else
    missing=$(comm -23 <(tr ',' '\n' <<<"$targets" | sort) <(rustup +"$channel" target list --installed | sort))
    [ -z "$missing" ] || rustup +"$channel" target add $missing
    rustup +"$channel" component add $(tr ',' ' ' <<<"$components") >/dev/null 2>&1 || true
fi
if [ "$what" != demo ] && ! rustup +"$channel" target list --installed | grep -q '^armv7-unknown-linux-gnueabihf$'; then
    # 32-bit ARM: the prebuilt std where the mirror has it, else cross/cargo.sh builds
    # it from rust-src.
    rustup +"$channel" target add armv7-unknown-linux-gnueabihf >/dev/null 2>&1 ||
        say "no prebuilt std for armv7-unknown-linux-gnueabihf at $channel: cross/cargo.sh builds it from rust-src"
fi

# --- Debian packages.
need=()
want() { # want COMMAND PACKAGE... : the packages if COMMAND is missing
    local cmd=$1
    shift
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$@")
}
want cc gcc libc6-dev
case "$what" in
demo)
    want curl curl
    ;;
tests | ci)
    want mosquitto mosquitto
    want openssl openssl
    want tinyproxy tinyproxy-bin
    want aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    want arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
    want qemu-aarch64 qemu-user
    want qemu-arm qemu-user
    want node nodejs
    want npm npm
    want fusermount3 fuse3
    want redis-server redis-server
    want redis-cli redis-tools
    want rabbitmq-server rabbitmq-server
    want python3 python3
    python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
    ;;
*)
    echo "usage: tests/setup.sh demo|tests" >&2
    exit 2
    ;;
esac
if [ ${#need[@]} -gt 0 ]; then
    mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
    say "installing Debian packages: ${need[*]}"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# --- The OpAMP test server (tests/fleet/opamp_server.py): OpenTelemetry's generated
# OpAMP classes and a WebSocket server, from PyPI, in a venv of their own.
if [ "$what" != demo ]; then
    venv=tests/.opamp-venv
    if ! "$venv/bin/python" -c 'import websockets; from opentelemetry._opamp.proto import opamp_pb2' 2>/dev/null; then
        say "installing the OpAMP test server's Python packages into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check \
            'opentelemetry-opamp-client==0.5b0' 'websockets>=13,<18'
    fi
fi
