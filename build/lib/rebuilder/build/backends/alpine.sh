#!/bin/sh
# rebuilder backend for Alpine: rebuild an origin's packages with abuild, from the aports
# commit and at the build time their .PKGINFO records, in a fresh Alpine container.
#
# Contract (rebuilderd-worker's, see docs/backends.md and docs/alpine.md):
#   $1                  absolute path of the origin's main .apk (the build input); its
#                       .PKGINFO names the aports commit, the build time and the origin
#   REBUILDERD_OUTDIR   empty directory; the rebuilt .apk files land here
#   cwd                 holds the published .apk files of the group; stdin is /dev/null
#   killed as a whole process group at the pass's timeout
# Set by the runner: REBUILDER_RELEASE (branch), REBUILDER_COMPONENT (repository),
#   REBUILDER_ARCH, REBUILDER_MIRROR (the index directory <mirror>/<branch>/<repo>/<arch>),
#   REBUILDER_ARTIFACTS, REBUILDER_CACHE_DIR (a bare clone of aports is kept there).
# Set by the operator:
#   REBUILDER_APORTS_URL   git URL of aports (required), e.g. https://git.example/aports.git
#   REBUILDER_ALPINE_IMAGE container image (default: alpine:<branch without "v">)
#   REBUILDER_CONTAINER    podman or docker (default: the first one found)
#
# Steps: read .PKGINFO (commit, builddate, origin); export that commit's <repo>/<origin>
# from aports; in the container, point apk at the group's mirror, install alpine-sdk, check
# the published packages with `apk verify` (against the image's /etc/apk/keys), make a
# throwaway packager key, then `abuild -F -r` with SOURCE_DATE_EPOCH=<builddate> and
# ABUILD_LAST_COMMIT=<commit> (abuild keeps both when they are set). A rebuilt package is signed by the throwaway key, which no
# rebuild can match: its signature stream is replaced by the published package's (see
# --graft-signature below), so that a rebuild with identical control and data streams is
# byte for byte the published file, and one that differs anywhere is not.
#
#   alpine.sh --graft-signature PUBLISHED REBUILT OUT
#       OUT = the first gzip stream (the .SIGN.* signature) of PUBLISHED, then REBUILT
#       without its own signature stream. Needs python3 only.
#
# Host needs: podman or docker able to run containers of REBUILDER_ARCH (natively, or
# through qemu-user binfmt), network access to the mirror and to REBUILDER_APORTS_URL, git,
# tar, python3, and disk for one aports checkout of the origin plus its build per
# concurrent build. It cannot run in this project's CI (no container runtime there).
set -eu

die() { echo "alpine.sh: $*" >&2; exit 2; }

graft_signature() {
    [ $# -eq 3 ] || die "usage: alpine.sh --graft-signature PUBLISHED REBUILT OUT"
    python3 - "$@" <<'PY'
import os, sys, zlib

def first_stream(data, what):
    """The first gzip stream of data: (its decompressed head, its length in data)."""
    d = zlib.decompressobj(wbits=31)
    try:
        head = d.decompress(data, 1 << 20)
    except zlib.error as e:
        sys.exit(f"alpine.sh: {what}: not a gzip'd package ({e})")
    if not d.eof:
        sys.exit(f"alpine.sh: {what}: its first gzip stream is not a signature (too long)")
    return head, len(data) - len(d.unused_data)

published, rebuilt, out = sys.argv[1:4]
with open(published, "rb") as f:
    pub = f.read()
with open(rebuilt, "rb") as f:
    new = f.read()
head, end = first_stream(pub, published)
if not head.startswith(b".SIGN."):
    sys.exit(f"alpine.sh: {published}: not a signed package (no .SIGN.* stream first)")
new_head, new_end = first_stream(new, rebuilt)
rest = new[new_end:] if new_head.startswith(b".SIGN.") else new
tmp = out + ".tmp"
with open(tmp, "wb") as f:
    f.write(pub[:end] + rest)
os.replace(tmp, out)
PY
}

if [ "${1:-}" = "--graft-signature" ]; then
    shift
    graft_signature "$@"
    exit 0
fi

[ $# -eq 1 ] || die "usage: alpine.sh /abs/path/to/origin-version.apk"
input=$1
[ -f "$input" ] || die "no such input: $input"
outdir=${REBUILDERD_OUTDIR:?REBUILDERD_OUTDIR must name the output directory}
: "${REBUILDER_APORTS_URL:?set REBUILDER_APORTS_URL to the git URL of aports}"
branch=${REBUILDER_RELEASE:?REBUILDER_RELEASE (the branch) is not set}
repo=${REBUILDER_COMPONENT:?REBUILDER_COMPONENT (the repository) is not set}
arch=${REBUILDER_ARCH:?REBUILDER_ARCH is not set}
mirror=${REBUILDER_MIRROR:?REBUILDER_MIRROR is not set}

runtime=${REBUILDER_CONTAINER:-}
if [ -z "$runtime" ]; then
    for c in podman docker; do
        if command -v "$c" >/dev/null 2>&1; then runtime=$c; break; fi
    done
fi
[ -n "$runtime" ] || die "no container runtime (install podman or docker, or set REBUILDER_CONTAINER)"
for tool in git tar python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done

pkginfo() {  # pkginfo KEY: a value of the input's .PKGINFO
    sed -n "s/^$1 = //p" "$work/PKGINFO" | head -n 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/alpine-rebuild.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
tar -xzOf "$input" .PKGINFO >"$work/PKGINFO" 2>/dev/null || die "no .PKGINFO in $input"
commit=$(pkginfo commit)
builddate=$(pkginfo builddate)
origin=$(pkginfo origin)
case "$commit" in "" | *[!0-9a-f]*) die "no usable commit in .PKGINFO: '$commit'" ;; esac
case "$builddate" in "" | *[!0-9]*) die "no usable builddate in .PKGINFO: '$builddate'" ;; esac
case "$origin" in "" | .* | -* | */* | *[!A-Za-z0-9_+.-]*) die "unusable origin: '$origin'" ;; esac
echo "alpine.sh: $repo/$origin at aports $commit, SOURCE_DATE_EPOCH=$builddate"

# aports at that commit: a bare clone kept in the cache, fetched when the commit is unknown
cache=${REBUILDER_CACHE_DIR:-$work/cache}/alpine-aports.git
if [ ! -d "$cache" ]; then
    mkdir -p "${cache%/*}"
    if ! git clone --quiet --bare --filter=blob:none "$REBUILDER_APORTS_URL" "$cache.$$"; then
        rm -rf "$cache.$$"
        die "cannot clone $REBUILDER_APORTS_URL"
    fi
    mv "$cache.$$" "$cache"
fi
if ! git -C "$cache" cat-file -e "$commit^{commit}" 2>/dev/null; then
    git -C "$cache" fetch --quiet origin '+refs/heads/*:refs/heads/*' \
        || die "cannot fetch $REBUILDER_APORTS_URL"
fi
mkdir -p "$work/aports"
git -C "$cache" archive "$commit" "$repo/$origin" | tar -x -C "$work/aports" \
    || die "aports $commit has no $repo/$origin"

# the branch's repositories on the group's mirror: <mirror>/<branch>/<repo>/<arch> -> <branch>
branch_url=${mirror%/*}
branch_url=${branch_url%/*}
case "$repo" in
    main) repositories="$branch_url/main" ;;
    community) repositories="$branch_url/main $branch_url/community" ;;
    *) repositories="$branch_url/main $branch_url/community $branch_url/$repo" ;;
esac
image=${REBUILDER_ALPINE_IMAGE:-alpine:${branch#v}}
case "$arch" in
    x86_64) platform=linux/amd64 ;;
    x86) platform=linux/386 ;;
    aarch64) platform=linux/arm64 ;;
    armv7) platform=linux/arm/v7 ;;
    armhf) platform=linux/arm/v6 ;;
    ppc64le | s390x | riscv64) platform=linux/$arch ;;
    loongarch64) platform=linux/loong64 ;;
    *) die "no container platform known for architecture $arch" ;;
esac

# The container gets its inputs as a tar on stdin and returns the packages as a tar on
# stdout: no bind mounts, so no file ownership to fix, with podman or docker, rootless or not.
mkdir -p "$work/in/published" "$work/out"
mv "$work/aports" "$work/in/aports"
for name in ${REBUILDER_ARTIFACTS:-}; do
    if [ -f "$name" ]; then cp -- "$name" "$work/in/published/"; fi
done
cat >"$work/in/build.sh" <<'EOF'
set -eu
exec 3>&1 1>&2  # stdout is the result tar; everything else is the log
: >/etc/apk/repositories
for r in $REPOSITORIES; do echo "$r" >>/etc/apk/repositories; done
apk add --no-cache --quiet alpine-sdk
apk verify /work/published/*.apk
abuild-keygen -a -n -q
cp /root/.abuild/*.rsa.pub /etc/apk/keys/
mkdir -p /work/out
cd "/work/aports/$REPO/$ORIGIN"
REPODEST=/work/out abuild -F -r
tar -C /work/out -cf - . >&3
EOF
tar -C "$work/in" -cf "$work/in.tar" .

echo "+ $runtime run --platform $platform $image (abuild -F -r)"
"$runtime" run --rm -i --platform "$platform" \
    -e "REPOSITORIES=$repositories" -e "REPO=$repo" -e "ORIGIN=$origin" \
    -e "SOURCE_DATE_EPOCH=$builddate" -e "ABUILD_LAST_COMMIT=$commit" \
    "$image" sh -c 'mkdir -p /work && tar -x -C /work && sh /work/build.sh' \
    <"$work/in.tar" >"$work/out.tar" || die "the build in $image failed"
tar -x -C "$work/out" -f "$work/out.tar" || die "the container returned no packages"

found=0
for f in "$work/out/$repo"/*/*.apk; do
    [ -f "$f" ] || continue
    name=${f##*/}
    if [ -f "$work/in/published/$name" ]; then
        graft_signature "$work/in/published/$name" "$f" "$outdir/$name"
    else
        cp -- "$f" "$outdir/$name"  # not published: compared as missing or extra anyway
    fi
    found=$((found + 1))
done
[ "$found" -gt 0 ] || die "abuild produced no packages"
echo "alpine.sh: rebuilt $found package(s) of $origin"
