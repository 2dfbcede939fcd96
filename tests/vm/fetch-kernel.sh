#!/bin/bash
# fetch-kernel.sh [--suite SUITE] DESTDIR PACKAGE... - download Debian kernel
# packages and unpack them WITHOUT installing (apt-get download + dpkg -x)
# into DESTDIR; prints DESTDIR when ready. A finished unpack is reused.
#   --suite S   e.g. trixie-backports: a private apt state under the cache
#               (the host's apt lists and sources are never touched).
# Nothing goes to the host's /boot or /lib/modules.
set -euo pipefail
SUITE=
if [ "${1:-}" = --suite ]; then SUITE=$2; shift 2; fi
DEST=${1:?destination directory}; shift
[ $# -gt 0 ] || { echo "usage: fetch-kernel.sh [--suite SUITE] DESTDIR PACKAGE..." >&2; exit 2; }
if [ -f "$DEST/.complete" ]; then echo "$DEST"; exit 0; fi
CACHE=$(dirname "$DEST")
APT=(apt-get)
if [ -n "$SUITE" ]; then
  A=$CACHE/apt-$SUITE
  mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/etc/sources.list.d" "$A/etc/preferences.d"
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$SUITE" > "$A/etc/sources.list.d/km.sources"
  APT=(apt-get -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$A/etc/sources.list.d" -o Dir::Etc::Preferences=/dev/null
       -o "Dir::Etc::PreferencesParts=$A/etc/preferences.d" -o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache" -o Dir::State::status=/dev/null)
  "${APT[@]}" update >&2
fi
DEBS=$CACHE/debs
mkdir -p "$DEBS"
rm -rf "$DEST.tmp"; mkdir -p "$DEST.tmp"
for PKG in "$@"; do
  DEB=$(ls "$DEBS/${PKG}"_*.deb 2>/dev/null | head -n1 || true)
  if [ -z "$DEB" ]; then
    ( cd "$DEBS" && "${APT[@]}" download "$PKG" >&2 ) || {
      echo "cannot download $PKG: is this a Debian machine with that suite in reach?" >&2; exit 1; }
    DEB=$(ls "$DEBS/${PKG}"_*.deb | head -n1)
  fi
  dpkg -x "$DEB" "$DEST.tmp"
done
# newer packages ship /usr/lib/modules only
[ -d "$DEST.tmp/lib/modules" ] || ln -s usr/lib "$DEST.tmp/lib"
KVER=$(ls "$DEST.tmp/lib/modules" | head -n1)
depmod -b "$DEST.tmp" "$KVER"
touch "$DEST.tmp/.complete"
rm -rf "$DEST"; mv "$DEST.tmp" "$DEST"
echo "$DEST"
