"""Builds on a real Dask cluster: a scheduler and workers on 127.0.0.1, run as subprocesses.

The backends are shell scripts that say in their log which worker ran them
(``WORKER_MARK`` is set in each worker's own environment, not by rebuilder);
builds go through the real :class:`BuildPool`, the real runner and supervisor.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import ipaddress
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from rebuilder import attest
from rebuilder.build import BuildContext, BuildPool, PoolSummary
from rebuilder.build.dask import (
    DaskExecutor,
    NoWorkerForArch,
    RemoteSpec,
    cluster_slots,
    make_executor,
    parse_spec,
    remote_build,
    remote_builder,
    resign,
    write_files,
)
from rebuilder.errors import ConfigError
from rebuilder.model import Artifact, Attempt, BuildGroup, Job, Status
from rebuilder.results import safe_rel

from .fixtures.debian import Archive
from .fixtures.operator import operator_dir, rebuild

pytestmark = pytest.mark.slow  # starts Dask clusters, runs rebuild

ROOT = Path(__file__).resolve().parent.parent

BACKEND = r"""
echo "mark=$WORKER_MARK worker=$REBUILDER_WORKER host=$(hostname)"
printf '%s\n' "$WORKER_MARK" > "$REBUILDER_META_DIR/worker.txt"
case "$WORKER_MARK:$REBUILDER_ARTIFACTS" in
  victim*|*:sleep*) echo $$ > "$PIDS/$WORKER_MARK-$$.pid"; exec sleep 300 ;;
esac
for f in $REBUILDER_ARTIFACTS; do
  case "$f" in
    differs*) echo changed > "$REBUILDERD_OUTDIR/$f" ;;
    *) cp "$f" "$REBUILDERD_OUTDIR/" ;;
  esac
done
"""


# --- the cluster -----------------------------------------------------------------------------


def _dask(*args: str, cwd: Path, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cwd.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dask", *args],
            cwd=cwd,  # a fresh directory: nothing there can shadow a module
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, so that the test can kill it whole
        )


def _kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    proc.wait(timeout=30)


class Cluster:
    """A scheduler on 127.0.0.1 and the workers the tests start; everything killed at the end."""

    def __init__(self, base: Path, tls: dict[str, Path] | None = None) -> None:
        self.base, self.tls = base, tls
        self.procs: list[subprocess.Popen[bytes]] = []
        info = base / "scheduler.json"
        self.scheduler = self._start(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *self._tls_args("scheduler"),
            "--scheduler-file",
            str(info),
            name="scheduler",
            env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"},
        )
        end = time.monotonic() + 60
        while not (info.exists() and info.stat().st_size):
            assert self.scheduler.poll() is None, (base / "scheduler.log").read_text()
            assert time.monotonic() < end, "the scheduler did not start"
            time.sleep(0.05)
        self.address = json.loads(info.read_text())["address"]
        self.info = info

    def _tls_args(self, who: str) -> list[str]:
        if self.tls is None:
            return []
        args = ["--tls-ca-file", str(self.tls["ca"]), "--tls-cert", str(self.tls[f"{who}.crt"])]
        args += ["--tls-key", str(self.tls[f"{who}.key"])]
        return (["--protocol", "tls"] if who == "scheduler" else []) + args

    def _start(self, *args: str, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        # The HTTP server (dashboard, health, metrics) listens on every interface unless
        # given an address: --no-dashboard alone does not stop it.
        args = (*args, "--no-dashboard", "--dashboard-address", "127.0.0.1:0")
        proc = _dask(*args, cwd=self.base / name, log=self.base / f"{name}.log", env=env)
        self.procs.append(proc)
        return proc

    def worker(self, name: str, resource: str, *, nanny: bool = False) -> subprocess.Popen[bytes]:
        """Start a worker offering one unit of ``resource``; returns once the scheduler has it."""
        proc = self._start(
            "worker",
            "--scheduler-file",
            str(self.info),
            "--host",
            "127.0.0.1",
            "--nworkers",
            "1",
            "--nthreads",
            "1",
            "--name",
            name,
            "--resources",
            f"{resource}=1",
            "--local-directory",
            str(self.base / name / "local"),
            "--nanny" if nanny else "--no-nanny",
            "--death-timeout",
            "60",
            *self._tls_args("worker"),
            name=name,
            env={"WORKER_MARK": name},
        )
        end = time.monotonic() + 60
        while name not in self.names():
            assert proc.poll() is None, (self.base / f"{name}.log").read_text()[-3000:]
            assert time.monotonic() < end, f"worker {name} did not join"
            time.sleep(0.1)
        return proc

    def names(self) -> set[str]:
        code = (
            "import json,sys\nfrom distributed import Client\n"
            "sec=None\n"
            "if len(sys.argv)>2:\n"
            "    from distributed.security import Security\n"
            "    sec=Security(tls_ca_file=sys.argv[2],tls_client_cert=sys.argv[3],"
            "tls_client_key=sys.argv[4],require_encryption=True)\n"
            "with Client(sys.argv[1],timeout=20,security=sec) as c:\n"
            "    print(json.dumps([w['name'] for w in c.scheduler_info()['workers'].values()]))\n"
        )
        tls = [str(self.tls[k]) for k in ("ca", "client.crt", "client.key")] if self.tls else []
        out = subprocess.run(
            [sys.executable, "-c", code, self.address, *tls],
            capture_output=True,
            text=True,
            cwd=self.base,
            timeout=60,
        )
        return set(json.loads(out.stdout)) if out.returncode == 0 else set()

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    _kill_group(proc)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        c.worker("amd64-w", "arch-amd64", nanny=True)  # the usual way, with a nanny
        c.worker("arm64-w", "arch-arm64")
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def executor(cluster: Cluster) -> Iterator[DaskExecutor]:
    port = cluster.address.rsplit(":", 1)[1]
    ex = make_executor(f"dask://127.0.0.1:{port}")
    assert ex is not None
    with ex:
        yield ex


# --- jobs and contexts -----------------------------------------------------------------------


def make_jobs(tmp_path: Path, specs: list[tuple[str, str]], first: int = 1) -> list[Job]:
    """One job per (artifact stem, architecture); the artifact is a local file."""
    jobs = []
    for i, (stem, arch) in enumerate(specs, first):
        name = f"{stem}{i}_1_{arch}.deb"
        data = f"{name}\n".encode()
        path = tmp_path / "pool" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        art = Artifact(
            stem, "1", arch, f"file://{path}", hashlib.sha256(data).hexdigest(), len(data)
        )
        group = BuildGroup(f"{stem}{i}", "1", "debian", "sid", "main", arch, str(path), (art,))
        jobs.append(Job("t", group, "new", build_id=i))
    return jobs


def context(tmp_path: Path, **kw: object) -> BuildContext:
    script = tmp_path / "backend.sh"
    script.write_text("#!/bin/sh\nset -e\n" + textwrap.dedent(BACKEND))
    script.chmod(0o755)
    pids = tmp_path / "pids"
    pids.mkdir(exist_ok=True)
    settings: dict[str, object] = dict(
        backend=script,
        results_dir=tmp_path / "results",
        work_dir=tmp_path / "work",
        timeout=120.0,
        log_limit=1 << 20,
        diffoscope=True,
        diffoscope_timeout=60.0,
        diffoscope_limit=1 << 20,
        grace=1.0,
        env={"PIDS": str(pids), "REBUILDER_CACHE_DIR": "/nonexistent/pass/side/path"},
    )
    settings.update(kw)
    return BuildContext(**settings)  # type: ignore[arg-type]


def run_pool(
    jobs: list[Job], build: object, slots: int = 4, deadline: float | None = None
) -> tuple[PoolSummary, dict[int, list[Attempt]]]:
    got: dict[int, list[Attempt]] = {}
    summary = BuildPool(slots).run(
        jobs,
        build,  # type: ignore[arg-type]
        lambda j, a: got.setdefault(j.build_id, []).append(a),
        deadline=deadline,
    )
    return summary, got


def log_of(ctx: BuildContext, a: Attempt) -> str:
    return gzip.decompress((ctx.results_dir / a.files["log"]).read_bytes()).decode()


def wait_for(path: Path, pattern: str, seconds: float = 60) -> Path:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        found = sorted(path.glob(pattern))
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"nothing matched {pattern} in {path}")


def dead(pid: int, seconds: float = 15) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.05)
    return False


def pid_in(path: Path) -> int:
    return int(path.read_text().strip())


# --- without a cluster -----------------------------------------------------------------------


def test_spec_parsing_and_errors() -> None:
    assert parse_spec("dask://127.0.0.1:8786").address == "tcp://127.0.0.1:8786"
    assert parse_spec("tls://[::1]:8786").address == "tls://[::1]:8786"
    assert make_executor("local") is None and make_executor("") is None
    for bad in (
        "tcp://h:1",
        "dask://h",
        "dask://h:x",
        "dask://:1",
        "dask://h:1/x",
        "dask://h:1?ca=/x",
        "tls://h:1?bogus=1",
    ):
        with pytest.raises(ConfigError):
            parse_spec(bad)


def test_unreachable_scheduler_is_a_one_line_config_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match=r"cannot connect to the Dask scheduler at tcp://"):
        make_executor(f"dask://127.0.0.1:{port}", timeout=2)


def test_only_safe_paths_of_the_build_are_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    results = tmp_path / "results"
    (tmp_path / "elsewhere").mkdir()
    results.mkdir()
    (results / "9").symlink_to(tmp_path / "elsewhere")
    files = {
        "7/log.gz": b"ok",
        "7/meta/a.txt": b"ok",
        "/etc/x": b"no",
        "7/../8/log.gz": b"no",
        "8/log.gz": b"no",
        "7/./x": b"no",
        "..": b"no",
        "7": b"no",
    }
    assert write_files(results, 7, files) == {"7/log.gz", "7/meta/a.txt"}
    assert sorted(p.relative_to(results).as_posix() for p in results.rglob("*")) == [
        "7",
        "7/log.gz",
        "7/meta",
        "7/meta/a.txt",
        "9",
    ]
    assert write_files(results, 9, {"9/log.gz": b"no"}) == set()  # through a symlink
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert safe_rel("7/meta/x", build_id=7) is not None
    assert safe_rel("7\\..\\x", build_id=7) is None
    assert "refused" in caplog.text


def test_attestations_are_re_signed_with_the_pass_key(tmp_path: Path) -> None:
    worker_key = attest.SigningKey(Ed25519PrivateKey.generate())
    (tmp_path / "in").write_bytes(b"input")
    (tmp_path / "a.deb").write_bytes(b"artifact")
    link = attest.make_link("a.deb", "in", tmp_path / "in", tmp_path / "a.deb", worker_key)
    attest.generate_key(tmp_path / "key")
    key = attest.load_signing_key(tmp_path / "key")
    with pytest.raises(attest.AttestationError):
        attest.verify_link(link, key.public)
    info = attest.verify_link(resign(link, key), key.public, tmp_path / "a.deb")
    assert info.keyid == key.keyid and info.product == "a.deb"
    two = json.dumps([json.loads(link), json.loads(link)]).encode()
    for one in json.loads(resign(two, key)):
        attest.verify_link(json.dumps(one).encode(), key.public)
    with pytest.raises(ValueError):
        resign(b'{"signed": {"_type": "layout"}, "signatures": []}', key)


def test_remote_build_runs_outside_a_worker_and_returns_bytes(tmp_path: Path) -> None:
    (job,) = make_jobs(tmp_path, [("x", "amd64")])
    ctx = context(tmp_path)
    attempt, files = remote_build(job, RemoteSpec.from_context(ctx, sign=True))
    assert attempt.status is Status.GOOD, attempt.reason
    assert (
        set(files)
        == set(attempt.files.values())
        == {"1/log.gz", "1/attestation", "1/meta/worker.txt"}
    )
    assert "worker=local:" in gzip.decompress(files["1/log.gz"]).decode()
    assert not ctx.results_dir.exists() and not ctx.work_dir.exists()  # pass-side dirs untouched


# --- on the cluster --------------------------------------------------------------------------


def test_builds_are_routed_by_architecture_and_their_files_come_back(
    cluster: Cluster, executor: DaskExecutor, tmp_path: Path
) -> None:
    import psutil

    jobs = make_jobs(
        tmp_path,
        [
            ("x", "amd64"),
            ("x", "arm64"),
            ("x", "all"),
            ("x", "amd64"),
            ("x", "arm64"),
            ("differs", "amd64"),
        ],
    )
    ctx = context(tmp_path)
    attest.generate_key(tmp_path / "key")
    key = attest.load_signing_key(tmp_path / "key")
    assert cluster_slots(executor) == 2
    summary, got = run_pool(jobs, remote_builder(executor, ctx, signing_key=key))
    assert summary.counts == {Status.GOOD: 5, Status.BAD: 1} and summary.abandoned == 0
    for j in jobs:
        (a,) = got[j.build_id]
        want = "arm64-w" if j.group.architecture == "arm64" else "amd64-w"
        log = log_of(ctx, a)
        assert f"mark={want} worker={want}" in log
        assert f"[rebuilder] built on Dask worker {want}" in log
        assert (ctx.results_dir / a.files["meta/worker.txt"]).read_text() == f"{want}\n"
        if a.status is Status.GOOD:
            artifact = tmp_path / "pool" / j.group.artifacts[0].filename
            attest.verify_link(
                (ctx.results_dir / a.files["attestation"]).read_bytes(), key.public, artifact
            )
    bad = got[6][0]
    assert bad.reason == "differs: differs6_1_amd64.deb"
    assert b"changed" in gzip.decompress((ctx.results_dir / bad.files["diffoscope"]).read_bytes())
    # only what was listed came back: no rebuilt artifact, nothing outside the builds' dirs
    listed = {v for a in got.values() for v in a[0].files.values()}
    on_disk = {
        p.relative_to(ctx.results_dir).as_posix() for p in ctx.results_dir.rglob("*") if p.is_file()
    }
    assert on_disk == listed
    assert not ctx.work_dir.exists()
    # the workers cleaned up after themselves
    assert not list(cluster.base.glob("*/local/**/rebuilder-*-*"))
    # nothing of the cluster listens beyond 127.0.0.1 (the documented command lines)
    listening = set()
    for proc in cluster.procs:
        ps = psutil.Process(proc.pid)
        for p in [ps, *ps.children(recursive=True)]:
            listening |= {c.laddr.ip for c in p.net_connections("inet") if c.status == "LISTEN"}
    assert listening == {"127.0.0.1"}


def test_an_architecture_no_worker_offers_stays_queued_with_a_warning(
    executor: DaskExecutor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = make_jobs(tmp_path, [("x", "s390x"), ("x", "amd64"), ("x", "s390x")])
    ctx = context(tmp_path)
    build = remote_builder(executor, ctx)
    with caplog.at_level(logging.WARNING, logger="rebuilder.build.dask"):
        summary, got = run_pool(jobs, build, slots=3)
    assert set(got) == {2} and got[2][0].status is Status.GOOD
    assert summary.abandoned == 2 and summary.counts == {Status.GOOD: 1}
    warnings = [r.getMessage() for r in caplog.records if "arch-s390x" in r.getMessage()]
    assert len(warnings) == 1 and "stay queued" in warnings[0]
    with pytest.raises(
        NoWorkerForArch, match="no connected Dask worker offers resource arch-s390x"
    ):
        build(jobs[0], threading.Event())


def test_the_deadline_cancels_remote_builds_and_kills_their_backends(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    jobs = make_jobs(tmp_path, [("sleep", "amd64"), ("sleep", "arm64")])
    ctx = context(tmp_path)
    summary, got = run_pool(jobs, remote_builder(executor, ctx), deadline=time.monotonic() + 4)
    assert got == {} and summary.abandoned == 2 and summary.deadline_reached
    pids = sorted((tmp_path / "pids").iterdir())
    assert [p.name.split("-")[0] for p in pids] == ["amd64", "arm64"]
    for p in pids:
        assert dead(pid_in(p)), f"backend {p.name} outlived its cancelled task"


PASS = """
import pickle, sys
from rebuilder.build import BuildPool
from rebuilder.build.dask import make_executor, remote_builder
spec, jobs, ctx = pickle.loads(open(sys.argv[1], "rb").read())
ex = make_executor(spec)
BuildPool(2).run(jobs, remote_builder(ex, ctx), lambda j, a: print("reported", j.build_id))
"""


def test_a_killed_pass_leaves_no_backend_running_on_the_workers(
    cluster: Cluster, tmp_path: Path
) -> None:
    jobs = make_jobs(tmp_path, [("sleep", "amd64"), ("sleep", "arm64")])
    args = tmp_path / "args.pickle"
    spec = "dask://" + cluster.address.split("://", 1)[1]
    args.write_bytes(pickle.dumps((spec, jobs, context(tmp_path))))
    the_pass = subprocess.Popen(
        [sys.executable, "-c", PASS, str(args)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for(tmp_path / "pids", "amd64-w-*.pid")
        pidfiles = [
            wait_for(tmp_path / "pids", "arm64-w-*.pid"),
            *(tmp_path / "pids").glob("amd64*"),
        ]
    finally:
        _kill_group(the_pass)  # SIGKILL: its client vanishes without a word
    assert the_pass.stdout is not None and b"reported" not in the_pass.stdout.read()
    for p in pidfiles:
        assert dead(pid_in(p)), f"backend {p.name} outlived the pass"


def _build_in_background(
    jobs: list[Job], build: object
) -> tuple[threading.Thread, list[tuple[PoolSummary, dict[int, list[Attempt]]]]]:
    out: list[tuple[PoolSummary, dict[int, list[Attempt]]]] = []
    thread = threading.Thread(target=lambda: out.append(run_pool(jobs, build)), daemon=True)
    thread.start()
    return thread, out


def test_a_killed_worker_s_build_reruns_on_another_worker(
    cluster: Cluster, executor: DaskExecutor, tmp_path: Path
) -> None:
    victim = cluster.worker("victim-r", "arch-riscv64")
    jobs = make_jobs(tmp_path, [("x", "riscv64")])
    ctx = context(tmp_path)
    thread, out = _build_in_background(jobs, remote_builder(executor, ctx))
    pidfile = wait_for(tmp_path / "pids", "victim-r-*.pid")
    cluster.worker("spare-r", "arch-riscv64")
    _kill_group(victim)
    thread.join(120)
    ((_, got),) = out
    (a,) = got[1]  # one outcome
    assert a.status is Status.GOOD, a.reason
    assert "mark=spare-r" in log_of(ctx, a)
    assert dead(pid_in(pidfile)), "the killed worker's backend was orphaned"


def test_a_build_that_kills_its_workers_fails_as_worker_lost(
    cluster: Cluster, executor: DaskExecutor, tmp_path: Path
) -> None:
    first = cluster.worker("victim-k1", "arch-ppc64el")
    jobs = make_jobs(tmp_path, [("x", "ppc64el")])
    ctx = context(tmp_path)
    thread, out = _build_in_background(jobs, remote_builder(executor, ctx))
    pid1 = wait_for(tmp_path / "pids", "victim-k1-*.pid")
    second = cluster.worker("victim-k2", "arch-ppc64el")
    _kill_group(first)
    pid2 = wait_for(tmp_path / "pids", "victim-k2-*.pid")  # the scheduler re-ran it
    _kill_group(second)  # past allowed-failures (1): KilledWorker
    thread.join(120)
    ((_, got),) = out
    (a,) = got[1]
    assert a.status is Status.FAIL and a.reason == "worker lost"
    assert "KilledWorker" in log_of(ctx, a)
    assert isinstance(a.started_at, dt.datetime) and a.inputs_digest == jobs[0].group.inputs_digest
    assert dead(pid_in(pid1)) and dead(pid_in(pid2))


def test_a_build_whose_only_worker_dies_fails_as_worker_lost(
    cluster: Cluster, executor: DaskExecutor, tmp_path: Path
) -> None:
    victim = cluster.worker("victim-o", "arch-mips64el")
    jobs = make_jobs(tmp_path, [("x", "mips64el")])
    ctx = context(tmp_path)
    thread, out = _build_in_background(jobs, remote_builder(executor, ctx, orphan_grace=1.0))
    pidfile = wait_for(tmp_path / "pids", "victim-o-*.pid")
    _kill_group(victim)
    thread.join(60)
    ((_, got),) = out
    (a,) = got[1]
    assert a.status is Status.FAIL and a.reason == "worker lost"
    assert "no worker offers arch-mips64el" in log_of(ctx, a)
    assert dead(pid_in(pidfile))


# --- TLS -------------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificates(d: Path) -> dict[str, Path]:
    """A CA, and certificates it signs for the scheduler, the worker and the client."""
    d.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def cert(
        subject: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("rebuilder test CA")
    paths = {"ca": d / "ca.pem"}
    paths["ca"].write_bytes(
        cert(ca_name, ca_key, ca_name, ca_key, True).public_bytes(serialization.Encoding.PEM)
    )
    for who in ("scheduler", "worker", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        paths[f"{who}.crt"] = d / f"{who}.crt"
        paths[f"{who}.key"] = d / f"{who}.key"
        paths[f"{who}.crt"].write_bytes(
            cert(_name(who), key, ca_name, ca_key, False).public_bytes(serialization.Encoding.PEM)
        )
        paths[f"{who}.key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        paths[f"{who}.key"].chmod(0o600)
    return paths


def test_tls_cluster_needs_our_certificates(tmp_path: Path) -> None:
    certs = _certificates(tmp_path)
    c = Cluster(tmp_path / "cluster", tls=certs)
    try:
        assert c.address.startswith("tls://127.0.0.1:")
        c.worker("tls-w", "arch-amd64")
        port = c.address.rsplit(":", 1)[1]
        with pytest.raises(ConfigError, match="cannot connect"):
            make_executor(f"dask://127.0.0.1:{port}", timeout=3)  # plain TCP
        with pytest.raises(ConfigError, match="needs ca, cert and key"):
            make_executor(f"tls://127.0.0.1:{port}?ca={certs['ca']}", timeout=3)
        with pytest.raises(ConfigError, match="needs a CA file and a client certificate"):
            make_executor(f"tls://127.0.0.1:{port}", timeout=3)
        other = _certificates(tmp_path / "other")  # a client another CA vouches for
        with pytest.raises(ConfigError, match="cannot connect"):
            make_executor(
                f"tls://127.0.0.1:{port}?ca={other['ca']}"
                f"&cert={other['client.crt']}&key={other['client.key']}",
                timeout=3,
            )
        spec = (
            f"tls://127.0.0.1:{port}?ca={certs['ca']}"
            f"&cert={certs['client.crt']}&key={certs['client.key']}"
        )
        ex = make_executor(spec, timeout=10)
        assert ex is not None
        with ex:
            jobs = make_jobs(tmp_path, [("x", "amd64")])
            ctx = context(tmp_path)
            _, got = run_pool(jobs, remote_builder(ex, ctx))
        assert got[1][0].status is Status.GOOD
        assert "mark=tls-w" in log_of(ctx, got[1][0])
    finally:
        c.close()


def test_a_whole_pass_through_the_cli_runs_on_the_cluster(
    cluster: Cluster, mirror: tuple[Archive, str], tmp_path: Path
) -> None:
    """``rebuild run --executor dask://...``: the fixture archive's verdicts, built remotely."""
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    port = cluster.address.rsplit(":", 1)[1]
    r = rebuild(work, "run", "--executor", f"dask://127.0.0.1:{port}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "pass done: 4 built (2 GOOD, 1 BAD, 1 FAIL)" in r.stderr
    state = json.loads((work / "state" / "fixture.json").read_text())
    log = next(v for k, v in state["groups"].items() if k.endswith("/repro"))["attempts"][0]
    text = gzip.decompress((work / "site" / "builds" / log["files"]["log"]).read_bytes())
    assert b"built on Dask worker amd64-w" in text  # routed to the worker of its architecture
