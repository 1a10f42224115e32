#!/usr/bin/env bash
# Makes Outpost's .deb (with dpkg-deb alone) from an `outpost` binary already built,
# checks what is in it, and — for this machine's architecture — installs it, runs
# `outpost check` on the packaged config, verifies the systemd unit and removes it.
#
#   cross/package.sh BINARY [TRIPLE]
#   cross/package.sh target/release/outpost
#   cross/package.sh target/cross/aarch64-unknown-linux-gnu/aarch64-unknown-linux-gnu/release/outpost \
#       aarch64-unknown-linux-gnu
#
# The package goes to debian/ beside the binary. It holds the binary (/usr/bin), the
# systemd unit (enabled, not started, on install), the small-gateway config as a
# conffile (/etc/outpost/outpost.toml) and the README; its maintainer scripts are in
# cross/debian/. Needs dpkg-deb and readelf (binutils).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: cross/package.sh BINARY [TRIPLE]" >&2; exit 2; }
bin=$1
host=$(rustc -vV | sed -n 's/^host: //p')
triple=${2:-$host}
case "$triple" in
x86_64-*) arch=amd64 ;; aarch64-*) arch=arm64 ;; armv7-*) arch=armhf ;;
*) echo "unsupported target $triple" >&2; exit 2 ;;
esac
fail() { echo "package check failed: $*" >&2; exit 1; }
[ -x "$bin" ] || fail "$bin is not an executable"

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
description=$(sed -n 's/^description *= *"\(.*\)"/\1/p' agent/Cargo.toml | head -n 1)
# The newest glibc symbol version the binary needs is the libc6 it depends on.
glibc=$(readelf -V --wide "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
[ -n "$glibc" ] || fail "no glibc version found in $bin"

stage=$(mktemp -d)
scratch=$(mktemp -d)
trap 'rm -rf "$stage" "$scratch"' EXIT
install -D -m 755 "$bin" "$stage/usr/bin/outpost"
if [ "$triple" = "$host" ] && command -v strip >/dev/null; then
    strip --strip-debug "$stage/usr/bin/outpost"
fi
install -D -m 644 cross/outpost.service "$stage/lib/systemd/system/outpost.service"
install -D -m 640 examples/gateway-512mb.toml "$stage/etc/outpost/outpost.toml"
install -D -m 644 README.md "$stage/usr/share/doc/outpost/README.md"
install -d "$stage/DEBIAN"
install -m 755 cross/debian/postinst cross/debian/prerm cross/debian/postrm "$stage/DEBIAN/"
echo /etc/outpost/outpost.toml >"$stage/DEBIAN/conffiles"
cat >"$stage/DEBIAN/control" <<EOF
Package: outpost
Version: $version
Architecture: $arch
Maintainer: Outpost developers
Section: net
Priority: optional
Depends: libc6 (>= $glibc)
Installed-Size: $(du -sk "$stage" --exclude=DEBIAN | cut -f1)
Description: $description
 Local producers post events; WASM or native plugins turn them into messages
 for named sinks; every accepted message stays in an on-disk queue until the
 remote side acknowledged it.
EOF

out=$(dirname "$bin")/debian
mkdir -p "$out"
deb=$out/outpost_${version}_${arch}.deb
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "== $deb ($(stat -c %s "$deb") bytes; depends on libc6 >= $glibc)"

contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/outpost ./lib/systemd/system/outpost.service ./etc/outpost/outpost.toml \
    ./usr/share/doc/outpost/README.md; do
    grep -q " $path\$" <<<"$contents" || fail "$path is not in the package"
done
[ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || fail "architecture is not $arch"
dpkg-deb -I "$deb" conffiles | grep -q /etc/outpost/outpost.toml || fail "the config is not a conffile"
dpkg-deb -x "$deb" "$scratch"
grep -q '^data_dir *= *"/var/lib/outpost"' "$scratch/etc/outpost/outpost.toml" || fail "the config's data_dir"
grep -q '^StateDirectory=outpost' "$scratch/lib/systemd/system/outpost.service" || fail "the unit's data dir"
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
