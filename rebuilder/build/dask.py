"""Builds on a standing Dask cluster, chosen with ``--executor dask://HOST:PORT`` (or ``tls://``).

The pass keeps its :class:`~rebuilder.build.pool.BuildPool` and its local
thread pool: only the build function changes. :func:`remote_builder` returns a
``build(job, cancel) -> Attempt`` that, in a pool thread, submits
:func:`remote_build` to the cluster and waits for it, so that the pool's
bounded in-flight window, deadline and ``on_result`` in the calling thread
work unchanged. The rest is about what crosses the wire and what happens when
the cluster misbehaves:

* **What runs where.** :func:`remote_build` runs :func:`~rebuilder.build.runner.run_build`
  on the worker, with the worker's own copy of rebuilder and of the shipped
  backends, in a temporary directory under the worker's ``local_directory``.
  It returns ``(Attempt, {relative path: bytes})``: the log, the capped
  diffoscope reports, the attestation and the meta files. Rebuilt artifacts
  never leave the worker (they are deleted with the attempt's directory).
  The pass writes those bytes under its ``results_dir``, safe relative paths
  of the build's own directory only.
* **Routing.** A build needs one unit of the worker resource
  ``arch-<architecture>`` (``all``/``any``/``noarch`` map to a real
  architecture, :data:`DEFAULT_ARCH_MAP`). If no connected worker offers it,
  the build raises :class:`NoWorkerForArch`, an :class:`Abandoned`, so the
  pool leaves the job queued (one warning per architecture) instead of the
  pass waiting forever.
* **Worker loss.** The scheduler re-runs a build whose worker died (up to its
  ``allowed-failures``); past that (``KilledWorker``), on any other engine
  failure, or when every worker of the architecture has been gone for
  ``orphan_grace`` seconds, the attempt is a ``FAIL`` with reason
  ``worker lost``, which our own retry policy retries. One future gives one
  outcome, whatever the engine re-ran.
* **Cancel.** When the pool's cancel event is set the Dask future is cancelled
  and :class:`Abandoned` raised, as ``run_build`` does. On the worker, a
  watcher sees its task cancelled (also when the pass dies and its client goes
  away) and sets ``run_build``'s own cancel event, so the backend's process
  group is killed rather than left running.
* **Signing.** The pass's private key never leaves the pass: workers sign
  with a throw-away key and the pass re-signs the link's ``signed`` part
  with its own (:func:`resign`).

``distributed`` is imported only when this module's functions are called, so
the rest of rebuilder does not need it.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import gzip
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from rebuilder import results
from rebuilder.build.backends import HERE as SHIPPED_DIR
from rebuilder.build.runner import Abandoned, BuildContext, run_build
from rebuilder.errors import ConfigError
from rebuilder.model import Attempt, Job, Status, utcnow

if TYPE_CHECKING:
    from distributed import Client
    from distributed.cfexecutor import ClientExecutor

    from rebuilder.attest import SigningKey

log = logging.getLogger(__name__)

RESOURCE_PREFIX = "arch-"
# architecture-independent groups are built where these say unless the spec says otherwise
DEFAULT_ARCH_MAP: Mapping[str, str] = {"all": "amd64", "any": "x86_64", "noarch": "x86_64"}
WORKER_LOST = "worker lost"
# Pass-side paths that mean nothing on a worker: the worker's own environment decides.
_WORKER_LOCAL_ENV = ("REBUILDER_CACHE_DIR",)
# How often a waiting build looks at its cancel event and at the cluster.
_POLL = 0.5
# How long the cluster's worker list is reused before asking the scheduler again.
_INFO_TTL = 1.0


class NoWorkerForArch(Abandoned):
    """No connected worker offers the resource a build needs: the job stays queued.

    A subclass of :class:`Abandoned` so that the pool neither records an
    attempt nor fails the pass; the message names the resource.
    """

    def __init__(self, job: Job, resource: str) -> None:
        super().__init__(
            f"build {job.build_id} ({job.group.key}) left queued: "
            f"no connected Dask worker offers resource {resource}"
        )
        self.resource = resource


# --- the executor spec ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutorSpec:
    """A parsed ``--executor`` value.

    >>> s = parse_spec("dask://10.0.0.5:8786")
    >>> s.address, s.tls
    ('tcp://10.0.0.5:8786', False)
    >>> s = parse_spec("tls://sched.internal:8786?ca=/etc/rb/ca.pem&arch.all=arm64")
    >>> s.address, s.ca_file, s.arch_map["all"], s.arch_map["any"]
    ('tls://sched.internal:8786', '/etc/rb/ca.pem', 'arm64', 'x86_64')
    """

    address: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    arch_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ARCH_MAP))

    @property
    def tls(self) -> bool:
        return self.address.startswith("tls://")


def parse_spec(spec: str) -> ExecutorSpec:
    """``dask://HOST:PORT`` or ``tls://HOST:PORT``, with optional ``?ca=&cert=&key=&arch.X=Y``."""
    parts = urlsplit(spec)
    scheme = {"dask": "tcp", "tls": "tls"}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        port = None
    if scheme is None or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ConfigError(
            f"executor {spec!r}: expected dask://HOST:PORT or tls://HOST:PORT (or 'local')"
        )
    files: dict[str, str] = {}
    arch_map = dict(DEFAULT_ARCH_MAP)
    for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name in ("ca", "cert", "key") and value:
            files[name] = value
        elif name.startswith("arch.") and len(name) > 5 and value:
            arch_map[name[5:]] = value
        else:
            raise ConfigError(f"executor {spec!r}: unknown option {name!r}")
    if files and scheme != "tls":
        raise ConfigError(f"executor {spec!r}: certificates need tls://")
    return ExecutorSpec(
        f"{scheme}://{parts.netloc.rsplit('@', 1)[-1]}",
        files.get("ca"),
        files.get("cert"),
        files.get("key"),
        arch_map,
    )


def arch_resource(architecture: str, arch_map: Mapping[str, str] | None = None) -> str:
    """The worker resource a build of ``architecture`` needs.

    >>> arch_resource("arm64"), arch_resource("all"), arch_resource("all", {"all": "arm64"})
    ('arch-arm64', 'arch-amd64', 'arch-arm64')
    """
    table = DEFAULT_ARCH_MAP if arch_map is None else arch_map
    return RESOURCE_PREFIX + table.get(architecture, architecture)


def make_executor(
    spec: str | None, *, security: Any = None, timeout: float = 30.0
) -> DaskExecutor | None:
    """Connect to the scheduler ``spec`` names; ``None`` for the local pool (empty, ``local``).

    ``security`` is a :class:`distributed.security.Security`; without one, a
    ``tls://`` spec uses its ``ca``/``cert``/``key`` options, else Dask's
    configuration (``DASK_DISTRIBUTED__COMM__TLS__*``). Raises
    :class:`~rebuilder.errors.ConfigError` when Dask is not installed or the
    scheduler cannot be reached.
    """
    if not spec or spec == "local":
        return None
    parsed = parse_spec(spec)
    try:
        from distributed import Client
        from distributed.security import Security
    except ImportError:
        raise ConfigError(f"executor {spec!r} needs Dask: pip install 'rebuilder[dask]'") from None
    if security is None and parsed.tls:
        security = _tls_security(parsed, Security)
    try:
        client = Client(
            parsed.address,
            security=security,
            timeout=timeout,
            set_as_default=False,
            name="rebuilder-pass",
        )
    except Exception as e:  # OSError, TimeoutError, ssl errors, bad certificates
        raise ConfigError(
            f"cannot connect to the Dask scheduler at {parsed.address}: {_one_line(e)}"
        ) from None
    info = _scheduler_info(client)
    log.info(
        "Dask scheduler %s: %d worker(s), resources %s",
        parsed.address,
        len(info),
        ", ".join(f"{k}={v:g}" for k, v in sorted(_totals(info).items())) or "none",
    )
    return DaskExecutor(client, parsed.arch_map)


def _tls_security(parsed: ExecutorSpec, security_class: Any) -> Any:
    """The client's certificates for ``tls://``: from the spec, else from Dask's configuration.

    Checked here because a Client built without a usable certificate can leave
    distributed's event loop wedged for the rest of the process.
    """
    if parsed.ca_file or parsed.cert_file or parsed.key_file:
        given = {"ca": parsed.ca_file, "cert": parsed.cert_file, "key": parsed.key_file}
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise ConfigError(
                f"executor {parsed.address}: tls:// needs ca, cert and key (missing: "
                f"{', '.join(missing)})"
            )
        security = security_class(
            tls_ca_file=parsed.ca_file,
            tls_client_cert=parsed.cert_file,
            tls_client_key=parsed.key_file,
            require_encryption=True,
        )
    else:
        security = security_class()  # DASK_DISTRIBUTED__COMM__TLS__CA_FILE, __CLIENT__CERT...
    files = [security.tls_ca_file, security.tls_client_cert]
    if not all(files):
        raise ConfigError(
            f"executor {parsed.address}: tls:// needs a CA file and a client certificate "
            "(?ca=...&cert=...&key=... or Dask's distributed.comm.tls configuration)"
        )
    for path in [*files, security.tls_client_key]:
        if path and not os.access(path, os.R_OK):
            raise ConfigError(f"executor {parsed.address}: cannot read {path}")
    return security


class DaskExecutor(cf.Executor):
    """A ``concurrent.futures`` executor on a Dask client, which closes the client with it.

    ``submit(fn, *args, resources={...})`` passes Dask options per call (as
    ``client.get_executor(pure=False)`` does); ``arch_map`` is the routing of
    architecture-independent builds.
    """

    def __init__(self, client: Client, arch_map: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.arch_map: Mapping[str, str] = dict(arch_map or DEFAULT_ARCH_MAP)
        self._executor: ClientExecutor = client.get_executor(pure=False)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Cancel what is still running on the cluster (unless ``wait``) and disconnect."""
        try:
            self._executor.shutdown(wait=wait and not cancel_futures)
        finally:
            with contextlib.suppress(Exception):
                self.client.close(timeout=10)

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        # Leaving early (an error, ^C): nothing more is wanted from the cluster.
        self.shutdown(wait=False)


def cluster_slots(executor: DaskExecutor) -> int:
    """How many builds the cluster runs at once: the sum of its ``arch-*`` resources."""
    return int(sum(_totals(_scheduler_info(executor.client)).values()))


# --- the worker's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteSpec:
    """What a worker needs to rebuild, besides the job: a picklable BuildContext minus paths.

    ``shipped`` names a backend shipped with rebuilder (the worker's own copy
    is used); otherwise ``backend`` is a path that must exist on the worker.
    ``sign`` asks for an attestation, made with a throw-away key (see :func:`resign`).
    """

    backend: str
    shipped: str | None
    timeout: float
    log_limit: int
    diffoscope: bool
    diffoscope_timeout: float
    diffoscope_limit: int
    env: Mapping[str, str]
    grace: float
    sign: bool

    @classmethod
    def from_context(cls, ctx: BuildContext, *, sign: bool) -> RemoteSpec:
        path = ctx.backend.resolve()
        shipped = path.name if path.parent == SHIPPED_DIR else None
        env = {k: v for k, v in ctx.env.items() if k not in _WORKER_LOCAL_ENV}
        return cls(
            str(ctx.backend),
            shipped,
            ctx.timeout,
            ctx.log_limit,
            ctx.diffoscope,
            ctx.diffoscope_timeout,
            ctx.diffoscope_limit,
            env,
            ctx.grace,
            sign,
        )

    def context(self, root: Path, worker_env: Mapping[str, str]) -> BuildContext:
        backend = SHIPPED_DIR / self.shipped if self.shipped else Path(self.backend)
        return BuildContext(
            backend=backend,
            results_dir=root / "results",
            work_dir=root / "work",
            timeout=self.timeout,
            log_limit=self.log_limit,
            diffoscope=self.diffoscope,
            diffoscope_timeout=self.diffoscope_timeout,
            diffoscope_limit=self.diffoscope_limit,
            env={**self.env, **worker_env},
            sign=_throwaway_signer() if self.sign else None,
            grace=self.grace,
        )


def remote_build(job: Job, spec: RemoteSpec) -> tuple[Attempt, dict[str, bytes]]:
    """Rebuild ``job`` on this Dask worker; the attempt and its files as bytes.

    Runs outside a worker too (then in the system's temporary directory), which
    the tests use. Raises only :class:`Abandoned` (its task was cancelled).
    """
    worker = _current_worker()
    name, base = _worker_identity(worker)
    root = Path(tempfile.mkdtemp(prefix=f"rebuilder-{job.build_id}-", dir=base))
    cancel, stop = threading.Event(), threading.Event()
    watcher = _watch_task(worker, cancel, stop)
    try:
        worker_env = {"REBUILDER_WORKER": name}
        if not os.environ.get("REBUILDER_CACHE_DIR"):
            worker_env["REBUILDER_CACHE_DIR"] = str(Path(base) / "rebuilder-cache")
        ctx = spec.context(root, worker_env)
        attempt = run_build(job, ctx, cancel)
        files = {}
        for rel in attempt.files.values():
            with contextlib.suppress(OSError):
                files[rel] = (ctx.results_dir / rel).read_bytes()
        if "log" in attempt.files and attempt.files["log"] in files:
            rel = attempt.files["log"]
            files[rel] = _append_log(files[rel], f"built on Dask worker {name}")
        return attempt, files
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
        shutil.rmtree(root, ignore_errors=True)


def _current_worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _worker_identity(worker: Any) -> tuple[str, str]:
    if worker is None:
        return f"local:{os.getpid()}", tempfile.gettempdir()
    return str(worker.name), str(worker.local_directory)


def _watch_task(
    worker: Any, cancel: threading.Event, stop: threading.Event
) -> threading.Thread | None:
    """Set ``cancel`` once the scheduler no longer wants this task (cancelled, client gone)."""
    if worker is None:
        return None
    try:
        key = worker.get_current_task()
    except (KeyError, AttributeError):
        return None

    def watch() -> None:
        while not stop.wait(_POLL):
            try:
                # Read without the worker's lock: a stale answer only delays the cancel by a tick.
                ts = worker.state.tasks.get(key)
                if ts is None or ts.state == "cancelled":
                    cancel.set()
                    return
            except Exception:  # worker internals changed: never cancel a build by mistake
                return

    thread = threading.Thread(target=watch, name=f"rebuilder-watch-{key}", daemon=True)
    thread.start()
    return thread


def _throwaway_signer() -> Callable[[Job, Path, Path], bytes]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from rebuilder import attest

    key = attest.SigningKey(Ed25519PrivateKey.generate())

    def sign(job: Job, input_path: Path, artifact_path: Path) -> bytes:
        # the same names as the pass's own signer, so that re-signing changes only the signature
        return attest.make_link(artifact_path.name, input_path.name, input_path, artifact_path, key)

    return sign


# --- the pass's side --------------------------------------------------------------------------


ContextFor = BuildContext | Callable[[Job], BuildContext]


def remote_builder(
    client_or_executor: Any,
    ctx: ContextFor,
    *,
    signing_key: SigningKey | None = None,
    arch_map: Mapping[str, str] | None = None,
    orphan_grace: float = 60.0,
) -> RemoteBuilder:
    """The build function for :meth:`BuildPool.run` that runs each build on the cluster.

    ``client_or_executor`` is a :class:`DaskExecutor` (from :func:`make_executor`),
    a ``distributed.Client`` or the executor of ``client.get_executor()``;
    ``ctx`` the build context, or a function giving each job its context (one
    per backend); on the pass's side only its ``results_dir`` and backend name are used.
    ``signing_key`` re-signs attestations: without it, builds are not attested.
    ``orphan_grace``: seconds a submitted build waits while no worker offers
    its resource before it is given up as ``worker lost``.
    """
    executor, client = _executor_and_client(client_or_executor)
    if arch_map is None:
        arch_map = getattr(client_or_executor, "arch_map", DEFAULT_ARCH_MAP)
    return RemoteBuilder(executor, _Cluster(client), ctx, signing_key, arch_map, orphan_grace)


def _executor_and_client(target: Any) -> tuple[Any, Any]:
    if isinstance(target, DaskExecutor):
        return target, target.client
    if hasattr(target, "get_executor") and hasattr(target, "scheduler_info"):  # a Client
        return target.get_executor(pure=False), target
    client = getattr(target, "_client", None)  # a ClientExecutor
    if client is None:
        raise TypeError(f"not a Dask client or executor: {target!r}")
    return target, client


class _Cluster:
    """Which resources the connected workers offer, asked again at most every second."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._offered: set[str] = set()
        self._at = float("-inf")

    def offers(self, resource: str) -> bool:
        with self._lock:
            if time.monotonic() - self._at >= _INFO_TTL:
                info = _scheduler_info(self.client)
                self._offered = {r for w in info.values() for r, n in _resources(w) if n > 0}
                self._at = time.monotonic()
            return resource in self._offered


class RemoteBuilder:
    """``build(job, cancel) -> Attempt`` through Dask; see :func:`remote_builder`."""

    def __init__(
        self,
        executor: Any,
        cluster: _Cluster,
        ctx: ContextFor,
        signing_key: SigningKey | None,
        arch_map: Mapping[str, str],
        orphan_grace: float,
    ) -> None:
        self.executor, self.cluster = executor, cluster
        self.context_for: Callable[[Job], BuildContext] = (
            (lambda _job: ctx) if isinstance(ctx, BuildContext) else ctx
        )
        self.signing_key, self.arch_map, self.orphan_grace = signing_key, arch_map, orphan_grace
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, job: Job, cancel: threading.Event) -> Attempt:
        if cancel.is_set():
            raise Abandoned(f"build {job.build_id} abandoned: the pass ran out of time")
        ctx = self.context_for(job)
        resource = arch_resource(job.group.architecture, self.arch_map)
        if not self.cluster.offers(resource):
            self._warn_no_worker(job, resource)
            raise NoWorkerForArch(job, resource)
        spec = RemoteSpec.from_context(ctx, sign=self.signing_key is not None)
        started_at, t0 = utcnow(), time.monotonic()
        future = self.executor.submit(remote_build, job, spec, resources={resource: 1})
        orphaned = self._wait(future, job, resource, cancel)
        duration = time.monotonic() - t0
        if orphaned is not None:
            return self._failed(job, ctx, started_at, duration, WORKER_LOST, orphaned)
        try:
            attempt, files = future.result()
        except Exception as e:
            reason, detail = _engine_failure(e)
            return self._failed(job, ctx, started_at, duration, reason, detail)
        return self._accept(job, ctx, attempt, files, started_at, duration)

    def _wait(
        self, future: cf.Future[Any], job: Job, resource: str, cancel: threading.Event
    ) -> str | None:
        """Wait for ``future``; a reason when the build is given up, None when it is done."""
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        orphaned_since: float | None = None
        while not done.wait(_POLL):
            if cancel.is_set():
                future.cancel()
                raise Abandoned(f"build {job.build_id} abandoned: the pass ran out of time")
            if self.cluster.offers(resource):
                orphaned_since = None
                continue
            now = time.monotonic()
            if orphaned_since is None:
                orphaned_since = now
                log.warning("build %s: no worker offers %s any more", job.build_id, resource)
            elif now - orphaned_since >= self.orphan_grace:
                future.cancel()
                return f"no worker offers {resource} for {self.orphan_grace:g} s"
        return None

    def _warn_no_worker(self, job: Job, resource: str) -> None:
        with self._lock:
            first = resource not in self._warned
            self._warned.add(resource)
        # once per resource, so that a queue of thousands does not flood the log
        (log.warning if first else log.debug)(
            "no connected Dask worker offers %s: %s builds stay queued (first: %s %s)",
            resource,
            job.group.architecture,
            job.group.name,
            job.group.version,
        )

    def _accept(
        self,
        job: Job,
        ctx: BuildContext,
        attempt: Attempt,
        files: Mapping[str, bytes],
        started_at: Any,
        duration: float,
    ) -> Attempt:
        if not isinstance(attempt, Attempt) or attempt.build_id != job.build_id:
            why = f"worker error: answer for build {getattr(attempt, 'build_id', '?')}"
            return self._failed(job, ctx, started_at, duration, why, why)
        files = dict(files)
        kept = write_files(ctx.results_dir, job.build_id, files, self._resign_hook(job))
        dropped = {k: v for k, v in attempt.files.items() if v not in kept}
        if dropped:
            log.warning("build %s: files not stored: %s", job.build_id, sorted(dropped))
        return replace(attempt, files={k: v for k, v in attempt.files.items() if v in kept})

    def _resign_hook(self, job: Job) -> Callable[[str, bytes], bytes | None]:
        key, name = self.signing_key, f"{job.build_id}/attestation"

        def hook(rel: str, data: bytes) -> bytes | None:
            if rel != name:
                return data
            if key is None:
                return None
            try:
                return resign(data, key)
            except (ValueError, KeyError, TypeError) as e:
                log.warning("build %s: attestation not re-signed: %s", job.build_id, e)
                return None

        return hook

    def _failed(
        self,
        job: Job,
        ctx: BuildContext,
        started_at: Any,
        duration: float,
        reason: str,
        detail: str,
    ) -> Attempt:
        g = job.group
        log.warning("build %s (%s): %s: %s", job.build_id, g.key, reason, detail)
        text = (
            f"[rebuilder] build {job.build_id}: {g.name} {g.version} "
            f"({g.distro} {g.release}/{g.component}/{g.architecture}) on Dask\n"
            f"[rebuilder] {detail}\n[rebuilder] verdict: FAIL ({reason})\n"
        )
        rel = f"{job.build_id}/log.gz"
        kept = write_files(ctx.results_dir, job.build_id, {rel: results.gzip_bytes(text.encode())})
        return Attempt(
            build_id=job.build_id,
            version=g.version,
            status=Status.FAIL,
            started_at=started_at,
            duration=duration,
            backend=ctx.backend.name,
            reason=reason,
            inputs_digest=g.inputs_digest,
            files={"log": rel} if rel in kept else {},
        )


def _engine_failure(e: BaseException) -> tuple[str, str]:
    """The FAIL reason and the log's detail for a build whose future raised ``e``."""
    from distributed import KilledWorker

    detail = f"{type(e).__name__}: {_one_line(e)}"
    # Abandoned here was not asked for by us: the engine cancelled the task on its own.
    if isinstance(e, KilledWorker | cf.CancelledError | OSError | TimeoutError | Abandoned):
        return WORKER_LOST, detail
    # The build function itself failed on the worker (rebuilder missing there, a version skew).
    return f"worker error: {detail}", detail


# --- files and attestations -------------------------------------------------------------------


def write_files(
    results_dir: Path,
    build_id: int,
    files: Mapping[str, bytes],
    transform: Callable[[str, bytes], bytes | None] | None = None,
) -> set[str]:
    """Write a build's files under ``results_dir``; the relative paths written.

    Unsafe paths (absolute, ``..``, another build's directory) and paths
    through a symlink are refused with a warning; ``transform`` may rewrite
    a file's bytes or drop it (None).
    """
    kept: set[str] = set()
    root = results_dir.resolve()
    for rel, data in files.items():
        path = results.safe_rel(rel, build_id=build_id)
        if path is None or not isinstance(data, bytes):
            log.warning("build %s: refused a result file named %r", build_id, rel)
            continue
        if transform is not None:
            data = transform(rel, data)  # type: ignore[assignment]
            if data is None:
                continue
        dest = root.joinpath(*path.parts)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.parent.resolve() != root.joinpath(*path.parts[:-1]):
                log.warning("build %s: refused %r: a symlink on the way", build_id, rel)
                continue
            results.write_atomic(dest, data)
            kept.add(rel)
        except OSError as e:
            log.error("build %s: cannot store %s: %s", build_id, rel, e)
    return kept


def resign(attestation: bytes, key: SigningKey) -> bytes:
    """The same link(s) signed with ``key`` instead of the worker's throw-away key."""
    from rebuilder import attest

    return attest.sign_links(attestation, key)


# --- small helpers ----------------------------------------------------------------------------


def _scheduler_info(client: Any) -> dict[str, Any]:
    """The scheduler's workers (address -> identity); empty when it cannot be asked."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # versions before n_workers returned every worker anyway
        info = client.scheduler_info()
    except Exception as e:
        log.warning("cannot ask the Dask scheduler for its workers: %s", _one_line(e))
        return {}
    return dict(info.get("workers", {}))


def _resources(worker: Mapping[str, Any]) -> list[tuple[str, float]]:
    return [(str(k), float(v)) for k, v in (worker.get("resources") or {}).items()]


def _totals(workers: Mapping[str, Any]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for w in workers.values():
        for name, n in _resources(w):
            if name.startswith(RESOURCE_PREFIX):
                totals[name] = totals.get(name, 0.0) + n
    return totals


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _append_log(gz: bytes, line: str) -> bytes:
    try:
        return results.gzip_bytes(gzip.decompress(gz) + f"[rebuilder] {line}\n".encode())
    except (OSError, EOFError):
        return gz
