"""One build: fetch and verify the inputs, run the backend, compare, explain, attest.

:func:`run_build` implements the backend contract rebuilderd-worker has, so
that existing backend scripts work unchanged: ``<backend> <abs input path>``
in a directory holding the downloaded artifacts, ``REBUILDERD_OUTDIR`` an empty
directory the backend writes its rebuilt files into, stdin ``/dev/null``, its
own process group, killed as a group at the timeout. Each artifact is then
compared byte for byte with the same-named file in ``REBUILDERD_OUTDIR``.

The backend runs under :mod:`rebuilder.build._supervise`, so that it dies with
the pass even when the pass is killed with SIGKILL. A build never raises: any
failure becomes a ``FAIL`` attempt whose log says why; the one exception is
:class:`Abandoned`, raised when the caller's cancel event is set (the pass is
out of time) so that the job stays queued rather than being recorded.

Layout of one attempt (removed when the build ends, whatever happens)::

    <work_dir>/<build_id>-<random>/        the backend's cwd: artifacts, sources, input
        .rebuilder-out/                    REBUILDERD_OUTDIR
        .rebuilder-meta/                   REBUILDER_META_DIR: files kept as meta/<name>
        .rebuilder-input/                  the input, only if its name clashes with an artifact's
        .rebuilder-diffoscope/             diffoscope's scratch space

and what is kept, under ``<results_dir>/<build_id>/``: ``log.gz``,
``diffoscope.txt.gz``, ``diffoscope.html.gz``, ``diffoscope.json.gz``, ``attestation``,
``meta/<name>``. A BAD attempt's causes are classified from the JSON report here
(:mod:`rebuilder.causes`), so the state and the site have them without re-reading it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rebuilder import attest, causes, fetch, results
from rebuilder.build import diffoscope
from rebuilder.build._supervise import LogCap, Outcome, run_supervised
from rebuilder.build.reaper import Reaper
from rebuilder.errors import ChecksumError, NotFoundError, RebuilderError
from rebuilder.model import (
    SOURCE_UNAVAILABLE,
    Artifact,
    ArtifactResult,
    Attempt,
    BuildGroup,
    Job,
    Status,
    utcnow,
)

log = logging.getLogger(__name__)

_RESERVED_PREFIX = ".rebuilder-"
_META_MAX_FILES = 64
_META_MAX_BYTES = 16 << 20
_REASON_NAMES = 5
# A rebuilt file this much larger than the published one is neither hashed nor given to
# diffoscope: the build decides its size (a sparse 50 GB file costs minutes to read), and
# its size alone says that it differs.
_OVERSIZED_RATIO = 2
_OVERSIZED_SLACK = 64 << 20
# Meta files become site URLs and JSON keys: plain names only.
_META_NAME = re.compile(
    r"[A-Za-z0-9_+~-][A-Za-z0-9._+~-]{0,127}"
)  # differing file names listed in a BAD reason


class Abandoned(RebuilderError):
    """The pass ran out of time while this build ran: it was killed and must stay queued."""


@dataclass(frozen=True)
class BuildContext:
    """Everything a build needs besides its job.

    ``results_dir`` is ``<site_dir>/builds``; ``work_dir`` the parent of the
    per-attempt temporary directories; ``timeout`` the backend's wall-clock
    limit in seconds; ``log_limit`` and ``diffoscope_limit`` the bytes of log
    and of diffoscope text kept; ``env`` extra environment for the backend;
    ``sign(job, input, artifact)`` returns an attestation (in-toto link) for
    one verified artifact; ``grace`` is how long a stopped backend gets
    between SIGTERM and SIGKILL; ``reaper``, when given, removes the attempt
    directory after the verdict instead of before it (see :mod:`.reaper`).
    """

    backend: Path
    results_dir: Path
    work_dir: Path
    timeout: float
    log_limit: int
    diffoscope: bool
    diffoscope_timeout: float
    diffoscope_limit: int
    env: Mapping[str, str] = field(default_factory=dict)
    sign: Callable[[Job, Path, Path], bytes] | None = None
    grace: float = 10.0
    missing_tools: str = ""  # non-empty: the backend cannot run here, and this says why
    # told of each build as it starts, with a function that says what it is doing now
    # (for a progress display; not sent to remote workers)
    watch: Callable[[Job, Callable[[], str]], None] | None = None
    reaper: Reaper | None = None


def run_build(job: Job, ctx: BuildContext, cancel: threading.Event | None = None) -> Attempt:
    """Rebuild ``job``'s group and return the attempt; raises only :class:`Abandoned`."""
    build = _Build(job, ctx, cancel)
    started_at, t0 = utcnow(), time.monotonic()
    if ctx.watch is not None:
        ctx.watch(job, build.describe)
    try:
        status, reason, results = build.run()
    except _Fail as e:
        status, reason, results = Status.FAIL, str(e), build.results
    except ChecksumError as e:  # from a path that did not name the file itself
        status, reason, results = Status.FAIL, f"checksum mismatch: {e}", build.results
    except Abandoned:
        raise
    except RebuilderError as e:
        status, reason, results = Status.FAIL, str(e), build.results
    except Exception as e:
        build.tail.append(traceback.format_exc().rstrip())
        status, reason, results = Status.FAIL, f"internal error: {type(e).__name__}: {e}", ()
    finally:  # also for Abandoned and KeyboardInterrupt: the disk is freed in every case
        build.marks["compared"] = time.monotonic()
        build.cleanup()
    duration = time.monotonic() - t0
    phases = build_phases(build.marks, t0, duration, backend_timing(build.output.tail_bytes()))
    build.tail.append(f"verdict: {status.value}{f' ({reason})' if reason else ''}")
    build.tail.append(f"duration: {duration:.3f} s")
    build.tail.append("timing: " + " ".join(f"{k}={v:.1f}s" for k, v in phases.items()))
    files = build.store()
    verdict = causes.classify(build.diff.json) if status is Status.BAD and build.diff else None
    return Attempt(
        build_id=job.build_id,
        version=job.group.version,
        status=status,
        started_at=started_at,
        duration=duration,
        backend=ctx.backend.name,
        reason=reason,
        inputs_digest=job.group.inputs_digest,
        artifacts=results,
        files=files,
        causes=verdict.causes if verdict else (),
        differences=verdict.files if verdict else (),
        phases=phases,
    )


PHASES = ("prepare", "build", "compare", "cleanup")
_TIMING_LINE = re.compile(rb"timing: ([^\n]*)")
_TIMING_FIELD = re.compile(r"([a-z][a-z0-9_+-]*)=([0-9]+(?:\.[0-9]+)?)s\b")


def backend_timing(log_tail: bytes) -> dict[str, float]:
    """The backend's own phases from its last ``timing:`` line, if it prints one.

    >>> backend_timing(b"x\\nsuite: timing: total=9.0s prepare=2.5s build=6.0s cleanup=0.5s\\n")
    {'total': 9.0, 'prepare': 2.5, 'build': 6.0, 'cleanup': 0.5}
    >>> backend_timing(b"no such line")
    {}
    """
    lines = _TIMING_LINE.findall(log_tail)
    if not lines:
        return {}
    text = lines[-1].decode(errors="replace")
    return {k: float(v) for k, v in _TIMING_FIELD.findall(text)}


def build_phases(
    marks: Mapping[str, float], t0: float, total: float, backend: Mapping[str, float]
) -> dict[str, float]:
    """Where one attempt's time went: prepare / build / compare / cleanup, summing to ``total``.

    ``marks`` are the monotonic times the runner reached (``fetched``, ``backend_start``,
    ``backend_end``, ``compared``). The backend's time counts as build unless its own
    timing line splits off ``build`` and ``cleanup``: then the rest of it is prepare.
    >>> build_phases({"fetched": 1, "backend_start": 1, "backend_end": 11, "compared": 12},
    ...              0, 13, {"build": 6.0, "cleanup": 1.0})
    {'prepare': 4.0, 'build': 6.0, 'compare': 1.0, 'cleanup': 2.0}
    """
    end = t0 + total
    start = marks.get("backend_start", marks.get("fetched", end))
    stop = marks.get("backend_end", start)
    compared = max(marks.get("compared", stop), stop)
    ran = stop - start
    build = min(backend.get("build", ran), ran)
    own_cleanup = min(backend.get("cleanup", 0.0), ran - build)
    out = {
        "prepare": (start - t0) + (ran - build - own_cleanup),
        "build": build,
        "compare": compared - stop,
        "cleanup": own_cleanup + (end - compared),
    }
    return {k: round(max(float(v), 0.0), 3) for k, v in out.items()}


def mirror_of(group: BuildGroup) -> str:
    """The mirror base a backend may need: the URLs up to ``/pool/``, else the input's parent.

    >>> from rebuilder.model import Artifact, BuildGroup
    >>> url = "https://mirror.example/debian/pool/main/h/h_1_amd64.deb"
    >>> a = Artifact("h", "1", "amd64", url, "0", 1)
    >>> g = BuildGroup("h", "1", "debian", "bookworm", "main", "amd64",
    ...                "https://mirror.example/bi/h_1_amd64.buildinfo", (a,))
    >>> mirror_of(g)
    'https://mirror.example/debian'
    >>> mirror_of(BuildGroup("p", "1", "archlinux", "core", "core", "x86_64",
    ...                      "https://mirror.example/core/os/x86_64/p-1.pkg.tar.zst", ()))
    'https://mirror.example/core/os/x86_64'
    """
    for url in [a.url for a in group.artifacts] + [group.input_url]:
        if "/pool/" in url:
            return url.split("/pool/", 1)[0]
    return group.input_url.rsplit("/", 1)[0]


def backend_env(job: Job, ctx: BuildContext, outdir: Path, meta_dir: Path) -> dict[str, str]:
    """The backend's environment: ours, the contract's variables, then ``ctx.env``."""
    g = job.group
    env = dict(os.environ)
    env.update(
        REBUILDERD_OUTDIR=str(outdir),
        REBUILDER_DISTRO=g.distro,
        REBUILDER_RELEASE=g.release,
        REBUILDER_COMPONENT=g.component,
        REBUILDER_ARCH=g.architecture,
        REBUILDER_METHOD=g.method,
        REBUILDER_INPUT_URL=g.input_url,
        REBUILDER_MIRROR=mirror_of(g),
        REBUILDER_ARTIFACTS=" ".join(a.filename for a in g.artifacts),
        REBUILDER_META_DIR=str(meta_dir),
    )
    if ctx.reaper is not None:  # the backend may leave its scratch in its cwd to us
        env["REBUILDER_DEFERRED_CLEANUP"] = "1"
    env.update(ctx.env)
    return env


class _Fail(Exception):
    """The build did not complete; the message is the attempt's reason."""


class _Build:
    """The mutable state of one run_build call: its directories and its log."""

    def __init__(self, job: Job, ctx: BuildContext, cancel: threading.Event | None) -> None:
        self.job, self.ctx, self.cancel = job, ctx, cancel
        self.dir: Path | None = None
        self.head: list[str] = []
        self.output = LogCap(ctx.log_limit)
        self.phase = "starting"
        self.tail: list[str] = []
        self.results: tuple[ArtifactResult, ...] = ()
        self.diff: diffoscope.DiffoscopeReport | None = None
        self.attestation: bytes | None = None
        self.meta_data: dict[str, bytes] = {}
        self.redact: list[tuple[bytes, bytes]] = []  # this machine's paths, kept out of the site
        # artifacts whose index publishes no SHA256 (sha256 ""): the digest of what was downloaded
        self.unpublished: dict[str, str] = {}
        self.marks: dict[str, float] = {}  # monotonic times, for the attempt's phases

    # --- the build ----------------------------------------------------------------------------

    def run(self) -> tuple[Status, str, tuple[ArtifactResult, ...]]:
        g, ctx = self.job.group, self.ctx
        self.head.append(
            f"build {self.job.build_id}: {g.name} {g.version} "
            f"({g.distro} {g.release}/{g.component}/{g.architecture}), backend {ctx.backend.name}"
        )
        if not g.artifacts:
            raise _Fail("the build group has no artifacts to verify")
        if ctx.missing_tools:  # checked before any download: the backend could not start
            raise _Fail(ctx.missing_tools)
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(
            tempfile.mkdtemp(prefix=f"{self.job.build_id}-", dir=ctx.work_dir)
        ).resolve()
        self.redact = _redactions(ctx, self.dir)
        outdir, meta_dir = self.dir / ".rebuilder-out", self.dir / ".rebuilder-meta"
        outdir.mkdir()
        meta_dir.mkdir()
        self.phase = "downloading"
        input_path = self._download_all()
        self._check_cancel()
        self.phase = "backend"
        self.marks["fetched"] = time.monotonic()
        outcome = self._run_backend(input_path, outdir, meta_dir)
        self.phase = "comparing"
        self._collect_meta(meta_dir)
        if outcome.how == "cancel":
            raise Abandoned(f"build {self.job.build_id} abandoned: the pass ran out of time")
        if outcome.how == "timeout":
            raise _Fail(f"timeout after {_seconds(ctx.timeout)} s")
        if outcome.how != "exit" or outcome.code is None:
            raise _Fail(f"backend supervision failed: {outcome.detail or outcome.how}")
        if outcome.code != 0:
            raise _Fail(_exit_reason(outcome.code, backend_error(self.output.last_lines())))
        return self._compare(outdir, input_path)

    def describe(self) -> str:
        """What the build is doing now: its phase, or the backend's last line of output."""
        if self.phase == "backend":
            lines = self.output.last_lines(1)
            return lines[0][:200] if lines else "backend started"
        return self.phase

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Abandoned(f"build {self.job.build_id} abandoned: the pass ran out of time")

    def _download_all(self) -> Path:
        assert self.dir is not None
        g = self.job.group
        have: dict[str, Artifact] = {}
        for a in (*g.artifacts, *g.sources):
            name = _safe_name(a.filename, a.url)
            if name in have:
                if have[name].sha256.lower() != a.sha256.lower():
                    raise _Fail(f"two different files named {name} in the build group")
                continue
            self._check_cancel()
            is_source = a in g.sources
            self._download(
                a.url, self.dir / name, name, sha256=a.sha256 or None, size=a.size, source=is_source
            )
            if not a.sha256:
                self.unpublished[name] = fetch.sha256_path(self.dir / name)
            have[name] = a
        self.head.append(f"downloaded {len(have)} file(s)")
        name = _safe_name(_url_name(g.input_url), g.input_url)
        if name in have and have[name].url == g.input_url:
            if g.input_sha256 and have[name].sha256.lower() != g.input_sha256.lower():
                raise _Fail(f"checksum mismatch: {name}")
            return self.dir / name  # e.g. Arch: the input is the first package file
        dest = self.dir / (".rebuilder-input" if name in have else ".") / name
        self._download(g.input_url, dest, name, sha256=g.input_sha256, source=bool(g.sources))
        return dest

    def _download(
        self,
        url: str,
        dest: Path,
        name: str,
        *,
        sha256: str | None,
        size: int | None = None,
        source: bool = False,
    ) -> None:
        """Download one input; ``source``: a file of the source package, whose absence
        from the mirror is the distinct, not-retried FAIL "source unavailable"."""
        try:
            fetch.download(url, dest, sha256=sha256, size=size)
        except NotFoundError as e:
            if source:
                raise _Fail(f"{SOURCE_UNAVAILABLE}: {name} ({e})") from None
            raise _Fail(f"download failed: {e}") from None
        except ChecksumError as e:
            self.head.append(f"{e}")
            raise _Fail(f"checksum mismatch: {name}") from None
        except RebuilderError as e:
            raise _Fail(f"download failed: {e}") from None

    def _run_backend(self, input_path: Path, outdir: Path, meta_dir: Path) -> Outcome:
        assert self.dir is not None
        ctx = self.ctx
        backend = ctx.backend.resolve()
        if not backend.is_file() or not os.access(backend, os.X_OK):
            raise _Fail(f"backend {ctx.backend} is not an executable file")
        env = backend_env(self.job, ctx, outdir, meta_dir)
        self.head.append(f"running: {backend.name} {input_path.relative_to(self.dir)}")
        self.head.append("-" * 72)
        t0 = self.marks["backend_start"] = time.monotonic()
        outcome = run_supervised(
            [str(backend), str(input_path)],
            cwd=str(self.dir),
            env=env,
            timeout=ctx.timeout,
            grace=ctx.grace,
            log=self.output,
            cancel=self.cancel,
        )
        self.tail.append("-" * 72)
        self.marks["backend_end"] = time.monotonic()
        took = self.marks["backend_end"] - t0
        if outcome.how == "exit":
            self.tail.append(f"backend exited with {outcome.code} after {took:.3f} s")
        else:
            self.tail.append(f"backend stopped ({outcome.how}) after {took:.3f} s {outcome.detail}")
        return outcome

    def _compare(
        self, outdir: Path, input_path: Path
    ) -> tuple[Status, str, tuple[ArtifactResult, ...]]:
        results: list[ArtifactResult] = []
        oversized: set[str] = set()
        for a in self.job.group.artifacts:
            rebuilt = outdir / a.filename
            built, note, size = _rebuilt_digest(rebuilt, a.size)
            if note:
                self.tail.append(f"{a.filename}: {note}")
            if size is not None and _oversized(size, a.size):
                oversized.add(a.filename)
            expected = (a.sha256 or self.unpublished.get(a.filename, "")).lower()
            results.append(ArtifactResult(a.name, a.filename, expected, built))
            verdict = (
                "missing" if built is None else "identical" if built == expected else "DIFFERS"
            )
            self.tail.append(f"{a.filename}: {verdict} (published {expected}, rebuilt {built})")
        self.results = tuple(results)
        differ = [r for r in results if r.built_sha256 is not None and not r.identical]
        missing = [r for r in results if r.built_sha256 is None]
        if not differ and not missing:
            self._attest(outdir, input_path)
            return Status.GOOD, "", self.results
        for r in differ:
            if r.filename in oversized:
                self.tail.append(
                    f"{r.filename}: far larger than published, not compared with diffoscope"
                )
        explain = [r for r in differ if r.filename not in oversized]
        if explain and self.ctx.diffoscope:
            self._diffoscope([(self.dir / r.filename, outdir / r.filename) for r in explain])  # type: ignore[operator]
        parts = []
        if differ:
            parts.append("differs: " + _names(differ))
        if missing:
            parts.append("missing: " + _names(missing))
        return Status.BAD, "; ".join(parts), self.results

    def _diffoscope(self, pairs: list[tuple[Path, Path]]) -> None:
        assert self.dir is not None
        self.diff = diffoscope.compare(
            pairs,
            self.dir / ".rebuilder-diffoscope",
            timeout=self.ctx.diffoscope_timeout,
            limit=self.ctx.diffoscope_limit,
            cancel=self.cancel,
        )
        self.tail.extend(self.diff.notes)

    def _attest(self, outdir: Path, input_path: Path) -> None:
        if self.ctx.sign is None:
            return
        try:
            links = [
                self.ctx.sign(self.job, input_path, outdir / a.filename)
                for a in self.job.group.artifacts
            ]
            self.attestation = attest.encode_links(links)
        except Exception as e:  # a signing problem is ours, not the package's: GOOD stands
            log.warning("build %s: attestation failed: %s", self.job.build_id, e)
            self.tail.append(f"attestation failed: {type(e).__name__}: {e}")

    def _collect_meta(self, meta_dir: Path) -> None:
        try:
            entries = sorted(meta_dir.iterdir())
        except OSError:
            return
        for path in entries[:_META_MAX_FILES]:
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode) or not _META_NAME.fullmatch(path.name):
                self.tail.append(f"meta file {path.name!r} skipped: not a plain regular file")
                continue
            if st.st_size > _META_MAX_BYTES:
                self.tail.append(f"meta file {path.name} skipped: {st.st_size} bytes")
                continue
            self.meta_data[path.name] = path.read_bytes()
        if len(entries) > _META_MAX_FILES:
            self.tail.append(f"only the first {_META_MAX_FILES} meta files were kept")

    # --- what is kept -------------------------------------------------------------------------

    def log_bytes(self) -> bytes:
        head = "".join(f"[rebuilder] {line}\n" for line in self.head).encode()
        body = self.output.getvalue()
        if body and not body.endswith(b"\n"):
            body += b"\n"
        tail = "".join(f"[rebuilder] {line}\n" for line in self.tail).encode()
        return self._redacted(head + body + tail)

    def _redacted(self, data: bytes) -> bytes:
        for path, placeholder in self.redact:
            data = data.replace(path, placeholder)
        return data

    def store(self) -> dict[str, str]:
        """Write the attempt's files under ``results_dir/<build_id>/``; never raises."""
        files: dict[str, str] = {}
        bid = str(self.job.build_id)
        out = self.ctx.results_dir / bid
        items: list[tuple[str, str, bytes]] = []
        if self.diff is not None and self.diff.text is not None:
            text = results.gzip_bytes(self._redacted(self.diff.text))
            items.append(("diffoscope", "diffoscope.txt.gz", text))
        if self.diff is not None and self.diff.html is not None:
            html = self._redacted(self.diff.html)
            items.append(("diffoscope_html", "diffoscope.html.gz", results.gzip_bytes(html)))
        if self.diff is not None and self.diff.json is not None:
            json_report = self._redacted(self.diff.json)
            items.append(("diffoscope_json", "diffoscope.json.gz", results.gzip_bytes(json_report)))
        if self.attestation is not None:
            items.append(("attestation", "attestation", self.attestation))
        for name, data in self.meta_data.items():
            items.append((f"meta/{name}", f"meta/{name}", data))
        try:
            out.mkdir(parents=True, exist_ok=True)
            for kind, rel, data in items:
                results.write_atomic(out / rel, data)
                files[kind] = f"{bid}/{rel}"
        except OSError as e:
            log.error("build %s: cannot store its files in %s: %s", bid, out, e)
            self.tail.append(f"cannot store the attempt's files: {e}")
        try:
            results.write_atomic(out / "log.gz", results.gzip_bytes(self.log_bytes()))
            files["log"] = f"{bid}/log.gz"
        except OSError as e:
            log.error("build %s: cannot store its log in %s: %s", bid, out, e)
        return files

    def cleanup(self) -> None:
        if self.dir is not None:
            if self.ctx.reaper is not None:
                self.ctx.reaper.discard(self.dir, remove_tree)
            else:
                remove_tree(self.dir)
            self.dir = None


def _redactions(ctx: BuildContext, build_dir: Path) -> list[tuple[bytes, bytes]]:
    """This machine's absolute paths a log may show, and what the published log says instead.

    Longest first, so that the build directory wins over the work directory holding it.
    """
    paths = {
        str(build_dir): "<build dir>",
        str(ctx.work_dir.resolve()): "<work dir>",
        str(ctx.backend.resolve()): ctx.backend.name,
    }
    for key, value in ctx.env.items():
        if key.endswith("_DIR") and os.path.isabs(value):
            paths.setdefault(value, f"<{key.removeprefix('REBUILDER_').lower().replace('_', ' ')}>")
    pairs = [(k.encode(errors="surrogateescape"), v.encode()) for k, v in paths.items() if k != "/"]
    return sorted(pairs, key=lambda kv: -len(kv[0]))


def _seconds(value: float) -> str:
    """``3600`` for whole seconds, else one decimal: ``timeout after 3600 s``."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _exit_reason(code: int, error: str = "") -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"backend killed by signal {name}" + (f": {error}" if error else "")
    return f"backend exited with {code}" + (f": {error}" if error else "")


# a line that reads like an error: what a FAIL's reason should quote
_ERROR_LINE = re.compile(
    r"(?i)\b(error|fatal|failed|failure|cannot|can't|unable|not found|no such|missing|denied)\b"
    r"|^E: |^dpkg-[a-z]+: error"
)
REASON_LIMIT = 300  # characters of the backend's line in a reason


def backend_error(lines: list[str]) -> str:
    """The backend's own last error line (else its last line), for a FAIL's reason.

    >>> backend_error(["building", "E: Unable to locate package foo", "cleaning up"])
    'E: Unable to locate package foo'
    >>> backend_error(["all went well", "bye"])
    'bye'
    """
    for line in reversed(lines):
        if _ERROR_LINE.search(line) and not line.startswith("[rebuilder]"):
            return _clip(line)
    return _clip(lines[-1]) if lines else ""


def _clip(line: str) -> str:
    return line if len(line) <= REASON_LIMIT else line[: REASON_LIMIT - 1] + "…"


def _names(results: list[ArtifactResult]) -> str:
    names = [r.filename for r in results]
    more = len(names) - _REASON_NAMES
    return ", ".join(names[:_REASON_NAMES]) + (f" and {more} more" if more > 0 else "")


def _url_name(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def _safe_name(name: str, url: str) -> str:
    """``name`` if it is a plain file name (no path, no reserved prefix), else a FAIL."""
    bad = (
        not name
        or name in (".", "..")
        or "/" in name
        or "\0" in name
        or name.startswith(_RESERVED_PREFIX)
        or len(name.encode(errors="surrogateescape")) > 255
    )
    if bad:
        raise _Fail(f"unsafe file name {name!r} in {url!r}")
    return name


def _rebuilt_digest(path: Path, published_size: int) -> tuple[str | None, str, int | None]:
    """The rebuilt file's SHA256 (None: no regular file there), a note for the log, its size.

    A package's own build decides what lands in the output directory, so a FIFO
    (opening it would block for ever), a device, a directory or a symlink is
    never opened: ``lstat`` first, and only a regular file is read. A file far
    larger than the published one is not hashed at all (a sparse 50 GB file would
    take minutes): its digest is "" and it differs. One of another size but within
    that bound is hashed, so that its record says what was built.
    """
    try:
        st = path.lstat()
    except OSError:
        return None, "", None
    if stat.S_ISLNK(st.st_mode):
        return None, "a symlink in the output, not a rebuilt file", None
    if not stat.S_ISREG(st.st_mode):
        return None, f"not a regular file ({_file_kind(st.st_mode)}), not a rebuilt file", None
    if _oversized(st.st_size, published_size):
        note = f"{st.st_size} bytes, the index says {published_size}: differs, not hashed"
        return "", note, st.st_size
    try:  # O_NONBLOCK: should the file have been swapped for a FIFO since the lstat
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        return None, f"cannot open: {e.strerror}", None
    with os.fdopen(fd, "rb") as f:
        now = os.fstat(f.fileno())
        if not stat.S_ISREG(now.st_mode) or now.st_ino != st.st_ino:
            return None, "replaced while being read, not a rebuilt file", None
        return fetch.sha256_file(f), "", st.st_size


def _oversized(size: int, published_size: int) -> bool:
    return size > _OVERSIZED_RATIO * published_size + _OVERSIZED_SLACK


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}  # fmt: skip
    return next((name for test, name in kinds.items() if test(mode)), "not a plain file")


def remove_tree(path: Path) -> None:
    """Remove an attempt dir, also when a backend left read-only directories in it."""

    def fix(func: Callable[..., object], p: str, _exc: object) -> None:
        try:
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
                shutil.rmtree(p, ignore_errors=True)
            else:
                func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=fix)
    if path.exists():
        log.warning("could not remove all of %s", path)
