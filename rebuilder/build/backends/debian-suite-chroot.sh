#!/bin/bash
# debian-suite-chroot.sh: rebuild one Debian source package in a clean chroot of its suite.
#
# Backend contract (same as rebuilderd-worker):
#   debian-suite-chroot.sh <absolute path of the .dsc>
# The working directory holds the .dsc, every file it lists and the published .debs
# (already checksum-verified by the runner). Built .debs go to $REBUILDERD_OUTDIR under the
# archive's file names. Exit 0 when the build completed; non-zero with a message on stderr.
#
# Environment (set by the runner):
#   REBUILDERD_OUTDIR    empty directory for the built .debs (required)
#   REBUILDER_RELEASE    suite, e.g. bookworm; "bookworm-updates" adds that suite on top of
#                        bookworm (required)
#   REBUILDER_ARCH       amd64 (or the host's architecture) -> dpkg-buildpackage -B;
#                        all -> dpkg-buildpackage -A (required)
#   REBUILDER_MIRROR     mirror base URL, the part before /pool/ (required)
#   REBUILDER_CACHE_DIR  where base chroot tarballs are cached (required)
#   REBUILDER_ARTIFACTS  space-separated artifact file names (binNMU detection)
#   REBUILDER_META_DIR   optional: receives installed-packages.txt and the .buildinfo
#   REBUILDER_CHROOT_KEEP   tarballs kept per suite/arch (default 2)
#   REBUILDER_CHROOT_MODE   auto (default), unshare or root
#   REBUILDER_WORK_DIR      where the per-build chroot lives (default: the cwd)
#   REBUILDER_CHROOT_ROOTFS auto (default: overlay, else unpack), overlay or unpack
#   REBUILDER_DEPS_LAYERS   1 (default): build dependencies installed once per resolved set,
#                        as an overlay layer reused by later builds; 0: installed per build
#   REBUILDER_LAYER_MAX_MB  deps layers kept within this size (default 4096)
#   REBUILDER_LAYER_MAX_AGE days a deps layer is kept unused (default 7)
#   REBUILDER_SOURCES_MAX_MB  extracted sources kept within this size (default 1024; 0: none)
#   REBUILDER_RELEASE_MAX_AGE  seconds a fetched Release Date keys the base chroot before it
#                        is fetched again (default 300; 0: every build)
#   REBUILDER_DEFERRED_CLEANUP  1: the caller removes the cwd after its verdict, so the
#                        per-build tree under the cwd is left to it (set by rebuilder's runner)
#
# See docs/backend-suite-chroot.md for the design and the measured figures.
# Single quotes around "$1"/"${Package}" are meant for the inner shell or dpkg-query.
# shellcheck disable=SC2016
set -euo pipefail
umask 022

PROG=debian-suite-chroot
BUILD_UID=1000
BUILD_PARENT=/build/reproducible-path
SAFE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	exit 1
}
# Times are microseconds since the epoch, read and printed without a process: a build's
# preparation is a few hundred commands, and each fork costs most on a loaded machine.
now() { printf -v "$1" '%s' "${EPOCHREALTIME/[.,]/}"; }
# The microseconds $1 as seconds with one decimal.
seconds() {
	local us=$1 sign=
	if ((us < 0)); then sign=- us=$((-us)); fi
	us=$(((us + 50000) / 100000))
	printf '%s%d.%d' "$sign" $((us / 10)) $((us % 10))
}
elapsed() { seconds $(($2 - $1)); }
since() {
	local t
	now t
	elapsed "$1" "$t"
}

# --- validation -------------------------------------------------------------------------

require_env() {
	local name
	for name in "$@"; do
		[ -n "${!name:-}" ] || die "environment variable $name is not set"
	done
}

# Every value below ends up in paths, apt sources or command lines, so reject anything that
# does not look like what Debian itself allows.
validate_inputs() {
	[[ $REBUILDER_RELEASE =~ ^[a-z][a-z0-9.]*(-[a-z0-9.]+)*$ ]] ||
		die "REBUILDER_RELEASE '$REBUILDER_RELEASE' is not a Debian suite name"
	[[ $REBUILDER_ARCH =~ ^[a-z0-9][a-z0-9-]*$ ]] ||
		die "REBUILDER_ARCH '$REBUILDER_ARCH' is not a Debian architecture name"
	[[ $REBUILDER_MIRROR =~ ^(https?|file)://[^[:space:]\"\'\;\`\$\\]+$ ]] ||
		die "REBUILDER_MIRROR '$REBUILDER_MIRROR' is not an http(s) or file URL"
	[[ ${REBUILDER_CHROOT_KEEP:-2} =~ ^[1-9][0-9]*$ ]] ||
		die "REBUILDER_CHROOT_KEEP must be a positive integer"
	[[ ${REBUILDER_DEPS_LAYERS:-1} =~ ^[01]$ ]] || die "REBUILDER_DEPS_LAYERS must be 0 or 1"
	[[ ${REBUILDER_LAYER_MAX_MB:-4096} =~ ^[0-9]+$ ]] ||
		die "REBUILDER_LAYER_MAX_MB must be a whole number of megabytes"
	[[ ${REBUILDER_LAYER_MAX_AGE:-7} =~ ^[0-9]+$ ]] ||
		die "REBUILDER_LAYER_MAX_AGE must be a whole number of days"
	[[ ${REBUILDER_SOURCES_MAX_MB:-1024} =~ ^[0-9]{1,9}$ ]] ||
		die "REBUILDER_SOURCES_MAX_MB must be a whole number of megabytes"
	[[ ${REBUILDER_RELEASE_MAX_AGE:-300} =~ ^[0-9]{1,9}$ ]] ||
		die "REBUILDER_RELEASE_MAX_AGE must be a whole number of seconds"
	[ -d "$REBUILDERD_OUTDIR" ] || die "REBUILDERD_OUTDIR $REBUILDERD_OUTDIR is not a directory"
	if [ -n "${REBUILDER_META_DIR:-}" ]; then
		mkdir -p -- "$REBUILDER_META_DIR" || die "cannot create REBUILDER_META_DIR"
	fi
}

# Prints one field of a deb822 file (single-line fields only: Source, Version, Format).
dsc_field() {
	awk -v f="$2" '
		/^-----BEGIN PGP SIGNATURE/ { exit }
		index($0, f ":") == 1 { sub("^[^:]*:[ \t]*", ""); sub("[ \t\r]+$", ""); print; exit }
	' "$1"
}

# Prints the file names the .dsc lists in Checksums-Sha256 (falling back to Files).
dsc_files() {
	awk '
		/^-----BEGIN PGP SIGNATURE/ { exit }
		/^[^ \t]/ { sect = $0; sub(":.*", "", sect); next }
		sect == "Checksums-Sha256" && NF == 3 { sha[++n] = $3 }
		sect == "Files" && NF == 3 { md[++m] = $3 }
		END { if (n) for (i = 1; i <= n; i++) print sha[i]; else for (i = 1; i <= m; i++) print md[i] }
	' "$1"
}

# Debian's upstream version: drop the epoch and the Debian revision.
upstream_version() {
	local v=$1
	[[ $v == *:* ]] && v=${v#*:}
	[[ $v == *-* ]] && v=${v%-*}
	printf '%s' "$v"
}

# --- base chroot cache ------------------------------------------------------------------

# Suites the chroot's apt sources name: an overlay suite (bookworm-updates, bookworm-backports)
# sits on top of its base suite, as on the buildds.
suites_for() {
	local release=$1 base=${1%%-*}
	if [ "$base" = "$release" ]; then
		printf '%s' "$release"
	else
		printf '%s %s' "$base" "$release"
	fi
}

# The Release file's Date:, as a sortable UTC stamp, in STAMP; it keys the cached tarball so a
# new publication of the suite gets a new base chroot. One fetch serves this mirror's builds of
# the suite for REBUILDER_RELEASE_MAX_AGE seconds (default 300; 0: every build fetches it): a
# pass starts its builds of a suite within minutes of reading the suite's indexes anyway.
release_stamp() {
	local suite=$1 url="$REBUILDER_MIRROR/dists/$1/Release" body date now_s at seen mirror
	local memo="$CACHE/$1.release" max=${REBUILDER_RELEASE_MAX_AGE:-300}
	printf -v now_s '%(%s)T' -1
	if [ "$max" -gt 0 ] && [ -f "$memo" ] && read -r at seen mirror <"$memo" &&
		[[ $at =~ ^[0-9]+$ && $seen =~ ^[0-9]{8}T[0-9]{6}Z$ ]] &&
		[ "$mirror" = "$REBUILDER_MIRROR" ] && ((now_s >= at && now_s - at < max)); then
		STAMP=$seen
		return 0
	fi
	body=$(curl -fsSL --max-time 60 --retry 3 --retry-delay 2 "$url" 2>&1) ||
		die "cannot fetch the suite's Release file $url: ${body##*$'\n'}"
	date=$(printf '%s\n' "$body" | sed -n 's/^Date:[[:space:]]*//p' | head -n1)
	[ -n "$date" ] || die "Release file $url has no Date: field"
	STAMP=$(date -u -d "$date" +%Y%m%dT%H%M%SZ 2>/dev/null) ||
		die "Release file $url has a bad Date: '$date'"
	write_memo "$memo" "$now_s $STAMP $REBUILDER_MIRROR"
}

# Picks the namespace mode: unshare when this user can create the namespaces, else root
# (plain chroot with mounts undone by a trap).
choose_mode() {
	local want=${REBUILDER_CHROOT_MODE:-auto}
	case $want in
	unshare | root | auto) ;;
	*) die "REBUILDER_CHROOT_MODE must be auto, unshare or root, not '$want'" ;;
	esac
	if [ "$want" = root ]; then
		[ "$EUID" -eq 0 ] || die "REBUILDER_CHROOT_MODE=root needs root"
		MODE=root
	elif unshare_works; then
		MODE=unshare
	elif [ "$want" = unshare ]; then
		die "unshare mode impossible here: $(unshare_probe_error)"
	elif [ "$EUID" -eq 0 ]; then
		MODE=root
		log "namespaces unavailable ($(unshare_probe_error)); using root mode"
	else
		die "cannot build as non-root without user namespaces: $(unshare_probe_error)." \
			"Give this user /etc/subuid and /etc/subgid ranges or run as root"
	fi
}

unshare_cmd() {
	if [ "$EUID" -eq 0 ]; then
		UNSHARE=(unshare --mount --pid --uts --ipc --fork --kill-child --propagation private)
	else
		UNSHARE=(unshare --user --map-auto --map-root-user --mount --pid --uts --ipc --fork
			--kill-child --propagation private)
	fi
}

unshare_works() { unshare_cmd && "${UNSHARE[@]}" true 2>/dev/null; }
unshare_probe_error() { unshare_cmd && "${UNSHARE[@]}" true 2>&1 | tail -n1; }

# Builds the base tarball with mmdebstrap. Called with the cache lock held.
create_base() {
	local tarball=$1 arch=$2 suites=$3 tmpdir tmp suite src=()
	for suite in $suites; do
		src+=("deb $REBUILDER_MIRROR $suite main")
	done
	tmpdir=$(mktemp -d "$CACHE/tmp.$BASE_PREFIX.XXXXXX")
	CLEAN_TMP=$tmpdir
	tmp="$tmpdir/base.tar.zst"
	local mmmode=$MODE
	log "creating base chroot $(basename "$tarball") with mmdebstrap --mode=$mmmode"
	local t0
	now t0
	# apt lists stay in the tarball so the per-build apt-get update only fetches what changed.
	if ! TMPDIR=$tmpdir mmdebstrap --mode="$mmmode" --variant=buildd --architectures="$arch" \
		--include=fakeroot --components=main --skip=cleanup/apt/lists \
		--aptopt='APT::Install-Recommends "false"' --aptopt='Acquire::Languages "none"' \
		--dpkgopt='force-unsafe-io' \
		"${suites%% *}" "$tmp" "${src[@]}" </dev/null >&2; then
		rm -rf -- "$tmpdir"
		die "mmdebstrap failed to create the base chroot for $suites/$arch (see the log above)"
	fi
	mv -f -- "$tmp" "$tarball"
	rm -rf -- "$tmpdir"
	CLEAN_TMP=
	log "created base chroot in $(since "$t0") s"
}

# Keeps the newest $REBUILDER_CHROOT_KEEP tarballs of this suite/arch. Builds that already
# opened an evicted tarball keep reading it: they hold a file descriptor. An unpacked tree
# goes with its tarball, but only when no build holds it (a shared flock): it is renamed to
# trash.* at once and removed at the end of this build, off the other builds' way.
evict_old() {
	local prefix=$1 keep=${REBUILDER_CHROOT_KEEP:-2} f tree
	find "$CACHE" -maxdepth 1 -name "${prefix}_*.tar.zst" -printf '%f\n' | sort -r |
		tail -n +"$((keep + 1))" | while read -r f; do
		log "evicting old base chroot $f"
		rm -f -- "$CACHE/$f"
	done
	find "$CACHE" -maxdepth 1 -name "${prefix}_*.tree" -printf '%f\n' | while read -r f; do
		[ -e "$CACHE/${f%.tree}.tar.zst" ] && continue
		tree="$CACHE/$f"
		if flock -n -x "$tree" mv -- "$tree" "$(mktemp -u "$CACHE/trash.XXXXXX")"; then
			log "evicting old base tree $f"
		fi
	done
}

# The tarball unpacked once into <tarball>.tree, the read-only lower layer of every build's
# overlay. Called with the cache lock held; the rename makes a tree whole or absent.
ensure_tree() {
	local tarball=$1 tmpdir
	TREE="${tarball%.tar.zst}.tree"
	[ -d "$TREE" ] && return 0
	tmpdir=$(mktemp -d "$CACHE/tmp.$BASE_PREFIX.XXXXXX")
	CLEAN_TMP=$tmpdir
	local t0
	now t0
	mkdir "$tmpdir/root"
	# Device nodes come from setup_dev: tar cannot mknod inside a user namespace.
	local untar=(tar -x -C "$tmpdir/root" --numeric-owner --same-owner -p --exclude='./dev/*')
	if [ "$EUID" -ne 0 ]; then
		unshare_cmd
		untar=("${UNSHARE[@]}" -- "${untar[@]}")
	fi
	zstd -dc <"$tarball" | "${untar[@]}" || die "cannot unpack the base chroot tarball"
	# apt's package caches, built once here rather than by every build's first apt call
	local gen=(chroot "$tmpdir/root" /usr/bin/env -i PATH="$SAFE_PATH" apt-cache gencaches)
	if [ "$EUID" -ne 0 ]; then gen=("${UNSHARE[@]}" -- "${gen[@]}"); fi
	"${gen[@]}" >/dev/null 2>&1 || log "note: apt-cache gencaches failed in the base tree"
	mv -- "$tmpdir/root" "$TREE"
	rm -rf -- "$tmpdir"
	CLEAN_TMP=
	log "unpacked base tree $(basename "$TREE") in $(since "$t0") s"
}

# overlay when REBUILDER_CHROOT_ROOTFS asks for it or (auto) when this kernel has it.
choose_rootfs() {
	local want=${REBUILDER_CHROOT_ROOTFS:-auto}
	case $want in
	overlay | unpack) ROOTFS=$want ;;
	auto) if grep -qw overlay /proc/filesystems 2>/dev/null; then ROOTFS=overlay; else ROOTFS=unpack; fi ;;
	*) die "REBUILDER_CHROOT_ROOTFS must be auto, overlay or unpack, not '$want'" ;;
	esac
}

# The cache's sweep (eviction of old tarballs, trees, layers and kept sources, removal of what
# was renamed away) runs in the first build of each minute, not in every one: a pass runs its
# builds back to back, and the sweep's dozen processes weighed on each of them. Status 0 when
# this build sweeps; the time is noted at once, so builds side by side do not all sweep.
sweep_due() {
	local memo="$CACHE/swept" at now_s
	printf -v now_s '%(%s)T' -1
	if read -r at 2>/dev/null <"$memo" && [[ $at =~ ^[0-9]{1,12}$ ]] &&
		((now_s >= at && now_s - at < 60)); then
		return 1
	fi
	write_memo "$memo" "$now_s"
}

# Replaces the small file $1 with the line $2 in one rename (whole or not at all); one that
# cannot be written is only done again next time.
write_memo() {
	local tmp
	tmp=$(mktemp "$1.XXXXXX" 2>/dev/null) || return 0
	if ! { printf '%s\n' "$2" >"$tmp" && mv -f -- "$tmp" "$1"; }; then rm -f -- "$tmp"; fi
}

# Ensures the base tarball exists and opens it on fd 8, all under an exclusive lock so two
# builds side by side create it once and eviction never removes a tarball before it is open.
open_base() {
	local arch=$1 suites=$2 last stamp prefix tarball
	CACHE="$REBUILDER_CACHE_DIR/debian-suite-chroot"
	mkdir -p -- "$CACHE" || die "cannot create cache directory $CACHE"
	SWEEP=0
	if sweep_due; then SWEEP=1; fi
	last=${suites##* }
	release_stamp "$last"
	stamp=$STAMP
	prefix="${REBUILDER_RELEASE}_${arch}"
	tarball="$CACHE/${prefix}_${stamp}.tar.zst"
	exec 9>"$CACHE/$prefix.lock"
	flock 9
	# Left by a killed creator of this suite/arch; renamed now, removed at the end of this
	# build. Only this prefix's: another suite's or arch's creator may be at work meanwhile,
	# under its own lock.
	BASE_PREFIX=$prefix
	if [ "$SWEEP" = 1 ] || [ ! -s "$tarball" ]; then
		find "$CACHE" -maxdepth 1 -name "tmp.$prefix.*" -exec sh -c \
			'for d; do mv -- "$d" "${d%/tmp.*}/trash.${d##*/tmp.}"; done' sh {} +
	fi
	if [ -s "$tarball" ]; then
		log "reusing base chroot ${tarball##*/}"
		BASE_STATE=reused
	else
		BASE_STATE=created
		create_base "$tarball" "$arch" "$suites"
	fi
	exec 8<"$tarball"
	if [ "$SWEEP" = 1 ] || [ "$BASE_STATE" = created ]; then evict_old "$prefix"; fi
	if [ "$ROOTFS" = overlay ]; then
		ensure_tree "$tarball"
		# Shared while this build uses the tree: eviction takes it exclusively, or skips it.
		exec 7<"$TREE"
		flock -s 7
	fi
	exec 9>&-
	DEBS="$CACHE/debs"
	mkdir -p -- "$DEBS/partial" "$CACHE/layers" "$CACHE/sources"
}

# --- the build, inside the namespaces ---------------------------------------------------

MOUNTS=()
mnt() {
	local target=${*: -1}
	mount "$@" && MOUNTS+=("$target")
}

# Undoes the mounts made since there were $1 of them (all of them without an argument).
umount_all() {
	local i keep=${1:-0}
	for ((i = ${#MOUNTS[@]} - 1; i >= keep; i--)); do
		umount -l -- "${MOUNTS[i]}" 2>/dev/null || true
	done
	MOUNTS=("${MOUNTS[@]:0:keep}")
}

# A minimal /dev: a few host device nodes bound in, a private devpts, no disks.
setup_dev() {
	local root=$1 d
	mnt -t tmpfs -o mode=755,nosuid,size=64k tmpfs "$root/dev"
	for d in null zero full random urandom tty; do
		: >"$root/dev/$d"
		mnt --bind "/dev/$d" "$root/dev/$d"
	done
	ln -s /proc/self/fd "$root/dev/fd"
	ln -s /proc/self/fd/0 "$root/dev/stdin"
	ln -s /proc/self/fd/1 "$root/dev/stdout"
	ln -s /proc/self/fd/2 "$root/dev/stderr"
	mkdir -m 755 "$root/dev/pts"
	mkdir -m 1777 "$root/dev/shm"
	mnt -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$root/dev/pts"
	ln -s pts/ptmx "$root/dev/ptmx"
	mnt -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
}

setup_mounts() {
	local root=$1
	setup_dev "$root"
	mnt -t proc -o nosuid,nodev,noexec proc "$root/proc"
	# /sys is optional: some sandboxes refuse a fresh sysfs, and builds rarely need it.
	mnt -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys" 2>/dev/null ||
		log "note: no /sys in the chroot (sysfs mount refused)"
	mnt -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
}

in_chroot() { chroot "$RB_ROOT" /usr/bin/env -i PATH="$SAFE_PATH" LC_ALL=C.UTF-8 \
	DEBIAN_FRONTEND=noninteractive HOME=/root "$@"; }

# The command prefix that runs "<dir> <command...>" in the chroot as the unprivileged build
# user, in <dir>, with a clean environment (SOURCE_DATE_EPOCH is left to dpkg).
builder_argv() {
	BUILDER=(chroot --userspec="$BUILD_UID:$BUILD_UID" --groups="$BUILD_UID" "$RB_ROOT"
		/usr/bin/env -i PATH="$SAFE_PATH" LC_ALL=C.UTF-8 HOME=/nonexistent USER=builder
		LOGNAME=builder)
	if [ -n "${RB_DEB_BUILD_OPTIONS:-}" ]; then
		BUILDER+=(DEB_BUILD_OPTIONS="$RB_DEB_BUILD_OPTIONS")
	fi
	BUILDER+=(/bin/sh -c 'umask 022; cd "$1" && shift && exec "$@"' sh)
}

as_builder() {
	builder_argv
	"${BUILDER[@]}" "$@"
}

configure_chroot() {
	local root=$RB_ROOT suite
	cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || : >"$root/etc/resolv.conf"
	[ -s "$root/etc/hosts" ] ||
		printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
	: >"$root/etc/apt/sources.list"
	for suite in $RB_SUITES; do
		printf 'deb %s %s main\n' "$RB_MIRROR" "$suite" >>"$root/etc/apt/sources.list"
	done
	printf 'builder:x:%s:%s:rebuilder:/nonexistent:/bin/sh\n' "$BUILD_UID" "$BUILD_UID" \
		>>"$root/etc/passwd"
	printf 'builder:x:%s:\n' "$BUILD_UID" >>"$root/etc/group"
	mkdir -p "$root/build/src" "$root$BUILD_PARENT"
	chown "$BUILD_UID:$BUILD_UID" "$root$BUILD_PARENT"
}

# Copies the .dsc and its files in, readable by the build user.
stage_source() {
	local files=("$RB_DSC") f
	while read -r f; do files+=("$RB_INDIR/$f"); done < <(dsc_files "$RB_DSC")
	cp -t "$RB_ROOT/build/src/" -- "${files[@]}"
	chmod -R a+rX "$RB_ROOT/build/src"
}

# A binNMU's changelog entry exists only in the published binary: debhelper installs it as
# changelog.Debian.<arch>.gz; packages built without debhelper carry it as the first entry of
# changelog.Debian.gz (marked binary-only=yes).
extract_binnmu_entry() {
	local arch=$1 out=$2 members member tarx='dpkg-deb --fsys-tarfile /build/src/binnmu.deb'
	members=$(in_chroot sh -c "$tarx | tar -t")
	if member=$(grep -m1 -E "^\./usr/share/doc/[^/]+/changelog\.Debian\.$arch\.gz$" <<<"$members"); then
		in_chroot sh -c "$tarx"' | tar -xO "$1" | gzip -dc' sh "$member" >"$out"
	elif member=$(grep -m1 -E '^\./usr/share/doc/[^/]+/changelog\.Debian\.gz$' <<<"$members"); then
		in_chroot sh -c "$tarx"' | tar -xO "$1" | gzip -dc' sh "$member" |
			awk 'NR == 1 && !/binary-only=yes/ { exit } { print } /^ -- / { exit }' >"$out"
	fi
	[ -s "$out" ]
}

apply_binnmu() {
	local deb=$1 arch=$2 dir=$3 entry="$RB_ROOT/build/src/binnmu-entry"
	cp -- "$RB_INDIR/$deb" "$RB_ROOT/build/src/binnmu.deb"
	extract_binnmu_entry "$arch" "$entry" ||
		die "binNMU $deb carries no binNMU changelog entry (changelog.Debian.$arch.gz)"
	log "binNMU: prepending the changelog entry from $deb: $(head -n1 "$entry")"
	local changelog="$RB_ROOT$dir/debian/changelog"
	# Exactly one blank line between the binNMU entry and the source's own first entry.
	{
		awk 'NF { for (; n > 0; n--) print ""; print; next } { n++ }' "$entry"
		printf '\n'
		cat -- "$changelog"
	} >"$changelog.new"
	chown "$BUILD_UID:$BUILD_UID" "$changelog.new"
	mv -f -- "$changelog.new" "$changelog"
}

binnmu_artifact() {
	local a version
	for a in ${RB_ARTIFACTS:-}; do
		case $a in *.deb | *.udeb) ;; *) continue ;; esac
		version=${a#*_}
		version=${version%_*}
		if [[ $version =~ \+b[0-9]+$ ]]; then
			printf '%s' "$a"
			return 0
		fi
	done
	return 1
}

inside() {
	# The mounts of unshare mode go with the namespace when this process ends, so unmounting
	# them one by one (a process each) would only delay the verdict; root mode's are the host's.
	if [ "$RB_MODE" != unshare ]; then trap umount_all EXIT; fi
	trap 'exit 143' TERM
	trap 'exit 130' INT
	local t0 t_root t_apt t_deps t_src t_build0 t_build1 bin dir="$BUILD_PARENT/$RB_BUILDDIR"
	now t0
	ROOTS=0 LAYER_STATE=installed T_RESOLVE=0 T_LAYER=0
	# A layer holds the base tree plus exactly the packages apt resolves for this build, so
	# it only fits the tree as it is: not after an apt-get update, not without an overlay.
	if [ "$RB_ROOTFS" = overlay ] && [ -n "$RB_LAYERS" ] && tree_is_current "$RB_TREE"; then
		layered_root
	fi
	if [ "$ROOTS" = 0 ]; then enter_root "$RB_TREE"; fi
	exec 8<&-
	now t_root

	# The base chroot is keyed by its suite's Release Date, so for a single suite its lists and
	# packages are the suite as published now, if they came from this mirror. An overlay
	# suite's base suite can move without changing that key: then update and upgrade.
	if [ "$LAYER_STATE" = installed ]; then
		if ! tree_is_current "$RB_ROOT"; then
			in_chroot apt-get -q -o Acquire::Retries=3 update >&2 ||
				die "apt-get update failed in the chroot"
			in_chroot apt-get -q -y -o Acquire::Retries=3 dist-upgrade >&2 ||
				die "apt-get dist-upgrade failed in the chroot"
		else
			log "base chroot is the suite's current Release: no apt-get update needed"
		fi
	fi
	now t_apt
	if [ "$LAYER_STATE" = installed ]; then install_deps; fi
	now t_deps
	# on a layer, written by the check of the root (the same query)
	if [ -n "${RB_META:-}" ] && [ "$LAYER_STATE" != reused ] && [ "$LAYER_STATE" != created ]; then
		in_chroot dpkg-query -W -f '${binary:Package}\t${Version}\n' >"$RB_META/installed-packages.txt"
	fi
	if ! reuse_source "$dir"; then
		as_builder /build dpkg-source -x "/build/src/${RB_DSC##*/}" "$dir" >&2 ||
			die "dpkg-source -x failed"
		keep_source
	fi
	if bin=$(binnmu_artifact); then
		apply_binnmu "$bin" "$(b=${bin##*_} && printf '%s' "${b%.*}")" "$dir"
	fi
	now t_src

	# No network for the build itself, like on the buildds; loopback stays usable.
	local net=(unshare --net sh -c 'ip link set lo up 2>/dev/null; exec "$@"' sh)
	if ! unshare --net true 2>/dev/null; then
		log "note: cannot unshare the network; the build can reach the network"
		net=()
	fi
	now t_build0
	builder_argv
	"${net[@]}" "${BUILDER[@]}" "$dir" dpkg-buildpackage "$RB_BUILD_FLAG" -us -uc >&2 ||
		die "dpkg-buildpackage $RB_BUILD_FLAG failed"
	now t_build1

	find "$RB_ROOT$BUILD_PARENT" -maxdepth 1 \( -name '*.deb' -o -name '*.udeb' \) \
		-exec cp -t "$RB_OUTDIR" -- {} +
	if [ -n "${RB_META:-}" ]; then
		find "$RB_ROOT$BUILD_PARENT" -maxdepth 1 -name '*.buildinfo' -exec cp -t "$RB_META" -- {} +
	fi
	printf '%s %s %s\n' "$t_build0" "$t_build1" "$LAYER_STATE" >"$RB_ROOT/../build-times"
	local root
	root=$((t_root - t0 - T_RESOLVE - T_LAYER))
	log "timing: root=$(seconds $((root > 0 ? root : 0)))s resolve=$(seconds "$T_RESOLVE")s" \
		"layer=$(seconds "$T_LAYER")s" \
		"apt=$(elapsed "$t_root" "$t_apt")s deps=$(elapsed "$t_apt" "$t_deps")s" \
		"source=$(elapsed "$t_deps" "$t_src")s build=$(elapsed "$t_build0" "$t_build1")s" \
		"($RB_ROOTFS, deps layer $LAYER_STATE)"
}

# --- extracted sources ------------------------------------------------------------------
#
# dpkg-source -x (a perl program: a second on a loaded machine for a small package) writes the
# same files for the same .dsc in the same root, so what it wrote under $BUILD_PARENT is kept
# in sources/<tree>_<key> and copied in by later builds of that source (a retry, the arch:all
# and arch:any builds of one source). The key names the .dsc's bytes (which carry every
# file's checksum, checked by that first dpkg-source), the base tree and the deps layer (the
# root, so dpkg-source itself) and this boot: the copy is not synced, and a crash, which could
# leave it torn, starts a new boot. Only in a root that these name (on a deps layer, or with
# nothing to install); the build works on its own copy.

SOURCE_FORMAT=1

# Sets SOURCE_ENTRY and SOURCE_KEY for the source extracted into $1; status 1 when sources
# are not kept for this build.
source_key() {
	local key boot layer=${LAYER:-}
	SOURCE_ENTRY=
	[ -n "$RB_SOURCES" ] && [ "$LAYER_STATE" != installed ] || return 1
	read -r boot </proc/sys/kernel/random/boot_id || return 1
	key=$({
		printf 'rebuilder extracted source %s\nbase %s\nlayer %s\nboot %s\ndir %s\n' \
			"$SOURCE_FORMAT" "$RB_TREE_NAME" "${layer##*/}" "$boot" "$1"
		sha256sum <"$RB_DSC"
	} | sha256sum)
	SOURCE_KEY=${key%% *}
	SOURCE_ENTRY="$RB_SOURCES/${RB_TREE_NAME}_${SOURCE_KEY:0:24}"
}

# Copies the kept extraction of this source into the root; status 1 when there is none.
reuse_source() {
	local marker
	source_key "$1" && [ -d "$SOURCE_ENTRY" ] || return 1
	# Shared while it is copied: eviction takes it exclusively, or leaves it.
	exec 3<"$SOURCE_ENTRY"
	flock -s 3
	if ! [ "$SOURCE_ENTRY" -ef /proc/self/fd/3 ]; then # evicted before the lock was ours
		exec 3<&-
		return 1
	fi
	if ! { read -r marker 2>/dev/null <"$SOURCE_ENTRY/complete" &&
		[ "$marker" = "$SOURCE_KEY" ]; }; then
		# not whole: moved away (removed once nobody holds it); this build keeps its own
		log "kept source ${SOURCE_ENTRY##*/} is not whole: extracting again"
		mv -T -- "$SOURCE_ENTRY" "$(mktemp -u "$RB_CACHE/trash.XXXXXX")" 2>/dev/null || true
		exec 3<&-
		return 1
	fi
	cp -a -- "$SOURCE_ENTRY/tree/." "$RB_ROOT$BUILD_PARENT/" ||
		die "cannot copy the kept source ${SOURCE_ENTRY##*/} into the build root"
	touch -- "$SOURCE_ENTRY"
	exec 3<&-
	log "dpkg-source -x of this .dsc was done before: kept source ${SOURCE_ENTRY##*/} copied in"
}

# Keeps what dpkg-source -x wrote, unless it is over a quarter of REBUILDER_SOURCES_MAX_MB.
# The copy is renamed into place with its marker: whole or absent. Not keeping it is no error.
keep_source() {
	local tmp size
	[ -n "$SOURCE_ENTRY" ] && [ ! -e "$SOURCE_ENTRY" ] || return 0
	size=$(du -sb -- "$RB_ROOT$BUILD_PARENT" 2>/dev/null | cut -f1) || return 0
	if [[ ! $size =~ ^[0-9]+$ ]] || ((size > (REBUILDER_SOURCES_MAX_MB << 20) / 4)); then
		return 0
	fi
	tmp=$(mktemp -d "$RB_SOURCES/tmp.XXXXXX") || return 0
	# held while it is written: the cleanup of killed creators' leftovers skips it
	exec 4<"$tmp"
	flock 4
	if cp -a -- "$RB_ROOT$BUILD_PARENT/." "$tmp/tree" && printf '%s\n' "$size" >"$tmp/size" &&
		printf '%s\n' "$SOURCE_KEY" >"$tmp/complete" &&
		mv -T -- "$tmp" "$SOURCE_ENTRY" 2>/dev/null; then
		log "kept the extracted source as ${SOURCE_ENTRY##*/} for later builds"
	else
		rm -rf -- "$tmp"
	fi
	exec 4<&-
}

# The build's root on a deps layer (see below). Resolving the build dependencies costs apt
# seconds of CPU (a .dsc given to apt-get makes it rebuild its package cache), so a
# resolution is kept too, keyed by what it depends on: the base tree (its package lists,
# status and apt configuration), -A/-B and the .dsc's Build-Depends/-Conflicts fields.
# Sets ROOTS and LAYER_STATE (reused, created, none: nothing to install; or installed when
# the overlay was refused and apt-get build-dep must run in the unpacked root).
layered_root() {
	local key rfile deps="$RB_ROOT.deps" t tmp
	now t
	key=$({
		printf 'rebuilder build-dep resolution %s\nbase %s\nflag %s\n' "$LAYER_FORMAT" \
			"${RB_TREE##*/}" "$RB_DEP_FLAG"
		dsc_dep_fields "$RB_DSC"
	} | sha256sum)
	rfile="$RB_LAYERS/${RB_TREE_NAME}_${key:0:24}.resolved"
	if [ -f "$rfile" ]; then
		cp -- "$rfile" "$deps"
		touch -- "$rfile"
		log "build dependencies resolved before: $(wc -l <"$deps") packages to install"
	else
		enter_root "$RB_TREE"
		[ "$RB_ROOTFS" = overlay ] || return 0
		resolve_deps >"$deps"
		# a name of its own: $$ is the same in every build's PID namespace
		tmp=$(mktemp "$rfile.XXXXXX")
		cp -- "$deps" "$tmp"
		mv -f -- "$tmp" "$rfile"
	fi
	now T_RESOLVE
	T_RESOLVE=$((T_RESOLVE - t))
	now t
	if [ ! -s "$deps" ]; then
		LAYER_STATE=none
		if [ "$ROOTS" = 0 ]; then enter_root "$RB_TREE"; fi
	else
		use_layer "$deps" || return 0
		# A fresh root on the layer: nothing of the resolving root's changes is carried on.
		umount_all
		enter_root "$LAYER/root:$RB_TREE"
		if [ "$RB_ROOTFS" != overlay ]; then
			LAYER_STATE=installed
			return 0
		fi
		if ! check_installed "$deps" "${RB_META:+$RB_META/installed-packages.txt}"; then
			discard_layer
			die "the build root does not hold the resolved build dependencies:" \
				"deps layer $(basename "$LAYER") moved away"
		fi
	fi
	now T_LAYER
	T_LAYER=$((T_LAYER - t))
}

# The .dsc's fields that decide what apt-get build-dep installs, as written (and its
# Architecture, in case apt reads it).
dsc_dep_fields() {
	awk '
		/^-----BEGIN PGP SIGNATURE/ { exit }
		/^[^ \t]/ {
			f = tolower($0)
			sub(/:.*/, "", f)
			keep = f ~ /^(architecture|build-(depends|conflicts)(-arch|-indep)?)$/
		}
		keep { print }
	' "$1"
}

# Mounts the build's root on $RB_ROOT over the lower dirs $1 (overlay) and makes it ready for
# apt and the build: mounts, the shared .deb cache, apt sources, the build user, the source.
# A second root (on a layer, after resolving in the first) gets its own, empty upper dir.
enter_root() {
	ROOTS=$((ROOTS + 1))
	make_root "$1" ".$ROOTS"
	setup_mounts "$RB_ROOT"
	bind_debs
	configure_chroot
	stage_source
}

# man-db's index is never used in a throwaway chroot; skipping it saves seconds per install.
no_man_db() {
	echo 'man-db man-db/auto-update boolean false' | in_chroot debconf-set-selections 2>/dev/null ||
		true
}

# An overlay of the lower dirs $1 with upper dir $2 and work dir $3 on $4. volatile: nothing
# mounted here needs to survive a crash (a layer is synced before its marker is written), and
# without it the unmount flushes all the build wrote (seconds on a loaded disk).
mount_overlay() {
	local opts="lowerdir=$1,upperdir=$2,workdir=$3"
	mnt -t overlay overlay -o "$opts,volatile" "$4" 2>/dev/null ||
		mnt -t overlay overlay -o "$opts" "$4"
}

# Build dependencies come from a cache shared by every build of this host (apt locks it).
bind_debs() {
	mkdir -p "$RB_ROOT/var/cache/rebuilder-debs"
	mnt --bind "$RB_DEBS" "$RB_ROOT/var/cache/rebuilder-debs"
}

DEBS_OPTS=(-o Dir::Cache::Archives=/var/cache/rebuilder-debs/ -o Acquire::Retries=3)

# Downloads what apt-get build-dep needs into the shared cache. apt fails at once on a lock
# another build holds, so downloads queue on flock first; only what is missing is fetched.
download_deps() {
	in_chroot flock /var/cache/rebuilder-debs/.download.lock \
		apt-get -q -y "${DEBS_OPTS[@]}" --download-only build-dep \
		"$RB_DEP_FLAG" "/build/src/${RB_DSC##*/}" >&2 ||
		die "cannot download the build dependencies"
}

# The install reads files that are complete in the shared cache (apt renames them in) and
# must not hold its lock while dpkg runs, or builds side by side would install one after the
# other.
install_deps() {
	no_man_db
	download_deps
	in_chroot apt-get -q -y "${DEBS_OPTS[@]}" -o Debug::NoLocking=true \
		-o APT::Keep-Downloaded-Packages=true build-dep "$RB_DEP_FLAG" \
		"/build/src/${RB_DSC##*/}" >&2 || die "cannot install the build dependencies"
}

# --- build-dependency layers ------------------------------------------------------------
#
# Installing the build dependencies (dpkg unpacking and configuring them) was most of a small
# build's overhead. A layer is the overlay upper dir of a root where exactly the packages
# apt resolves for a build were installed on the base tree; later builds whose resolution
# gives the same set mount it read-only between the tree and their own upper dir.

LAYER_FORMAT=1

# What apt-get build-dep would do in this root, one "name:arch=version" (install) or
# "-name" (removal) a line, sorted: the set a layer is keyed by.
resolve_deps() {
	local out
	out=$(in_chroot apt-get -s -q -o Debug::NoLocking=true build-dep "$RB_DEP_FLAG" \
		"/build/src/${RB_DSC##*/}" 2>&1) || {
		printf '%s\n' "$out" >&2
		die "cannot resolve the build dependencies"
	}
	printf '%s\n' "$out" | awk '
		$1 == "Inst" && $2 !~ /^builddeps:/ {
			v = ""; a = ""
			for (i = 3; i <= NF; i++) {
				if (v == "" && $i ~ /^\(/) v = substr($i, 2)
				if ($i ~ /^\[[^]]+\]\)$/) a = substr($i, 2, length($i) - 3)
			}
			if (v == "" || a == "") { print "unparsed: " $0 > "/dev/stderr"; exit 1 }
			print $2 ":" a "=" v
		}
		$1 == "Remv" { print "-" $2 }
	' | LC_ALL=C sort -u || die "cannot read apt's resolution of the build dependencies"
}

# Exit status 0 when the root holds every "name:arch=version" of the list $1 fully installed
# and none of its "-name" removals: the check that the build sees exactly the resolved set.
# With $2, the same query's list of packages is written there, as installed-packages.txt.
check_installed() {
	local fmt='${db:Status-Abbrev}\t${Package}:${Architecture}=${Version}\t'
	fmt+='${binary:Package}\t${Version}\n'
	in_chroot dpkg-query -W -f "$fmt" |
		awk -F '\t' -v list="$1" -v out="${2:-}" '
		BEGIN {
			while ((getline l < list) > 0) if (l ~ /^-/) gone[substr(l, 2)] = 1; else want[l] = 1
		}
		out != "" { print $3 "\t" $4 > out }
		$1 == "ii " { have[$2] = 1; n = $2; sub(/:.*/, "", n); name[n] = 1; name[$2] = 1 }
		END {
			for (w in want) if (!(w in have)) { print "missing " w > "/dev/stderr"; bad = 1 }
			for (g in gone) if (g in name) { print "not removed " g > "/dev/stderr"; bad = 1 }
			exit bad
		}'
}

# Finds the layer for the resolved set $1, creating it when it is missing or not whole, and
# holds it (a shared flock on fd 6) for this build. Sets LAYER and LAYER_STATE; status 1 when
# no layer can be made (the overlay was refused: the root is the tarball unpacked).
use_layer() {
	local deps=$1 key name specs
	key=$({
		printf 'rebuilder build-dependency layer %s\nbase %s\n' "$LAYER_FORMAT" \
			"${RB_TREE##*/}"
		cat -- "$deps"
	} | sha256sum)
	key=${key%% *}
	name="${RB_TREE_NAME}_${key:0:24}"
	LAYER="$RB_LAYERS/$name"
	exec 5>"$RB_LAYERS/$name.lock"
	flock 5
	LAYER_STATE=reused
	if [ -e "$LAYER" ] && ! layer_whole "$LAYER" "$key" "$deps"; then
		# Renamed at once (a build still using it keeps its mount); removed once unused.
		log "deps layer $name is not whole: rebuilding it"
		mv -T -- "$LAYER" "$(mktemp -u "$RB_CACHE/trash.XXXXXX")" ||
			die "cannot move the broken layer $name away"
	fi
	if [ ! -e "$LAYER" ]; then
		LAYER_STATE=created
		# downloaded in a root with this build's apt sources, on the base tree
		if [ "$ROOTS" = 0 ]; then enter_root "$RB_TREE"; fi
		if [ "$RB_ROOTFS" != overlay ]; then
			LAYER_STATE=installed
			exec 5>&-
			return 1
		fi
		if debs_cached "$deps"; then
			log "every .deb of the set is in the shared cache: nothing to download"
		else
			mapfile -t specs < <(sed 's/^-\(.*\)$/\1-/' -- "$deps")
			in_chroot flock /var/cache/rebuilder-debs/.download.lock \
				apt-get -q -y --no-install-recommends "${DEBS_OPTS[@]}" --download-only install \
				"${specs[@]}" >&2 || die "cannot download the build dependencies"
		fi
		create_layer "$deps" "$key"
	else
		log "reusing deps layer $name ($(wc -l <"$deps") packages)"
	fi
	# Shared while this build uses it: eviction takes it exclusively, or leaves it.
	exec 6<"$LAYER"
	flock -s 6
	touch -- "$LAYER"
	exec 5>&-
}

# Status 0 when the shared cache holds the .deb of every package the set $1 installs, under
# the name apt gives it (name_version_arch.deb, an epoch's colon as %3a): then the download
# step, an apt run of seconds that would fetch nothing, is left out. The install still checks
# each file against the index's hashes, and fetches one that is not right.
debs_cached() {
	local line name arch version
	while read -r line; do
		[[ $line == -* ]] && continue
		name=${line%%:*} arch=${line#*:} version=${line#*=}
		arch=${arch%%=*}
		[ -f "$RB_DEBS/${name}_${version//:/%3a}_${arch}.deb" ] || return 1
	done <"$1"
}

# Moves the layer this build holds (fd 6) away, so the next build creates it again.
discard_layer() {
	exec 5>"$LAYER.lock"
	flock 5
	if [ "$LAYER" -ef /proc/self/fd/6 ]; then
		mv -T -- "$LAYER" "$(mktemp -u "$RB_CACHE/trash.XXXXXX")" || true
	fi
	exec 5>&-
}

# The marker is written last and the directory renamed into place: a layer is whole or absent.
layer_whole() {
	[ -d "$1/root" ] && [ -f "$1/complete" ] && [ "$(cat -- "$1/complete")" = "$2" ] &&
		cmp -s -- "$1/deps" "$3"
}

# Installs the set $1 on the base tree in an overlay whose upper dir becomes the layer.
# Called with the layer's lock held.
create_layer() {
	local deps=$1 key=$2 tmp outer=$RB_ROOT n=${#MOUNTS[@]} specs t0
	now t0
	tmp=$(mktemp -d "$RB_LAYERS/tmp.XXXXXX") || die "cannot create a layer directory"
	# held while it is written: the cleanup of killed creators' leftovers skips it
	exec 4<"$tmp"
	flock 4
	mkdir "$tmp/root" "$tmp/work" "$tmp/mnt"
	mount_overlay "$RB_TREE" "$tmp/root" "$tmp/work" "$tmp/mnt" ||
		die "cannot mount an overlay to create a deps layer"
	RB_ROOT=$tmp/mnt
	setup_mounts "$RB_ROOT"
	bind_debs
	no_man_db
	mapfile -t specs < <(sed 's/^-\(.*\)$/\1-/' -- "$deps")
	in_chroot apt-get -q -y --no-install-recommends "${DEBS_OPTS[@]}" -o Debug::NoLocking=true \
		-o APT::Keep-Downloaded-Packages=true install "${specs[@]}" >&2 ||
		die "cannot install the build dependencies"
	check_installed "$deps" || die "the new deps layer does not hold the resolved set"
	umount_all "$n"
	RB_ROOT=$outer
	rm -rf -- "${tmp:?}/work" "${tmp:?}/mnt"
	cp -- "$deps" "$tmp/deps"
	du -sb -- "$tmp/root" | cut -f1 >"$tmp/size"
	sync -f -- "$tmp/root"
	printf '%s\n' "$key" >"$tmp/complete"
	sync -f -- "$tmp/complete"
	mv -T -- "$tmp" "$LAYER" || die "cannot move the new deps layer into place"
	exec 4<&-
	log "created deps layer $(basename "$LAYER") ($(wc -l <"$deps") packages," \
		"$(($(cat "$LAYER/size") >> 20)) MB) in $(since "$t0") s"
}

# True when the root $1 is the suite as published now: one suite (the base is keyed by its
# Release) and package lists fetched from $RB_MIRROR (apt names list files after the URL; its
# escaping of odd characters is left to the glob).
tree_is_current() {
	local host=${RB_MIRROR#*://}
	host=${host%%[/:]*}
	[[ $RB_SUITES != *" "* ]] &&
		compgen -G "$1/var/lib/apt/lists/${host}*_dists_${RB_SUITES}_main_binary-*_Packages" \
			>/dev/null
}

# The build's root: an overlay with the lower dirs $1 (the cached tree, under a deps layer
# when there is one) read-only below (nothing to copy, and only what the build changed to
# remove), else the tarball unpacked. $2 suffixes the upper and work dirs.
make_root() {
	mkdir -p "$RB_ROOT"
	# the tarball, for the first root only (see inside)
	[ "$RB_ROOTFS" = overlay ] || [ "$ROOTS" = 1 ] || die "no overlay for a second root"
	if [ "$RB_ROOTFS" = overlay ]; then
		mkdir -p "$RB_ROOT.upper$2" "$RB_ROOT.work$2"
		if mount_overlay "$1" "$RB_ROOT.upper$2" "$RB_ROOT.work$2" "$RB_ROOT"; then
			return 0
		fi
		[ "${REBUILDER_CHROOT_ROOTFS:-auto}" = auto ] || die "cannot mount the overlay root"
		log "note: overlay mount refused; unpacking the base chroot instead"
		RB_ROOTFS=unpack
	fi
	# Device nodes come from setup_dev: tar cannot mknod inside a user namespace.
	zstd -dc <&8 | tar -x -C "$RB_ROOT" --numeric-owner --same-owner -p --exclude='./dev/*' ||
		die "cannot unpack the base chroot tarball"
}

# --- outer driver -----------------------------------------------------------------------

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "${CLEAN_TMP:-}" ]; then rm -rf -- "$CLEAN_TMP"; fi
	remove_work
	if [ -n "${CACHE:-}" ] && [ "${SWEEP:-0}" = 1 ]; then
		evict_layers
		# kept sources (see keep_source): a day unused, or beyond REBUILDER_SOURCES_MAX_MB
		evict_lru "$CACHE/sources" "${REBUILDER_SOURCES_MAX_MB:-1024}" 1 "kept source" sources ""
		# Evicted trees and layers, killed creators' leftovers (renamed under a lock); a broken
		# layer may still be mounted by a build that holds it (shared flock): left for later.
		find "$CACHE" -maxdepth 1 -name 'trash.*' -exec sh -c \
			'for d; do flock -n -x "$d" rm -rf --one-file-system -- "$d"; done' sh {} + \
			2>/dev/null || true
		# .debs no build asked for in a month; a build that needs one again downloads it
		find "$CACHE/debs" -maxdepth 1 -name '*.deb' -atime +30 -delete 2>/dev/null || true
	fi
	if [ "$rc" -eq 0 ] && [ -n "${T_BUILD:-}" ]; then timing_line; fi
	exit "$rc"
}

# Bounds the deps layers: a layer not used for REBUILDER_LAYER_MAX_AGE days (default 7) or of
# a base tree that is gone goes, then the least recently used ones until the rest fit in
# REBUILDER_LAYER_MAX_MB (default 4096). Kept resolutions follow the same age and base tree
# rule.
evict_layers() {
	local dir="$CACHE/layers" max_age=${REBUILDER_LAYER_MAX_AGE:-7} trees
	[ -d "$dir" ] || return 0
	trees=$(find "$CACHE" -maxdepth 1 -name '*.tree' -printf '%f\n')
	find "$dir" -maxdepth 1 \( -name '*.resolved.*' -mmin +1 -o \
		-name '*.resolved' -mtime +"$max_age" \) -delete 2>/dev/null || true
	find "$dir" -maxdepth 1 -name '*.resolved' -printf '%f\n' |
		awk -v trees="$trees" 'BEGIN { split(trees, t, "\n"); for (i in t) have[t[i]] = 1 }
			{ b = $0; sub(/_[^_]*$/, "", b); if (!((b ".tree") in have)) print }' |
		while read -r name; do rm -f -- "$dir/$name"; done
	evict_lru "$dir" "${REBUILDER_LAYER_MAX_MB:-4096}" "$max_age" "deps layer" layers locked
}

# Evicts the entries <tree>_<key> of $1 (each a directory with its size in bytes in `size`)
# whose base tree is gone or that were not used for $3 days, then the least recently used
# beyond $2 MB; $4 names one in the log, $5 all. An entry in use (shared flock) is left; so is
# one being created ($6 = locked: under an exclusive flock on <entry>.lock). Creators killed
# mid-way leave tmp.* dirs nobody holds: they go too.
evict_lru() {
	local dir=$1 max_mb=$2 max_age=$3 noun=$4 plural=$5 locked=$6 name mtime size total=0
	local evict now_s
	[ -d "$dir" ] || return 0
	printf -v now_s '%(%s)T' -1
	find "$dir" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %f\n' | sort -rn |
		while read -r mtime name; do
			mtime=${mtime%.*}
			case $name in
			tmp.*)
				[ "$mtime" -lt $((now_s - 60)) ] || continue
				flock -n -x "$dir/$name" mv -T -- "$dir/$name" \
					"$(mktemp -u "$CACHE/trash.XXXXXX")" 2>/dev/null || true
				continue
				;;
			esac
			read -r size 2>/dev/null <"$dir/$name/size" || size=0
			[[ $size =~ ^[0-9]+$ ]] || size=0
			total=$((total + size))
			evict=
			if [ ! -d "$CACHE/${name%_*}.tree" ]; then
				evict="its base tree is gone"
			elif [ "$mtime" -lt $((now_s - max_age * 86400)) ]; then
				evict="unused for $max_age days"
			elif [ "$total" -gt $((max_mb << 20)) ]; then
				evict="the $plural exceed $max_mb MB"
			fi
			[ -n "$evict" ] || continue
			if [ "$locked" = locked ]; then
				flock -n "$dir/$name.lock" flock -n -x "$dir/$name" \
					mv -T -- "$dir/$name" "$(mktemp -u "$CACHE/trash.XXXXXX")" || continue
				rm -f -- "$dir/$name.lock"
			else
				flock -n -x "$dir/$name" \
					mv -T -- "$dir/$name" "$(mktemp -u "$CACHE/trash.XXXXXX")" || continue
			fi
			log "evicted $noun $name: $evict"
		done
}

# The last line on success: every phase this backend spent, the cleanup included.
timing_line() {
	local end b0 b1 layer
	now end
	read -r b0 b1 layer <<<"$T_BUILD"
	log "timing: total=$(elapsed "$T_START" "$end")s prepare=$(elapsed "$T_START" "$b0")s" \
		"build=$(elapsed "$b0" "$b1")s cleanup=$(elapsed "$b1" "$end")s" \
		"overhead=$(seconds $((end - T_START - (b1 - b0))))s" \
		"(base chroot ${BASE_STATE:-?}, ${ROOTFS:-?} root, deps layer ${layer:-?})"
}

remove_work() {
	if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
		# The runner removes its attempt directory (our cwd) after recording the verdict,
		# off the build's critical path; it can only do that for files it may delete.
		if [ "${REBUILDER_DEFERRED_CLEANUP:-}" = 1 ] && [ -z "${REBUILDER_WORK_DIR:-}" ] &&
			[ "$EUID" -eq 0 ]; then
			log "leaving $(basename "$WORK") to the caller's cleanup"
			return 0
		fi
		# --one-file-system: never descend into a mount that outlived the build.
		if [ "$EUID" -eq 0 ]; then
			rm -rf --one-file-system -- "$WORK" 2>/dev/null || true
		else
			# Files owned by subordinate ids: remove them from inside a user namespace.
			unshare --user --map-auto --map-root-user rm -rf --one-file-system -- "$WORK" \
				2>/dev/null || true
		fi
		[ ! -e "$WORK" ] || log "warning: could not remove $WORK"
	fi
}

main() {
	[ $# -eq 1 ] || die "usage: $PROG <absolute path of the .dsc>"
	if [ "$1" = --inside ]; then
		inside
		return
	fi
	local dsc=$1
	now T_START
	[[ $dsc == /* ]] || die "input must be an absolute path, got '$dsc'"
	[[ $dsc == *.dsc ]] || die "input must be a .dsc file, got '$dsc'"
	[ -f "$dsc" ] || die "input $dsc does not exist"
	require_env REBUILDERD_OUTDIR REBUILDER_RELEASE REBUILDER_ARCH REBUILDER_MIRROR \
		REBUILDER_CACHE_DIR
	REBUILDER_MIRROR=${REBUILDER_MIRROR%/}
	validate_inputs
	local cmd
	for cmd in mmdebstrap zstd curl unshare flock chroot; do
		command -v "$cmd" >/dev/null || die "required host tool '$cmd' is not installed"
	done

	local src version native_arch arch build_flag dep_flag f indir=${dsc%/*}
	indir=${indir:-/}
	src=$(dsc_field "$dsc" Source)
	version=$(dsc_field "$dsc" Version)
	[[ $src =~ ^[a-z0-9][a-z0-9+.-]+$ ]] || die "the .dsc has no valid Source: field"
	[[ $version =~ ^[A-Za-z0-9.+~:-]+$ ]] || die "the .dsc has no valid Version: field"
	while read -r f; do
		[[ $f =~ ^[A-Za-z0-9][A-Za-z0-9+.~_-]*$ ]] || die "the .dsc lists a bad file name '$f'"
		[ -f "$indir/$f" ] || die "file $f listed by the .dsc is missing"
	done < <(dsc_files "$dsc")

	native_arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
	if [ "$REBUILDER_ARCH" = all ]; then
		arch=$native_arch build_flag=-A dep_flag=--indep-only
	elif [ "$REBUILDER_ARCH" = "$native_arch" ]; then
		arch=$native_arch build_flag=-B dep_flag=--arch-only
	else
		die "cannot build $REBUILDER_ARCH on a $native_arch host (no cross or emulated builds)"
	fi

	local suites
	suites=$(suites_for "$REBUILDER_RELEASE")
	choose_mode
	choose_rootfs
	trap cleanup EXIT
	trap 'exit 143' TERM
	trap 'exit 130' INT
	open_base "$arch" "$suites"

	WORK=$(mktemp -d "${REBUILDER_WORK_DIR:-$PWD}/.suite-chroot.XXXXXX") ||
		die "cannot create a work directory"
	local builddir
	LAYERS=
	if [ "${REBUILDER_DEPS_LAYERS:-1}" = 1 ]; then LAYERS="$CACHE/layers"; fi
	SOURCES=
	if [ "${REBUILDER_SOURCES_MAX_MB:-1024}" -gt 0 ]; then SOURCES="$CACHE/sources"; fi
	builddir="$src-$(upstream_version "$version")"
	export RB_ROOT="$WORK/root" RB_DSC=$dsc RB_INDIR=$indir RB_SUITES=$suites \
		RB_MIRROR=$REBUILDER_MIRROR RB_OUTDIR=$REBUILDERD_OUTDIR RB_META=${REBUILDER_META_DIR:-} \
		RB_BUILDDIR=$builddir RB_BUILD_FLAG=$build_flag \
		RB_DEP_FLAG=$dep_flag RB_ARTIFACTS=${REBUILDER_ARTIFACTS:-} \
		RB_DEB_BUILD_OPTIONS=${REBUILDER_DEB_BUILD_OPTIONS:-} RB_ROOTFS=$ROOTFS \
		RB_TREE=${TREE:-} RB_DEBS=$DEBS RB_CACHE=$CACHE RB_LAYERS=$LAYERS RB_MODE=$MODE \
		RB_SOURCES=$SOURCES REBUILDER_SOURCES_MAX_MB=${REBUILDER_SOURCES_MAX_MB:-1024}
	RB_TREE_NAME=${RB_TREE##*/}
	export RB_TREE_NAME=${RB_TREE_NAME%.tree}
	log "building $src $version ($build_flag) for $REBUILDER_RELEASE/$arch in $MODE mode"
	local self
	self=$(readlink -f -- "${BASH_SOURCE[0]}")
	if [ "$MODE" = unshare ]; then
		unshare_cmd
		"${UNSHARE[@]}" -- /bin/bash "$self" --inside
	else
		/bin/bash "$self" --inside
	fi
	exec 8<&-
	T_BUILD=$(cat "$WORK/build-times")
	local a missing=0
	for a in ${REBUILDER_ARTIFACTS:-}; do
		[ -e "$REBUILDERD_OUTDIR/$a" ] || {
			log "warning: artifact $a was not produced"
			missing=1
		}
	done
	[ "$missing" -eq 0 ] || log "the build completed but did not produce every artifact"
}

main "$@"
