#!/bin/sh
# Test backend for the Alpine fixture repository: REALLY rebuilds an origin from source.
#
#   alpine-from-aports.sh <absolute path of the origin's main .apk>
#
# The steps of the shipped alpine.sh, with the fixture's tools in place of a container:
# read .PKGINFO (commit, builddate, origin) from the input, export <repo>/<origin> at that
# commit from the aports git repository REBUILDER_TEST_APORTS, build it with
# tests/backends/mini-abuild.py at SOURCE_DATE_EPOCH=<builddate>, then give each rebuilt
# package the published package's signature stream with the shipped
# `alpine.sh --graft-signature`. It builds in a fresh temporary directory and takes only
# the signature stream from the published files in the working directory.
set -eu

die() { echo "alpine-from-aports: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 <abs path of the main .apk>"
input=$1
[ -f "$input" ] || die "no such input: $input"
outdir=${REBUILDERD_OUTDIR:?REBUILDERD_OUTDIR is not set}
aports=${REBUILDER_TEST_APORTS:?REBUILDER_TEST_APORTS is not set}
repo=${REBUILDER_COMPONENT:?REBUILDER_COMPONENT is not set}
here=$(cd "$(dirname "$0")" && pwd)
shipped=$here/../../rebuilder/build/backends/alpine.sh

# A rebuild must never inherit the fixture's "original upload" switch.
unset REBUILDER_FIXTURE_ORIGINAL SOURCE_DATE_EPOCH || true

work=$(mktemp -d "${TMPDIR:-/tmp}/alpine-from-aports.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

tar -xzOf "$input" .PKGINFO >"$work/PKGINFO" 2>/dev/null || die "no .PKGINFO in $input"
field() { sed -n "s/^$1 = //p" "$work/PKGINFO" | head -n 1; }
commit=$(field commit)
builddate=$(field builddate)
origin=$(field origin)
case "$commit" in "" | *[!0-9a-f]*) die "no usable commit: '$commit'" ;; esac
case "$builddate" in "" | *[!0-9]*) die "no usable builddate: '$builddate'" ;; esac
case "$origin" in "" | .* | */* | *[!A-Za-z0-9_+.-]*) die "unusable origin: '$origin'" ;; esac

mkdir "$work/src"
git -C "$aports" archive "$commit" "$repo/$origin" | tar -x -C "$work/src" \
    || die "aports $commit has no $repo/$origin"
SOURCE_DATE_EPOCH=$builddate ABUILD_LAST_COMMIT=$commit CARCH=${REBUILDER_ARCH:-x86_64} \
    python3 "$here/mini-abuild.py" "$work/src/$repo/$origin" "$work/out" \
    || die "mini-abuild failed for $origin"

found=0
for f in "$work/out"/*.apk; do
    [ -f "$f" ] || continue
    name=${f##*/}
    if [ -f "./$name" ]; then
        "$shipped" --graft-signature "./$name" "$f" "$outdir/$name"
    else
        cp -- "$f" "$outdir/$name"
    fi
    found=$((found + 1))
done
[ "$found" -gt 0 ] || die "the build produced no package"
echo "alpine-from-aports: rebuilt $found package(s) of $origin at $commit"
