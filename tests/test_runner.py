"""One build, for real: backends are shell scripts run under the supervisor, artifacts are
served over HTTP on 127.0.0.1 or read from local paths, diffoscope is the real one."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import BinaryIO

import pytest

from rebuilder.build import Abandoned, BuildContext, run_build, shipped_backend
from rebuilder.build.backends import SHIPPED, check_backend
from rebuilder.errors import ConfigError
from rebuilder.model import Artifact, BuildGroup, Job, Status

ROOT = Path(__file__).resolve().parent.parent

COPY = 'for f in $REBUILDER_ARTIFACTS; do cp "$f" "$REBUILDERD_OUTDIR/"; done'


# --- fixtures and builders -------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1, and its base URL."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def publish(root: Path, base: str, files: dict[str, bytes]) -> tuple[Artifact, ...]:
    """Write ``files`` under ``root/pool/`` and describe them as artifacts at ``base``."""
    (root / "pool").mkdir(exist_ok=True)
    arts = []
    for name, data in files.items():
        (root / "pool" / name).write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        arts.append(
            Artifact(name.split("_")[0], "1.0-1", "amd64", f"{base}/pool/{name}", sha, len(data))
        )
    return tuple(arts)


def make_job(
    root: Path, base: str, files: dict[str, bytes], build_id: int = 7, **kw: object
) -> Job:
    artifacts = publish(root, base, files)
    (root / "hello_1.0-1_amd64.buildinfo").write_text("Format: 1.0\nSource: hello\n")
    group = BuildGroup(
        "hello", "1.0-1", "debian", "bookworm", "main", "amd64",
        kw.pop("input_url", f"{base}/hello_1.0-1_amd64.buildinfo"),  # type: ignore[arg-type]
        kw.pop("artifacts", artifacts),  # type: ignore[arg-type]
        method="test", **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return Job("test", group, "new", build_id=build_id)


def backend(tmp_path: Path, body: str, name: str = "backend.sh") -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\nset -e\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def context(tmp_path: Path, script: Path, **kw: object) -> BuildContext:
    settings: dict[str, object] = dict(
        backend=script,
        results_dir=tmp_path / "site" / "builds",
        work_dir=tmp_path / "work",
        timeout=30.0,
        log_limit=1 << 20,
        diffoscope=True,
        diffoscope_timeout=60.0,
        diffoscope_limit=1 << 20,
        grace=1.0,
    )
    settings.update(kw)
    return BuildContext(**settings)  # type: ignore[arg-type]


def read_log(ctx: BuildContext, attempt_files: dict[str, str]) -> str:
    return gzip.decompress((ctx.results_dir / attempt_files["log"]).read_bytes()).decode()


def dead(pid: int) -> bool:
    """True once ``pid`` has exited (gone, or a zombie waiting for someone's wait())."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_dead(pid: int, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if dead(pid):
            return True
        time.sleep(0.05)
    return dead(pid)


def wait_file(path: Path, seconds: float = 15.0) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            time.sleep(0.05)
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


HELLO = {"hello_1.0-1_amd64.deb": b"hello world\nline 2\n"}


# --- verdicts --------------------------------------------------------------------------------


def test_good_build_follows_the_backend_contract(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    job = make_job(root, base, {**HELLO, "hello-doc_1.0-1_all.deb": b"docs\n"})
    script = backend(
        tmp_path,
        f"""
        {COPY}
        echo "rebuilt in $(pwd)"
        {{
          echo "input=$1"
          echo "cwd=$(pwd)"
          echo "stdin=$(readlink /proc/$$/fd/0)"
          echo "pgid=$(cut -d' ' -f5 /proc/$$/stat) pid=$$"
          ls -A "$REBUILDERD_OUTDIR" | tr '\\n' ' '; echo
          env | grep -E '^REBUILDER' | sort
        }} > "$REBUILDER_META_DIR/contract.txt"
        """,
    )
    signed: list[tuple[Path, Path]] = []

    def sign(j: Job, inp: Path, art: Path) -> bytes:
        signed.append((inp, art))
        return json.dumps(
            {"product": art.name, "sha": hashlib.sha256(art.read_bytes()).hexdigest()}
        ).encode()

    ctx = context(tmp_path, script, env={"REBUILDER_CACHE_DIR": "/cache"}, sign=sign)
    attempt = run_build(job, ctx)

    assert attempt.status is Status.GOOD, read_log(ctx, attempt.files)
    assert attempt.reason == ""
    assert attempt.build_id == 7 and attempt.version == "1.0-1" and attempt.backend == "backend.sh"
    assert attempt.inputs_digest == job.group.inputs_digest
    assert [(r.filename, r.identical) for r in attempt.artifacts] == [
        ("hello_1.0-1_amd64.deb", True),
        ("hello-doc_1.0-1_all.deb", True),
    ]
    assert all(r.built_sha256 == r.expected_sha256 for r in attempt.artifacts)
    assert attempt.files["log"] == "7/log.gz"
    assert attempt.files["meta/contract.txt"] == "7/meta/contract.txt"
    contract = dict(
        line.split("=", 1)
        for line in (ctx.results_dir / "7/meta/contract.txt").read_text().splitlines()
        if "=" in line and " " not in line.split("=", 1)[0]
    )
    cwd = contract["cwd"]
    assert contract["input"] == f"{cwd}/hello_1.0-1_amd64.buildinfo"
    assert Path(cwd).parent == ctx.work_dir.resolve() and Path(cwd).name.startswith("7-")
    assert contract["stdin"] == "/dev/null"
    assert contract["REBUILDERD_OUTDIR"] == f"{cwd}/.rebuilder-out"
    assert contract["REBUILDER_DISTRO"] == "debian"
    assert contract["REBUILDER_RELEASE"] == "bookworm"
    assert contract["REBUILDER_COMPONENT"] == "main"
    assert contract["REBUILDER_ARCH"] == "amd64"
    assert contract["REBUILDER_METHOD"] == "test"
    assert contract["REBUILDER_INPUT_URL"] == job.group.input_url
    assert contract["REBUILDER_MIRROR"] == base
    assert contract["REBUILDER_ARTIFACTS"] == "hello_1.0-1_amd64.deb hello-doc_1.0-1_all.deb"
    assert contract["REBUILDER_CACHE_DIR"] == "/cache"
    text = (ctx.results_dir / "7/meta/contract.txt").read_text()
    pg_line = next(line for line in text.splitlines() if line.startswith("pgid="))
    pgid, pid = (part.split("=")[1] for part in pg_line.split())
    assert pgid == pid, "the backend must lead its own process group"
    # the attestation hook saw the input and each rebuilt artifact
    assert [a.name for _, a in signed] == ["hello_1.0-1_amd64.deb", "hello-doc_1.0-1_all.deb"]
    links = json.loads((ctx.results_dir / attempt.files["attestation"]).read_bytes())
    assert [link["product"] for link in links] == [a.name for _, a in signed]
    log = read_log(ctx, attempt.files)
    assert "rebuilt in <build dir>" in log and cwd not in log and "verdict: GOOD" in log
    assert "diffoscope" not in attempt.files
    assert list(ctx.work_dir.iterdir()) == [], "the attempt dir must be removed"


def test_bad_build_keeps_a_diffoscope_report(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    script = backend(
        tmp_path, 'printf "hello there\\nline 2\\n" > "$REBUILDERD_OUTDIR/hello_1.0-1_amd64.deb"\n'
    )
    ctx = context(tmp_path, script)
    attempt = run_build(job, ctx)

    assert attempt.status is Status.BAD
    assert attempt.reason == "differs: hello_1.0-1_amd64.deb"
    (result,) = attempt.artifacts
    assert result.built_sha256 == hashlib.sha256(b"hello there\nline 2\n").hexdigest()
    assert result.expected_sha256 == hashlib.sha256(HELLO["hello_1.0-1_amd64.deb"]).hexdigest()
    assert attempt.files["diffoscope"] == "7/diffoscope.txt.gz"
    report = gzip.decompress((ctx.results_dir / attempt.files["diffoscope"]).read_bytes()).decode()
    assert "-hello world" in report and "+hello there" in report
    html = gzip.decompress((ctx.results_dir / attempt.files["diffoscope_html"]).read_bytes())
    assert b"<ins>there</ins>" in html and b"<del>world</del>" in html
    # the JSON report is kept and classified: text changed, no known cause
    assert attempt.files["diffoscope_json"] == "7/diffoscope.json.gz"
    assert attempt.causes == ("unknown",)
    assert attempt.differences == (("hello_1.0-1_amd64.deb", "unknown"),)
    assert "attestation" not in attempt.files
    assert list(ctx.work_dir.iterdir()) == []


def test_several_differing_artifacts_share_one_report(
    tmp_path: Path, served: tuple[Path, str]
) -> None:
    root, base = served
    job = make_job(
        root,
        base,
        {"a_1_all.deb": b"alpha one\n", "b_1_all.deb": b"beta one\n", "c_1_all.deb": b"same\n"},
    )
    script = backend(
        tmp_path,
        """
        echo "alpha two" > "$REBUILDERD_OUTDIR/a_1_all.deb"
        echo "beta two" > "$REBUILDERD_OUTDIR/b_1_all.deb"
        cp c_1_all.deb "$REBUILDERD_OUTDIR/"
        """,
    )
    ctx = context(tmp_path, script)
    attempt = run_build(job, ctx)
    assert attempt.status is Status.BAD
    assert attempt.reason == "differs: a_1_all.deb, b_1_all.deb"
    report = gzip.decompress((ctx.results_dir / attempt.files["diffoscope"]).read_bytes()).decode()
    assert "+alpha two" in report and "+beta two" in report and "c_1_all.deb" not in report


def test_missing_artifact_is_bad(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    job = make_job(root, base, {**HELLO, "hello-doc_1.0-1_all.deb": b"docs\n"})
    script = backend(tmp_path, 'cp hello_1.0-1_amd64.deb "$REBUILDERD_OUTDIR/"\n')
    ctx = context(tmp_path, script)
    attempt = run_build(job, ctx)
    assert attempt.status is Status.BAD
    assert attempt.reason == "missing: hello-doc_1.0-1_all.deb"
    assert [r.built_sha256 is None for r in attempt.artifacts] == [False, True]
    assert "diffoscope" not in attempt.files  # nothing to compare


def test_symlink_in_the_output_is_not_a_rebuild(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    script = backend(tmp_path, 'ln -s "$(pwd)/hello_1.0-1_amd64.deb" "$REBUILDERD_OUTDIR/"\n')
    ctx = context(tmp_path, script)
    attempt = run_build(job, ctx)
    assert attempt.status is Status.BAD and attempt.reason.startswith("missing")
    assert "a symlink in the output" in read_log(ctx, attempt.files)


def test_missing_diffoscope_is_noted_and_still_bad(
    tmp_path: Path, served: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    bindir = tmp_path / "bin"  # a PATH with the shell tools the backend needs, no diffoscope
    bindir.mkdir()
    for tool in ("sh", "echo", "cat", "cp"):
        found = shutil.which(tool)
        assert found
        (bindir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bindir))
    script = backend(tmp_path, 'echo changed > "$REBUILDERD_OUTDIR/hello_1.0-1_amd64.deb"\n')
    ctx = context(tmp_path, script)
    attempt = run_build(job, ctx)
    assert attempt.status is Status.BAD
    assert "diffoscope" not in attempt.files
    assert "diffoscope is not installed" in read_log(ctx, attempt.files)


# --- failures --------------------------------------------------------------------------------


def test_backend_error_is_fail_with_its_log(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    script = backend(tmp_path, 'echo "dpkg-buildpackage: error: oops" >&2\nexit 1\n')
    ctx = context(tmp_path, script)
    attempt = run_build(job, ctx)
    assert attempt.status is Status.FAIL
    # the reason quotes the backend's own last error line
    assert attempt.reason == "backend exited with 1: dpkg-buildpackage: error: oops"
    assert attempt.artifacts == ()
    log = read_log(ctx, attempt.files)
    assert "verdict: FAIL (backend exited with 1: dpkg-buildpackage: error: oops)" in log
    assert list(ctx.work_dir.iterdir()) == []


def test_timeout_kills_the_whole_group(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    pids = tmp_path / "pids"
    script = backend(
        tmp_path,
        f"""
        sleep 300 &
        echo $! > {pids}.child
        setsid sleep 300 &
        echo $! > {pids}.escaped
        trap '' TERM    # ignore SIGTERM: only SIGKILL will do
        echo $$ > {pids}.main
        sleep 300
        """,
    )
    ctx = context(tmp_path, script, timeout=1.0, grace=0.5)
    attempt = run_build(job, ctx)
    assert attempt.status is Status.FAIL
    assert attempt.reason == "timeout after 1 s"
    for suffix in ("main", "child", "escaped"):
        pid = int(Path(f"{pids}.{suffix}").read_text())
        assert wait_dead(pid, 5), f"{suffix} backend process {pid} survived the timeout"
    assert "stopping the process group (timeout)" in read_log(ctx, attempt.files)


def test_leftover_processes_die_with_a_finished_backend(
    tmp_path: Path, served: tuple[Path, str]
) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    pids = tmp_path / "pids"
    script = backend(
        tmp_path,
        f"""
        {COPY}
        sleep 300 > /dev/null 2>&1 &
        echo $! > {pids}.bg
        setsid sleep 300 > /dev/null 2>&1 &
        echo $! > {pids}.daemon
        """,
    )
    ctx = context(tmp_path, script)
    attempt = run_build(job, ctx)
    assert attempt.status is Status.GOOD
    for suffix in ("bg", "daemon"):
        assert wait_dead(int(Path(f"{pids}.{suffix}").read_text()), 5)


def test_checksum_mismatch_fails_before_the_backend_runs(
    tmp_path: Path, served: tuple[Path, str]
) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    (root / "pool" / "hello_1.0-1_amd64.deb").write_bytes(b"hello w0rld\nline 2\n")  # same size
    ran = tmp_path / "ran"
    script = backend(tmp_path, f"touch {ran}\n")
    ctx = context(tmp_path, script)
    attempt = run_build(job, ctx)
    assert attempt.status is Status.FAIL
    assert attempt.reason == "checksum mismatch: hello_1.0-1_amd64.deb"
    assert not ran.exists()
    assert "SHA256" in read_log(ctx, attempt.files)
    assert list(ctx.work_dir.iterdir()) == []


def test_input_checksum_is_checked_when_known(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    job = make_job(root, base, HELLO, input_sha256="0" * 64)
    ctx = context(tmp_path, backend(tmp_path, f"{COPY}\n"))
    attempt = run_build(job, ctx)
    assert attempt.status is Status.FAIL
    assert attempt.reason == "checksum mismatch: hello_1.0-1_amd64.buildinfo"


def test_download_error_is_fail(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    job = make_job(root, base, HELLO, input_url=f"{base}/nowhere.buildinfo")
    ctx = context(tmp_path, backend(tmp_path, "exit 0\n"))
    attempt = run_build(job, ctx)
    assert attempt.status is Status.FAIL
    assert attempt.reason.startswith("download failed:") and "404" in attempt.reason


def test_hostile_file_name_is_refused(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    hostile = Artifact("x", "1", "all", f"{base}/pool/..%2F..%2Fescaped.deb", "0" * 64, 1)
    job = make_job(root, base, HELLO, artifacts=(hostile,))
    ctx = context(tmp_path, backend(tmp_path, "exit 0\n"))
    attempt = run_build(job, ctx)
    assert attempt.status is Status.FAIL
    assert attempt.reason.startswith("unsafe file name '../../escaped.deb'")
    assert not (tmp_path / "escaped.deb").exists()


def test_local_paths_and_an_input_that_is_also_an_artifact(tmp_path: Path) -> None:
    """Arch's way: the build input is the first package file, itself an artifact."""
    repo = tmp_path / "core" / "os" / "x86_64"
    repo.mkdir(parents=True)
    pkg = repo / "p-1-1-x86_64.pkg.tar.zst"
    pkg.write_bytes(b"\x28\xb5\x2f\xfd package")
    art = Artifact("p", "1-1", "x86_64", str(pkg), hashlib.sha256(pkg.read_bytes()).hexdigest(), 12)
    group = BuildGroup(
        "p", "1-1", "archlinux", "core", "core", "x86_64", str(pkg), (art,), input_sha256=art.sha256
    )
    script = backend(
        tmp_path, 'echo "input=$1 mirror=$REBUILDER_MIRROR"\ncp "$1" "$REBUILDERD_OUTDIR/"\n'
    )
    ctx = context(tmp_path, script)
    attempt = run_build(Job("arch", group, "new", build_id=3), ctx)
    assert attempt.status is Status.GOOD
    log = read_log(ctx, attempt.files)
    assert f"mirror={repo}\n" in log and "/p-1-1-x86_64.pkg.tar.zst" in log, log


def test_log_is_capped_with_a_visible_marker(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    script = backend(
        tmp_path,
        f"""
        echo FIRST-LINE
        i=0
        while [ $i -lt 2000 ]; do echo "noise line $i ......................"; i=$((i+1)); done
        echo LAST-LINE
        {COPY}
        """,
    )
    ctx = context(tmp_path, script, log_limit=2000)
    attempt = run_build(job, ctx)
    assert attempt.status is Status.GOOD
    log = read_log(ctx, attempt.files)
    assert "FIRST-LINE" in log and "LAST-LINE" in log
    marker = [line for line in log.splitlines() if "log truncated" in line]
    assert len(marker) == 1 and "bytes omitted" in marker[0]
    body = log.split("-" * 72)[1]
    assert len(body.encode()) < 2000 + len(marker[0]) + 20


def test_an_unexpected_error_is_a_fail_not_an_exception(
    tmp_path: Path, served: tuple[Path, str]
) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    (tmp_path / "work").write_text("a file where the work dir should be")
    ctx = context(tmp_path, backend(tmp_path, "exit 0\n"))
    attempt = run_build(job, ctx)
    assert attempt.status is Status.FAIL
    assert attempt.reason.startswith("internal error: ")
    assert "Traceback" in read_log(ctx, attempt.files)


def test_no_artifacts_is_fail(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    job = make_job(root, base, {}, artifacts=())
    attempt = run_build(job, context(tmp_path, backend(tmp_path, "exit 0\n")))
    assert attempt.status is Status.FAIL and "no artifacts" in attempt.reason


# --- cancellation and the death of the pass ---------------------------------------------------


def test_cancel_abandons_and_kills_the_backend(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    pids = tmp_path / "pids"
    script = backend(
        tmp_path, f"sleep 300 &\necho $! > {pids}.child\necho $$ > {pids}.main\nwait\n"
    )
    ctx = context(tmp_path, script)
    cancel = threading.Event()

    def cancel_when_started() -> None:
        wait_file(Path(f"{pids}.main"))
        cancel.set()

    threading.Thread(target=cancel_when_started, daemon=True).start()
    with pytest.raises(Abandoned):
        run_build(job, ctx, cancel)
    for suffix in ("main", "child"):
        assert wait_dead(int(Path(f"{pids}.{suffix}").read_text()), 5)
    assert not (ctx.results_dir / "7").exists(), "an abandoned build records nothing"
    assert list(ctx.work_dir.iterdir()) == []


_KILLED_PARENT = """
import sys, threading
from pathlib import Path
from rebuilder.build import BuildContext, BuildPool, run_build
from rebuilder.model import Artifact, BuildGroup, Job

tmp, script, art_path, sha = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
art = Artifact("x", "1", "all", art_path, sha, 2)
group = BuildGroup("x", "1", "debian", "sid", "main", "all", art_path, (art,))
ctx = BuildContext(script, tmp / "results", tmp / "work", 300.0, 1 << 16, False, 1.0, 1, grace=1.0)
jobs = [Job("p", group, "new", build_id=i) for i in (1, 2)]
BuildPool(2).run(jobs, lambda job, cancel: run_build(job, ctx, cancel), lambda j, a: None)
"""


def test_kill_9_of_the_pass_leaves_no_backend(tmp_path: Path) -> None:
    """Two builds run in pool threads; SIGKILL the Python process; nothing may survive it."""
    art = tmp_path / "x.deb"
    art.write_bytes(b"x\n")
    pids = tmp_path / "pids"
    pids.mkdir()
    script = backend(
        tmp_path,
        f"""
        sleep 300 &
        echo $! > {pids}/child.$$
        setsid sleep 300 &
        echo $! > {pids}/escaped.$$
        echo $$ > {pids}/main.$$
        wait
        """,
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sha = hashlib.sha256(b"x\n").hexdigest()
    parent = subprocess.Popen(
        [sys.executable, "-c", _KILLED_PARENT, str(tmp_path), str(script), str(art), sha], env=env
    )
    try:
        end = time.monotonic() + 20
        while len(list(pids.glob("main.*"))) < 2 and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.1)
        watched = [int(p.read_text()) for p in pids.iterdir()]
        assert len(watched) == 6, sorted(p.name for p in pids.iterdir())
        assert not any(dead(pid) for pid in watched)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        survivors = [pid for pid in watched if not wait_dead(pid, 10)]
        assert survivors == [], f"backend processes outlived the pass: {survivors}"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# --- the shipped Debian backend ----------------------------------------------------------------


def test_shipped_backends_registry() -> None:
    debian = shipped_backend("debian")
    assert debian.name == "debian.sh" and os.access(debian, os.X_OK)
    assert set(SHIPPED) >= {"debian"}
    with pytest.raises(ConfigError, match="no shipped backend for distribution 'gentoo'"):
        shipped_backend("gentoo")


def test_check_backend_refuses_a_non_executable(tmp_path: Path) -> None:
    script = tmp_path / "b.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(ConfigError, match="not executable"):
        check_backend(script)
    with pytest.raises(ConfigError, match="does not exist"):
        check_backend(tmp_path / "nope.sh")


def _stub_tools(tmp_path: Path, *, with_cache: bool) -> Path:
    """debrebuild/sbuild/mmdebstrap cannot run here (no snapshot service): stand-ins on PATH.

    The stand-in debrebuild records its arguments and "rebuilds" by copying the published
    file from the working directory into --buildresult, plus a rebuilt .buildinfo.
    """
    bindir = tmp_path / "stubs"
    bindir.mkdir()
    help_text = "--cache=DIR" if with_cache else "--buildresult"
    (bindir / "debrebuild").write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            if [ "$1" = --help ]; then echo "{help_text}"; exit 0; fi
            printf '%s\\n' "$@" > {tmp_path}/debrebuild.args
            out=
            for a in "$@"; do case "$a" in --buildresult=*) out="${{a#--buildresult=}}";; esac; done
            cp ./*.deb "$out/"
            echo "Installed-Build-Depends: gcc" > "$out/hello_1.0-1_amd64.buildinfo"
            """
        )
    )
    for tool in ("sbuild", "mmdebstrap", "newuidmap"):
        (bindir / tool).write_text("#!/bin/sh\nexit 0\n")
    for path in bindir.iterdir():
        path.chmod(0o755)
    return bindir


@pytest.mark.parametrize("with_cache", [False, True])
def test_debian_backend_calls_debrebuild_as_rebuilderd_does(
    tmp_path: Path, served: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, with_cache: bool
) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    stubs = _stub_tools(tmp_path, with_cache=with_cache)
    monkeypatch.setenv("PATH", f"{stubs}:{os.environ['PATH']}")
    ctx = context(
        tmp_path, shipped_backend("debian"), env={"REBUILDER_CACHE_DIR": str(tmp_path / "cache")}
    )
    attempt = run_build(job, ctx)
    assert attempt.status is Status.GOOD, read_log(ctx, attempt.files)
    args = (tmp_path / "debrebuild.args").read_text().splitlines()
    assert args[0].startswith("--buildresult=/") and args[0].endswith("/.rebuilder-out")
    assert args[1] == "--builder=sbuild+unshare"
    assert args[-2:-1] == ["--"] and args[-1].endswith("/hello_1.0-1_amd64.buildinfo")
    assert (f"--cache={tmp_path / 'cache'}" in args) is with_cache
    meta = ctx.results_dir / attempt.files["meta/rebuilt-hello_1.0-1_amd64.buildinfo"]
    assert "Installed-Build-Depends" in meta.read_text()


def test_debian_backend_names_what_the_host_lacks(
    tmp_path: Path, served: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("sh",):
        (bindir / tool).symlink_to(shutil.which(tool) or "/bin/sh")
    monkeypatch.setenv("PATH", str(bindir))
    ctx = context(tmp_path, shipped_backend("debian"))
    attempt = run_build(job, ctx)
    assert attempt.status is Status.FAIL and attempt.reason.startswith("backend exited with 2: ")
    assert "debrebuild not found (install devscripts, sbuild, mmdebstrap, uidmap)" in read_log(
        ctx, attempt.files
    )


def test_debian_backend_stops_when_debrebuild_cannot_start(
    tmp_path: Path, served: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    stubs = _stub_tools(tmp_path, with_cache=False)
    (stubs / "debrebuild").write_text(
        "#!/bin/sh\necho 'you must have the libstring-shellquote-perl package installed' >&2\n"
        "exit 2\n"
    )
    monkeypatch.setenv("PATH", f"{stubs}:{os.environ['PATH']}")
    ctx = context(tmp_path, shipped_backend("debian"))
    attempt = run_build(job, ctx)
    assert attempt.status is Status.FAIL and attempt.reason.startswith("backend exited with 2: ")
    log = read_log(ctx, attempt.files)
    assert "libstring-shellquote-perl" in log and "debrebuild does not start" in log
    assert not (tmp_path / "debrebuild.args").exists()


def test_only_plain_meta_files_are_kept(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    script = backend(
        tmp_path,
        f"""
        {COPY}
        echo ok > "$REBUILDER_META_DIR/installed-packages.txt"
        echo no > "$REBUILDER_META_DIR/two words.txt"
        ln -s /etc/passwd "$REBUILDER_META_DIR/passwd"
        mkdir "$REBUILDER_META_DIR/sub"
        """,
    )
    ctx = context(tmp_path, script)
    attempt = run_build(job, ctx)
    assert attempt.status is Status.GOOD
    assert [k for k in attempt.files if k.startswith("meta/")] == ["meta/installed-packages.txt"]
    assert (ctx.results_dir / "7/meta/installed-packages.txt").read_text() == "ok\n"
    assert sorted(p.name for p in (ctx.results_dir / "7/meta").iterdir()) == [
        "installed-packages.txt"
    ]


# --- hostile outputs (issue 12) ----------------------------------------------------------------


def test_a_fifo_named_like_the_artifact_is_missing_not_a_hang(
    tmp_path: Path, served: tuple[Path, str]
) -> None:
    """A package's own build can leave a FIFO: opening it would block the pass for ever."""
    root, base = served
    job = make_job(root, base, {**HELLO, "hello-doc_1.0-1_all.deb": b"docs\n"})
    script = backend(tmp_path, 'mkfifo "$REBUILDERD_OUTDIR/hello_1.0-1_amd64.deb"\n'
                     'cp hello-doc_1.0-1_all.deb "$REBUILDERD_OUTDIR/"\n')  # fmt: skip
    ctx = context(tmp_path, script)
    done: list[object] = []
    thread = threading.Thread(target=lambda: done.append(run_build(job, ctx)), daemon=True)
    thread.start()
    thread.join(60)  # a guard against the hang, not a timing
    assert done, "run_build hung on a FIFO in the output directory"
    attempt = done[0]
    assert attempt.status is Status.BAD, attempt.reason  # type: ignore[attr-defined]
    assert attempt.reason == "missing: hello_1.0-1_amd64.deb"  # type: ignore[attr-defined]
    assert "not a regular file" in read_log(ctx, attempt.files)  # type: ignore[attr-defined]


def test_a_directory_named_like_the_artifact_is_missing(
    tmp_path: Path, served: tuple[Path, str]
) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    script = backend(tmp_path, 'mkdir "$REBUILDERD_OUTDIR/hello_1.0-1_amd64.deb"\n')
    ctx = context(tmp_path, script)
    attempt = run_build(job, ctx)
    assert attempt.status is Status.BAD and attempt.reason == "missing: hello_1.0-1_amd64.deb"
    assert "not a regular file" in read_log(ctx, attempt.files)


def test_a_huge_sparse_output_is_bad_by_its_size_without_reading_it(
    tmp_path: Path, served: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    # 50 GB of holes: hashing it would read 50 GB of zeros
    script = backend(tmp_path, 'truncate -s 50G "$REBUILDERD_OUTDIR/hello_1.0-1_amd64.deb"\n')
    ctx = context(tmp_path, script)
    from rebuilder import fetch

    hashed: list[object] = []
    real = fetch.sha256_file

    def spy(f: BinaryIO) -> str:
        hashed.append(f)
        return real(f)

    monkeypatch.setattr(fetch, "sha256_file", spy)
    attempt = run_build(job, ctx)
    assert attempt.status is Status.BAD and attempt.reason == "differs: hello_1.0-1_amd64.deb"
    (result,) = attempt.artifacts
    assert result.built_sha256 == "" and not result.identical  # not hashed: sizes differ
    assert len(hashed) == 2  # the two downloads (artifact, input), never the 50 GB output
    log = read_log(ctx, attempt.files)
    assert "53687091200 bytes, the index says 19: differs, not hashed" in log
    assert "far larger than published, not compared with diffoscope" in log


def test_published_logs_hold_no_absolute_paths_of_this_machine(
    tmp_path: Path, served: tuple[Path, str]
) -> None:
    root, base = served
    job = make_job(root, base, HELLO)
    script = backend(tmp_path, f'echo "here: $(pwd) out: $REBUILDERD_OUTDIR input: $1"\n{COPY}\n')
    ctx = context(tmp_path, script)
    attempt = run_build(job, ctx)
    assert attempt.status is Status.GOOD
    log = read_log(ctx, attempt.files)
    assert str(tmp_path) not in log
    assert (
        "backend backend.sh" in log and "here: <build dir> out: <build dir>/.rebuilder-out" in log
    )
