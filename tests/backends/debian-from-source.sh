#!/bin/sh
# Test backend for Debian fixture archives: REALLY rebuilds a source package.
#
#   debian-from-source.sh <absolute path of a .buildinfo or a .dsc>
#
# The rebuilderd-worker contract: REBUILDERD_OUTDIR is an empty directory that
# receives the rebuilt .debs; the working directory holds the downloaded
# (expected) artifacts, and for a .dsc input the source files beside it.
# REBUILDER_MIRROR is the archive's base URL (the runner sets it); it is only
# needed for a .buildinfo input, to fetch the .dsc and its files from the pool
# (pool/$REBUILDER_COMPONENT, default main). REBUILDER_ARCH picks the build:
# "all" = arch-indep only (-A), another arch = arch-dep only (-B); without it,
# the .buildinfo's Architecture field decides, and a .dsc builds both (-b).
#
# It builds in a fresh temporary directory and copies only what it built from
# there: never a file of the working directory, where the expected files are.
# Needs dpkg-dev, a C compiler, make and curl.
set -eu

die() { echo "debian-from-source: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 <abs path of .buildinfo or .dsc>"
input=$1
[ -f "$input" ] || die "no such input: $input"
outdir=${REBUILDERD_OUTDIR:?REBUILDERD_OUTDIR is not set}
[ -d "$outdir" ] || die "REBUILDERD_OUTDIR is not a directory: $outdir"

# The fixture's "broken" package builds only for its original upload: a rebuild
# must never inherit that switch. dpkg-buildpackage derives SOURCE_DATE_EPOCH
# from the changelog, as the original build did.
unset REBUILDER_FIXTURE_ORIGINAL SOURCE_DATE_EPOCH || true
export LC_ALL=C.UTF-8

work=$(mktemp -d "${TMPDIR:-/tmp}/debian-from-source.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

field() {  # field NAME FILE: the first value of a deb822 field
    sed -n "s/^$1:[[:space:]]*//p" "$2" | head -n 1
}

fetch() {  # fetch URL DEST
    curl --fail --silent --show-error --location --max-time 300 --output "$2" "$1" \
        || die "cannot download $1"
}

case "$input" in
*.dsc)
    dsc=$input
    archs=${REBUILDER_ARCH:-}
    ;;
*.buildinfo)
    : "${REBUILDER_MIRROR:?REBUILDER_MIRROR is not set (the archive base URL)}"
    source_field=$(field Source "$input")
    src=${source_field%% *}
    case "$source_field" in
    *"("*) version=$(echo "$source_field" | sed -n 's/.*(\(.*\)).*/\1/p') ;;
    *) version=$(field Version "$input") ;;
    esac
    # a binNMU's buildinfo names the source version in Source:, its own in Version:
    version=${version%+b[0-9]*}
    if [ -z "$src" ] || [ -z "$version" ]; then die "no Source/Version in $input"; fi
    case "$src$version" in
    */* | *..*) die "refusing suspicious source name or version: $src $version" ;;
    esac
    case "$src" in
    lib?*) prefix=$(printf %.4s "$src") ;;
    *) prefix=$(printf %.1s "$src") ;;
    esac
    pool="${REBUILDER_MIRROR%/}/pool/${REBUILDER_COMPONENT:-main}/$prefix/$src"
    dsc="$work/${src}_${version#*:}.dsc"
    fetch "$pool/${dsc##*/}" "$dsc"
    # every file the .dsc names (dpkg-source checks them against the .dsc)
    sed -n '/^Checksums-Sha256:/,/^[^ ]/{/^ /p}' "$dsc" >"$work/files"
    while read -r _sum _size name; do
        case "$name" in */* | .*) die "refusing file name $name in the .dsc" ;; esac
        fetch "$pool/$name" "$work/$name"
    done <"$work/files"
    archs=${REBUILDER_ARCH:-$(field Architecture "$input")}
    ;;
*) die "unknown input type: $input (expected .buildinfo or .dsc)" ;;
esac

# what to build: arch-indep (-A), arch-dep (-B) or both (-b)
indep=no dep=no
for a in $archs; do
    case "$a" in
    source) ;;
    all) indep=yes ;;
    *) dep=yes ;;
    esac
done
case "$indep$dep" in
yesno) flag=-A ;;
noyes) flag=-B ;;
*) flag=-b ;;
esac

dpkg-source --extract "$dsc" "$work/src" >&2 || die "dpkg-source could not unpack $dsc"
(cd "$work/src" && dpkg-buildpackage -us -uc --no-check-builddeps "$flag") >&2 \
    || die "dpkg-buildpackage $flag failed"

found=0
for deb in "$work"/*.deb "$work"/*.udeb; do
    [ -f "$deb" ] || continue
    cp -- "$deb" "$outdir/"
    found=$((found + 1))
done
[ "$found" -gt 0 ] || die "the build produced no .deb"
echo "debian-from-source: rebuilt $found package(s) with dpkg-buildpackage $flag" >&2
