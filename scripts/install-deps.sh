#!/bin/sh
# Installs the Debian packages pinfer builds and tests with. Run by `make`
# when pkg-config cannot find a dependency; safe to run again.
set -eu

packages="build-essential pkg-config python3 libopenblas-dev liburing-dev libcmocka-dev libprotobuf-c-dev protobuf-c-compiler libsystemd-dev libdbus-1-dev dbus-daemon dbus-bin systemd util-linux libglib2.0-bin"

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
apt-get update -q || echo "apt-get update failed; trying the package lists already here" >&2
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
