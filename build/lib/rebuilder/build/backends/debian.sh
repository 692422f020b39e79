#!/bin/sh
# rebuilder backend for Debian: rebuild a .buildinfo with debrebuild, as rebuilderd does.
#
# Contract (rebuilderd-worker's, see docs/backends.md):
#   $1                  absolute path of the .buildinfo to reproduce
#   REBUILDERD_OUTDIR   empty directory; the rebuilt .deb files must land here
#   cwd                 holds the published artifacts; stdin is /dev/null
#   killed as a whole process group at the pass's timeout
# Optional environment:
#   REBUILDER_CACHE_DIR passed as --cache=DIR to debrebuild versions that have the option
#   REBUILDER_META_DIR  the rebuilt .buildinfo is copied here (kept with the attempt)
#
# Host needs:
#   - devscripts (debrebuild) with the Perl modules it loads, from devscripts' Recommends:
#     libstring-shellquote-perl, libdpkg-perl, libwww-perl, liburi-perl, libdistro-info-perl
#   - sbuild and mmdebstrap: --builder=sbuild+unshare makes a chroot with mmdebstrap and
#     builds in it with sbuild's unshare mode, without root and without any setup
#   - uidmap (newuidmap/newgidmap) and subordinate id ranges in /etc/subuid and /etc/subgid
#     for the user that runs the pass; unprivileged user namespaces enabled
#     (on kernels before 5.10.1: sysctl kernel.unprivileged_userns_clone=1)
#   - HTTP access to Debian's snapshot service: debrebuild resolves the exact
#     Installed-Build-Depends of the .buildinfo there (it does not use REBUILDER_MIRROR)
#   - disk for one chroot and one build tree per concurrent build (under TMPDIR)
#
# Note: debrebuild's option is --buildresult. Its --help says --buildresults, which its
# Getopt::Long (no_auto_abbrev) only warns about and ignores: the results would land in ./
set -eu

buildinfo=${1:?usage: debian.sh /abs/path/to/package.buildinfo}
: "${REBUILDERD_OUTDIR:?REBUILDERD_OUTDIR must name the output directory}"

for tool in debrebuild sbuild mmdebstrap newuidmap; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "debian.sh: $tool not found (install devscripts, sbuild, mmdebstrap, uidmap)" >&2
        exit 2
    fi
done

# A missing Perl module makes debrebuild die at start: say so before any work is done.
if ! help=$(debrebuild --help 2>&1); then
    printf '%s\n' "$help" >&2
    echo "debian.sh: debrebuild does not start (install the Perl modules devscripts recommends)" >&2
    exit 2
fi

set -- --buildresult="$REBUILDERD_OUTDIR" --builder=sbuild+unshare
case $help in
    *--cache*)
        if [ -n "${REBUILDER_CACHE_DIR:-}" ]; then
            mkdir -p "$REBUILDER_CACHE_DIR"
            set -- "$@" --cache="$REBUILDER_CACHE_DIR"
        fi
        ;;
esac

echo "+ debrebuild $* -- $buildinfo"
debrebuild "$@" -- "$buildinfo"

# The rebuilt .buildinfo records the environment actually used: keep it with the attempt.
if [ -n "${REBUILDER_META_DIR:-}" ] && [ -d "$REBUILDER_META_DIR" ]; then
    for f in "$REBUILDERD_OUTDIR"/*.buildinfo; do
        if [ -f "$f" ]; then
            cp "$f" "$REBUILDER_META_DIR/rebuilt-${f##*/}"
        fi
    done
fi
