#!/bin/sh
# Installs the Debian packages pinfer builds and tests with. Run by `make`
# when pkg-config cannot find a dependency; safe to run again.
# `install-deps.sh aarch64` installs instead what check-aarch64 needs: the
# cross compiler, qemu-user and the arm64 libraries through multiarch.
set -eu

packages="build-essential pkg-config python3 valgrind libopenblas-dev liburing-dev libcmocka-dev libprotobuf-c-dev protobuf-c-compiler libsystemd-dev libdbus-1-dev dbus-daemon dbus-bin systemd util-linux libglib2.0-bin clang libclang-rt-14-dev"
if [ "${1:-}" = aarch64 ]; then
	packages="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libopenblas-dev:arm64 liburing-dev:arm64 libcmocka-dev:arm64"
fi

missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "pinfer needs these Debian packages:$missing" >&2
	echo "install them with: sudo apt-get install$missing" >&2
	exit 1
fi
echo "installing build dependencies:$missing"
export DEBIAN_FRONTEND=noninteractive
case "$missing" in *:arm64*)
	dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64 ;;
esac
apt-get update -q || echo "apt-get update failed; trying the package lists already here" >&2
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
