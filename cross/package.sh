#!/usr/bin/env bash
# Makes Outpost's .deb with cargo-deb from a release binary that is already built,
# checks what is in it, and — for this machine's architecture — installs it, runs
# `outpost check` on the packaged config and verifies the systemd unit.
#
#   cross/package.sh [TRIPLE [TARGET_DIR]]
#   cross/package.sh                                            # this machine, target/
#   cross/package.sh aarch64-unknown-linux-gnu target/aarch64   # after cross/build.sh
#
# Needs cargo-deb (`cargo install cargo-deb --locked`) and dpkg.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
triple=${1:-$host}
target_dir=${2:-target}
out=$target_dir/debian
mkdir -p "$out"

target_args=()
[ "$triple" = "$host" ] || target_args=(--target "$triple")
CARGO_TARGET_DIR=$target_dir cargo deb -p outpost --no-build "${target_args[@]}" --output "$out"
deb=$(ls -t "$out"/outpost_*.deb | head -n 1)
echo "== $deb ($(stat -c %s "$deb") bytes)"

fail() { echo "package check failed: $*" >&2; exit 1; }
contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/outpost ./lib/systemd/system/outpost.service ./etc/outpost/outpost.toml \
    ./usr/share/doc/outpost/README.md; do
    grep -q " $path\$" <<<"$contents" || fail "$path is not in the package"
done
case "$triple" in
x86_64-*) arch=amd64 ;; aarch64-*) arch=arm64 ;; armv7-*) arch=armhf ;; *) arch=? ;;
esac
[ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || fail "architecture is not $arch"
dpkg-deb -f "$deb" Conffiles 2>/dev/null | grep -q /etc/outpost/outpost.toml ||
    dpkg-deb -I "$deb" conffiles | grep -q /etc/outpost/outpost.toml || fail "the config is not a conffile"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
dpkg-deb -x "$deb" "$scratch"
grep -q '^data_dir *= *"/var/lib/outpost"' "$scratch/etc/outpost/outpost.toml" || fail "the config's data_dir"
grep -q '^StateDirectory=outpost' "$scratch/lib/systemd/system/outpost.service" || fail "the unit's data dir"
file "$scratch/usr/bin/outpost" 2>/dev/null || true
echo "== contents ok: binary, unit, config (conffile), data dir /var/lib/outpost (StateDirectory)"

if [ "$triple" != "$host" ]; then
    echo "== not installed here ($triple on a $host machine)"
    exit 0
fi
dpkg -i "$deb"
/usr/bin/outpost check --config /etc/outpost/outpost.toml
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify /lib/systemd/system/outpost.service
    echo "== systemd-analyze verify: ok"
else
    echo "== systemd-analyze is not available: the unit was not verified"
fi
dpkg -r outpost >/dev/null
echo "== installed, checked and removed again"
