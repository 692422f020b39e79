#!/bin/sh
# rebuilder backend for Tails: rebuild a release's USB (.img) and ISO images from its signed
# git tag, following Tails' own reproducibility procedure.
#
# Contract (rebuilderd-worker's, see docs/backends.md and docs/tails.md):
#   $1                  absolute path of the published tails-<arch>-<version>.img (the input)
#   REBUILDERD_OUTDIR   empty directory; the rebuilt .img and .iso land here
#   cwd                 holds the published images and, when the mirror has them, their
#                       detached signatures <image>.sig; stdin is /dev/null
#   killed as a whole process group at the pass's timeout (give it hours: build_timeout)
# Set by the runner: REBUILDER_ARCH (amd64), REBUILDER_CACHE_DIR (a bare clone is kept there).
# Set by the operator:
#   REBUILDER_TAILS_GIT      git URL of the Tails repository (required),
#                            e.g. https://git.example/tails/tails.git
#   REBUILDER_TAILS_KEYRING  the Tails signing key, exported (required); the tag and the
#                            published images must carry a good signature by it
#
# The procedure (Tails' "verification of reproducibility" for release managers):
#   TAG = the version with '~' replaced by '-'; `git tag -v TAG` must show a good signature
#   by the keyring's key; `git checkout TAG`; `git submodule update --init`;
#   SOURCE_DATE_EPOCH = the date of the top debian/changelog entry; `rake build`; then
#   `rake vm:halt`. The images appear in the checkout as tails-<arch>-<version>.{img,iso}.
#
# Host needs (Tails' build documentation): Debian 12 or newer; the KVM hypervisor (a CPU
# with virtualization and /dev/kvm); rake, vagrant, vagrant-libvirt, libvirt-daemon-system,
# qemu-system-x86, qemu-utils, dnsmasq-base, ebtables, faketime, jq, pigz, vmdb2, psmisc,
# dpkg-dev and git; the user in the kvm, libvirt and libvirt-qemu groups and allowed to
# use sudo; at least 1.5 GiB of free RAM for the build VM; about 20 GB in $HOME, 5 GB in
# /tmp and 5-20 GB in /var/lib; network access to Tails' and Debian's snapshot archives.
# `rake build` checks most of this itself. It cannot run in this project's CI (no KVM).
set -eu

die() { echo "tails.sh: $*" >&2; exit 2; }

[ $# -eq 1 ] || die "usage: tails.sh /abs/path/to/tails-<arch>-<version>.img"
input=$1
[ -f "$input" ] || die "no such input: $input"
outdir=${REBUILDERD_OUTDIR:?REBUILDERD_OUTDIR must name the output directory}
: "${REBUILDER_TAILS_GIT:?set REBUILDER_TAILS_GIT to the git URL of the Tails repository}"
keyring=${REBUILDER_TAILS_KEYRING:?set REBUILDER_TAILS_KEYRING to the Tails signing key}
[ -f "$keyring" ] || die "no such keyring: $keyring"
arch=${REBUILDER_ARCH:-amd64}
for tool in git gpg rake dpkg-parsechangelog; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (see the host needs above)"
done

base=${input##*/}
version=${base#tails-"$arch"-}
version=${version%.img}
case "$base" in tails-"$arch"-*.img) ;; *) die "not a tails-$arch-<version>.img: $base" ;; esac
case "$version" in "" | *[!0-9a-z~.]* | *..*) die "unusable version: '$version'" ;; esac
tag=$(printf '%s' "$version" | tr '~' '-')
echo "tails.sh: Tails $version ($arch) from tag $tag"

work=$(mktemp -d "${TMPDIR:-/tmp}/tails-rebuild.XXXXXX")
export GNUPGHOME="$work/gnupg"
cleanup() {
    gpgconf --homedir "$GNUPGHOME" --kill all >/dev/null 2>&1 || true
    if [ -d "$work/tails" ]; then (cd "$work/tails" && rake vm:halt >/dev/null 2>&1) || true; fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --import "$keyring" || die "cannot import the keyring $keyring"

# The published images: their detached signatures, when the mirror has them.
for f in "tails-$arch-$version.img" "tails-$arch-$version.iso"; do
    if [ -f "$f" ] && [ -f "$f.sig" ]; then
        gpg --batch --verify "$f.sig" "$f" 2>&1 || die "$f: no good signature by $keyring"
        echo "tails.sh: $f: good signature"
    fi
done

# The sources: a bare clone kept in the cache as a reference, the build in a fresh clone.
cache=${REBUILDER_CACHE_DIR:-$work/cache}/tails.git
if [ ! -d "$cache" ]; then
    mkdir -p "${cache%/*}"
    if ! git clone --quiet --bare "$REBUILDER_TAILS_GIT" "$cache.$$"; then
        rm -rf "$cache.$$"
        die "cannot clone $REBUILDER_TAILS_GIT"
    fi
    mv "$cache.$$" "$cache"
fi
git -C "$cache" fetch --quiet --force "$REBUILDER_TAILS_GIT" '+refs/tags/*:refs/tags/*' \
    || die "cannot fetch the tags of $REBUILDER_TAILS_GIT"
git clone --quiet --reference "$cache" --no-checkout "$REBUILDER_TAILS_GIT" "$work/tails" \
    || die "cannot clone $REBUILDER_TAILS_GIT"
cd "$work/tails"
git tag -v "$tag" || die "tag $tag: no good signature by a key of $keyring"
git -c advice.detachedHead=false checkout --quiet "refs/tags/$tag"
git submodule update --init
SOURCE_DATE_EPOCH=$(date --utc --date="$(dpkg-parsechangelog --show-field=Date)" '+%s')
export SOURCE_DATE_EPOCH
echo "+ SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH rake build"
rake build
rake vm:halt || true

found=0
for ext in img iso; do
    f="tails-$arch-$version.$ext"
    if [ -f "$f" ]; then
        cp -- "$f" "$outdir/$f"
        found=$((found + 1))
    fi
done
[ "$found" -gt 0 ] || die "rake build produced no tails-$arch-$version image"
echo "tails.sh: rebuilt $found image(s)"
