#!/bin/sh
# The Tails fixture's build system: what `rake build` is to the real Tails repository.
#
#   tails-fixture-rake.sh build | vm:halt
#
# Run in a checkout of the fixture repository (tests/fixtures/tails.py) with
# SOURCE_DATE_EPOCH set, `build` makes tails-amd64-<version>.iso (a tar of config/ and
# debian/changelog, owners and times fixed) and tails-amd64-<version>.img (the same,
# gzip'd) in the checkout, as Tails' build leaves its images there. When the tree has
# config/embed-build-time, the build time goes into the images: a rebuild then differs.
# The pass test puts it on PATH as `rake` for the shipped tails.sh, in place of Tails' own
# Vagrant/libvirt build, which cannot run here.
set -eu

case "${1:-}" in
vm:halt) exit 0 ;;
build) ;;
*) echo "tails-fixture-rake: unknown task '${1:-}'" >&2; exit 1 ;;
esac
: "${SOURCE_DATE_EPOCH:?SOURCE_DATE_EPOCH is not set}"
version=$(dpkg-parsechangelog --show-field=Version)
if [ -f config/embed-build-time ]; then
    date +%s.%N >config/build-time
fi
name=tails-amd64-$version
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    --format=gnu -cf "$name.iso" config debian/changelog
gzip -n -9 <"$name.iso" >"$name.img"
echo "tails-fixture-rake: built $name.iso and $name.img"
