#!/bin/bash
# fetch-kernel.sh - download a Debian kernel package and unpack it WITHOUT
# installing it (apt-get download + dpkg -x), into the harness cache.
# usage: fetch-kernel.sh PACKAGE DESTDIR    (prints DESTDIR when ready)
# Nothing goes to the host's /boot or /lib/modules; a finished unpack is reused.
set -euo pipefail
PKG=${1:?package, e.g. linux-image-6.1.0-56-amd64-unsigned}
DEST=${2:?destination directory}
if [ -f "$DEST/.complete" ]; then echo "$DEST"; exit 0; fi
DEBS=$(dirname "$DEST")/debs
mkdir -p "$DEBS"
DEB=$(ls "$DEBS/${PKG}"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$DEB" ]; then
  ( cd "$DEBS" && apt-get download "$PKG" >&2 ) || {
    echo "cannot download $PKG: is this a Debian machine with the bookworm(-security) archive in its apt sources?" >&2; exit 1; }
  DEB=$(ls "$DEBS/${PKG}"_*.deb | head -n1)
fi
rm -rf "$DEST.tmp"; mkdir -p "$DEST.tmp"
dpkg -x "$DEB" "$DEST.tmp"
# newer packages ship /usr/lib/modules only
[ -d "$DEST.tmp/lib/modules" ] || ln -s usr/lib "$DEST.tmp/lib"
KVER=$(ls "$DEST.tmp/lib/modules" | head -n1)
depmod -b "$DEST.tmp" "$KVER"
touch "$DEST.tmp/.complete"
rm -rf "$DEST"; mv "$DEST.tmp" "$DEST"
echo "$DEST"
