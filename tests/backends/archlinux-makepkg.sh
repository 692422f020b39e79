#!/bin/sh
# Test backend for Arch fixture repositories: REALLY rebuilds a pkgbase with makepkg.
#
#   archlinux-makepkg.sh <absolute path of a package file (.pkg.tar.*)>
#
# The rebuilderd-worker contract: REBUILDERD_OUTDIR is an empty directory that
# receives the rebuilt package files; the working directory holds the downloaded
# (expected) ones. Like archlinux-repro, it reads the input's .BUILDINFO and
# rebuilds under the same conditions: SOURCE_DATE_EPOCH = builddate, PACKAGER =
# packager, the same build directory (startdir), the package extension of the
# input. Arch package files carry no PKGBUILD, so it comes from the test:
#
#   REBUILDER_TEST_PKGBUILDS  directory of <pkgbase>/PKGBUILD
#   REBUILDER_TEST_BUILDROOT  the only place a build directory may be (the
#                             .BUILDINFO's startdir must be <this>/<pkgbase>)
#
# It builds with no dependencies installed (makepkg --nodeps), as root through
# setpriv as user nobody (makepkg refuses root), and copies only what it built:
# never a file of the working directory, where the expected files are.
# Needs makepkg, fakeroot, bsdtar (libarchive-tools), zstd, setpriv (util-linux).
set -eu

die() { echo "archlinux-makepkg: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 <abs path of a .pkg.tar.* file>"
input=$1
[ -f "$input" ] || die "no such input: $input"
outdir=${REBUILDERD_OUTDIR:?REBUILDERD_OUTDIR is not set}
[ -d "$outdir" ] || die "REBUILDERD_OUTDIR is not a directory: $outdir"
pkgbuilds=${REBUILDER_TEST_PKGBUILDS:?REBUILDER_TEST_PKGBUILDS is not set}
buildroot=${REBUILDER_TEST_BUILDROOT:?REBUILDER_TEST_BUILDROOT is not set}

case "$input" in
*.pkg.tar*) pkgext=".pkg.tar${input##*.pkg.tar}" ;;
*) die "not a package file: $input" ;;
esac

info=$(bsdtar -xOf "$input" .BUILDINFO) || die "no .BUILDINFO in $input"
field() {  # field NAME: the first "NAME = value" of the .BUILDINFO
    printf '%s\n' "$info" | sed -n "s/^$1 = //p" | head -n 1
}
pkgbase=$(field pkgbase)
builddate=$(field builddate)
packager=$(field packager)
startdir=$(field startdir)
builddir=$(field builddir)

case "$pkgbase" in
"" | .* | -* | *[!A-Za-z0-9@._+-]*) die "refusing pkgbase '$pkgbase'" ;;
esac
case "$builddate" in
"" | *[!0-9]*) die "refusing builddate '$builddate'" ;;
esac
[ "$startdir" = "$buildroot/$pkgbase" ] \
    || die "startdir '$startdir' is not $buildroot/$pkgbase: cannot rebuild in the same place"
[ "$builddir" = "$startdir" ] || die "builddir '$builddir' differs from startdir"
[ -f "$pkgbuilds/$pkgbase/PKGBUILD" ] || die "no PKGBUILD for $pkgbase in $pkgbuilds"

# The fixture's "broken" pkgbase builds only for its original upload: a rebuild
# must never inherit that switch (env -i below drops it, and everything else).
rm -rf "$startdir"
mkdir -p "$startdir"
trap 'rm -rf "$startdir"' EXIT INT TERM
cp "$pkgbuilds/$pkgbase/PKGBUILD" "$startdir/PKGBUILD"

run_as_builder() {
    if [ "$(id -u)" -eq 0 ]; then
        chown -R nobody: "$startdir"
        setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups -- "$@"
    else
        "$@"
    fi
}

echo "+ makepkg in $startdir: SOURCE_DATE_EPOCH=$builddate PKGEXT=$pkgext PACKAGER=$packager" >&2
# shellcheck disable=SC2016 # $1 is expanded by the inner sh
run_as_builder env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME="$buildroot" LC_ALL=C \
    SOURCE_DATE_EPOCH="$builddate" PKGEXT="$pkgext" PACKAGER="$packager" \
    sh -c 'umask 022 && cd "$1" && exec makepkg --nodeps --noconfirm --nocolor' sh "$startdir" >&2 \
    || die "makepkg failed"

found=0
for pkg in "$startdir"/*"$pkgext"; do
    [ -f "$pkg" ] || continue
    cp -- "$pkg" "$outdir/"
    found=$((found + 1))
done
[ "$found" -gt 0 ] || die "makepkg produced no package"
echo "archlinux-makepkg: rebuilt $found package(s) of $pkgbase" >&2
