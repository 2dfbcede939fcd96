#!/bin/bash
# fetch-kernel.sh [--suite SUITE] [--arch ARCH] [--root] DESTDIR PACKAGE... - download Debian
# packages and unpack them WITHOUT installing (apt-get download + dpkg -x)
# into DESTDIR; prints DESTDIR when ready. A finished unpack is reused.
#   --suite S   e.g. trixie-backports, bullseye-security: a private apt state under the cache
#               (the host's apt lists and sources are never touched).
#   --arch A    another architecture's packages (arm64), from a private apt
#               state of its own (default suite: trixie).
#   --root      a userland, not a kernel: the packages with everything they
#               depend on (apt-get install --download-only against an empty
#               package status, nothing installed), unpacked into one root the
#               guest chroots into (run-in-vm.sh --root).
# Nothing goes to the host's /boot or /lib/modules.
set -euo pipefail
SUITE= ARCH= ROOTFS=
while [ $# -gt 0 ]; do
  case "$1" in
    --suite) SUITE=$2; shift 2 ;;
    --arch) ARCH=$2; shift 2 ;;
    --root) ROOTFS=1; shift ;;
    *) break ;;
  esac
done
DEST=${1:?destination directory}; shift
[ $# -gt 0 ] || { echo "usage: fetch-kernel.sh [--suite SUITE] [--arch ARCH] [--root] DESTDIR PACKAGE..." >&2; exit 2; }
# a root is made again when its package list changed (the list is kept in its .complete)
if [ -f "$DEST/.complete" ] && { [ -z "$ROOTFS" ] || [ "$(cat "$DEST/.complete")" = "$*" ]; }; then echo "$DEST"; exit 0; fi
CACHE=$(dirname "$DEST")
APT=(apt-get)
DEBS=$CACHE/debs
if [ -n "$ARCH" ] || [ -n "$ROOTFS" ]; then SUITE=${SUITE:-trixie}; fi
if [ -n "$SUITE" ]; then
  A=$CACHE/apt-$SUITE${ARCH:+-$ARCH}
  mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/etc/sources.list.d" "$A/etc/preferences.d"
  case "$SUITE" in *-security) URI=http://deb.debian.org/debian-security ;; *) URI=http://deb.debian.org/debian ;; esac
  printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$URI" "$SUITE" > "$A/etc/sources.list.d/km.sources"
  APT=(apt-get -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$A/etc/sources.list.d" -o Dir::Etc::Preferences=/dev/null
       -o "Dir::Etc::PreferencesParts=$A/etc/preferences.d" -o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache" -o Dir::State::status=/dev/null)
  if [ -n "$ARCH" ]; then
    APT+=(-o "APT::Architecture=$ARCH" -o "APT::Architectures::=$ARCH")
    DEBS=$CACHE/debs-$ARCH
  fi
  "${APT[@]}" update >&2
fi
mkdir -p "$DEBS/partial"
rm -rf "$DEST.tmp"; mkdir -p "$DEST.tmp"
if [ -n "$ROOTFS" ]; then
  # the packages and their dependencies, resolved by apt against an empty status: downloaded into DEBS, never installed
  RESOLVE=("${APT[@]}" -o "Dir::Cache::archives=$DEBS" -o Debug::NoLocking=1 -y -q --no-install-recommends install)
  PLAN=$("${RESOLVE[@]}" --simulate "$@" | sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1_\2/p')
  [ -n "$PLAN" ] && "${RESOLVE[@]}" --download-only "$@" >&2 || {
    echo "cannot download $* with their dependencies: is the suite in reach?" >&2; exit 1; }
  for NAME_VERSION in $PLAN; do  # the file names spell an epoch's colon as %3a
    dpkg -x "$(ls "$DEBS/${NAME_VERSION//:/%3a}"_*.deb | head -n1)" "$DEST.tmp"
  done
  for d in bin sbin lib; do [ -e "$DEST.tmp/$d" ] || ln -s "usr/$d" "$DEST.tmp/$d"; done  # what base-files' scripts would link
  [ -e "$DEST.tmp/usr/bin/sh" ] || ln -s dash "$DEST.tmp/usr/bin/sh"  # what dash's scripts would link
  mkdir -p "$DEST.tmp"/{proc,sys,dev,tmp,run,root}
else
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
fi
if [ -n "$ROOTFS" ]; then echo "$*" > "$DEST.tmp/.complete"; else touch "$DEST.tmp/.complete"; fi
rm -rf "$DEST"; mv "$DEST.tmp" "$DEST"
echo "$DEST"
