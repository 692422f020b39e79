#!/bin/sh
# rebuilder backend for Arch Linux: rebuild a package file with archlinux-repro, as rebuilderd does.
#
# Contract (rebuilderd-worker's, see docs/backends.md):
#   $1                  absolute path of the group's first package file (.pkg.tar.zst); repro
#                       reads its .BUILDINFO and rebuilds the whole pkgbase (every split package)
#   REBUILDERD_OUTDIR   empty directory; the rebuilt package files must land here
#   cwd                 holds the published package files; stdin is /dev/null
#   killed as a whole process group at the pass's timeout
# Optional environment:
#   REBUILDER_META_DIR  the rebuilt package's .BUILDINFO is copied here as rebuilt.BUILDINFO
#                       (kept with the attempt: the environment the rebuild really used)
#
# Host needs (see docs/archlinux.md):
#   - an Arch Linux host (or container) with archlinux-repro installed (the `repro` command)
#   - root: repro builds in a systemd-nspawn container (systemd >= 242) under /var/lib/repro
#     and escalates with sudo when it is not root; a few GB free there per concurrent build
#   - HTTPS access to an Arch mirror (the bootstrap image and packages), to the Arch Linux
#     Archive (repro installs the exact package versions the .BUILDINFO lists) and to Arch's
#     packaging source repositories (repro fetches the PKGBUILD of the pkgbase and version)
#   - bsdtar (libarchive) for the .BUILDINFO copy (optional)
# repro itself needs curl, gnupg, sudo and util-linux; its configuration (mirrors, archive
# URL) lives in its own files, not in rebuilder's.
set -eu

pkg=${1:?usage: archlinux.sh /abs/path/to/package.pkg.tar.zst}
: "${REBUILDERD_OUTDIR:?REBUILDERD_OUTDIR must name the output directory}"

if ! command -v repro >/dev/null 2>&1; then
    echo "archlinux.sh: repro not found (install archlinux-repro on an Arch Linux host)" >&2
    exit 2
fi

echo "+ repro -o $REBUILDERD_OUTDIR -- $pkg"
repro -o "$REBUILDERD_OUTDIR" -- "$pkg"

rebuilt="$REBUILDERD_OUTDIR/${pkg##*/}"
if [ -n "${REBUILDER_META_DIR:-}" ] && [ -d "$REBUILDER_META_DIR" ] && [ -f "$rebuilt" ] \
    && command -v bsdtar >/dev/null 2>&1; then
    bsdtar -xOf "$rebuilt" .BUILDINFO >"$REBUILDER_META_DIR/rebuilt.BUILDINFO" 2>/dev/null \
        || rm -f "$REBUILDER_META_DIR/rebuilt.BUILDINFO"
fi
