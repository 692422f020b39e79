"""The ``rebuild`` command: one small function per subcommand, no domain logic.

Logs go to stderr; machine output (``--json``, ``--print-json``) to stdout.
Any :class:`~rebuilder.errors.RebuilderError` is printed as one line and the
exit status is non-zero; there are no tracebacks for operator mistakes.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import fnmatch
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rebuilder import __version__, attest, client, config, pipeline, state, workdir
from rebuilder.build import tools
from rebuilder.errors import ConfigError, RebuilderError
from rebuilder.model import Job, Status, utcnow

log = logging.getLogger("rebuilder")

Handler = Callable[[argparse.Namespace], int]

PROFILES_HELP = "profiles of the config to use (default: all)"
JSON_HELP = "machine-readable JSON on stdout"
NAME_HELP = "a glob on the binary or the source package name (either matches)"


# ------------------------------------------------------------------ helpers


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``45s``, ``30m``, ``2h``, ``1h30m``, ``1d``.

    >>> parse_duration("1h30m")
    5400.0
    >>> parse_duration("90")
    90.0
    """
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+)([dhms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90m, 1h30m, 3600)")
    unit = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return float(sum(int(n) * unit[u] for n, u in parts))


def _load_config(args: argparse.Namespace) -> config.Config:
    cfg = config.load(args.config, sync_config=args.sync_config)
    s = cfg.settings
    changes: dict[str, Any] = {}
    if args.state_dir:
        changes["state_dir"] = Path(args.state_dir)
    if args.site_dir:
        changes["site_dir"] = Path(args.site_dir)
    if getattr(args, "jobs", None):
        changes["jobs"] = args.jobs
    if changes:
        cfg = dataclasses.replace(cfg, settings=dataclasses.replace(s, **changes))
    pipeline.apply_limits(cfg.settings)
    return cfg


def _ci_annotate(errors: Sequence[str], title: str) -> None:
    """Under GitHub Actions, each error as a job annotation and in the step summary."""
    if not errors or os.environ.get("GITHUB_ACTIONS") != "true":
        return
    for err in errors:
        text = err.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        print(f"::error title={title}::{text}")  # a workflow command, read from stdout
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(f"### {title}\n\n" + "".join(f"- {e}\n" for e in errors))


def _print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")


# ------------------------------------------------------------------ subcommands


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    opts = pipeline.PassOptions(
        profiles=args.profiles,
        jobs=args.jobs or 0,
        max_builds=args.max_builds,
        max_time=args.max_time,
        commit=not args.no_commit,
        render=not args.no_render,
        force_sync=args.force_sync,
        executor=args.executor,
    )
    report = pipeline.run_pass(cfg, opts)  # sync errors were logged as they happened
    for r in report.regressions:
        log.warning("regression: %s", r)
    if report.site_index:
        log.info("site: %s", report.site_index.resolve())
    if report.commit:
        log.info("state committed: %s", report.commit[:12])
    log.info("%s", report.summary())
    if report.interrupted:
        return 130
    return 1 if report.errors else 0


def cmd_sync(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    if args.print_json:
        _print_json([s.to_json() for s in pipeline.snapshot(cfg, args.profiles)])
        return 0
    for snap in pipeline.sync_only(cfg, args.profiles, force=args.force):
        n = "unchanged" if snap.unchanged else f"{len(snap.groups)} build groups"
        log.info("synced %s: %s", snap.profile, n)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    if args.shards is not None:
        if not args.out:
            raise ConfigError("--shards needs --out DIR")
        report = pipeline.plan_shards(
            _load_config(args), args.profiles, args.shards, Path(args.out)
        )
        for err in report.errors:
            print(f"rebuild: error: {err}", file=sys.stderr)
        _ci_annotate(report.errors, "a profile failed to sync; the others are planned")
        # one profile down does not stop the others: only a plan with nothing synced fails
        return 1 if report.errors and not report.synced else 0
    cfg = _load_config(args)
    if args.no_sync:
        for name in pipeline.stale_profiles(cfg, args.profiles):
            log.warning(
                "%s: the state is older than the config; this plan may be out of date "
                "(run `rebuild plan` without --no-sync, or `rebuild sync`)",
                name,
            )
    else:
        pipeline.sync_only(cfg, args.profiles)
    jobs = pipeline.queue(cfg, args.profiles)
    if args.json:
        _print_json([j.to_json() for j in jobs])
        return 0
    for j in jobs:
        g = j.group
        print(
            f"{j.profile}\t{g.release}/{g.component}/{g.architecture}\t{g.name}\t{g.version}\t{j.reason}"
        )
    log.info("%d builds queued", len(jobs))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    index = pipeline.render_site(_load_config(args))
    log.info("site rendered: %s", index.resolve())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.host:
        board = client.fetch_dashboard(args.host, cache_dir=client.default_cache_dir())
        if args.json:
            _print_json(board.to_json())
        else:
            print("\n".join(client.format_dashboard(board)))
        return 0
    rows = pipeline.status(_load_config(args), args.profiles)
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        counts = "  ".join(f"{s.value} {r['counts'][s.value]}" for s in Status)
        last = r["last_pass"] or "never"
        print(f"{r['profile']:<24} {counts}  queue {r['queue']}  last pass {last}")
    live = state.running_pass(_load_config(args).settings.state_dir)
    if live is not None:
        print(live.describe())
    return 0


def cmd_requeue(args: argparse.Namespace) -> int:
    n = pipeline.requeue(
        _load_config(args), args.profiles, status=args.status, name=args.name, reset=args.reset
    )
    if not n:
        log.warning("no build group matches %s", _describe_filters(args) or "(no groups)")
    log.info("%d build groups requeued", n)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    if args.plan:
        if not args.results:
            raise ConfigError("--plan needs --results DIR")
        opts = pipeline.PassOptions(jobs=args.jobs or 0, max_time=args.max_time)
        report = pipeline.build_shard(_load_config(args), Path(args.plan), Path(args.results), opts)
        log.info("%s", report.summary())
        return 0
    if not args.distro or not args.artifact_url:
        raise ConfigError("give DISTRO and ARTIFACT_URL (or --plan FILE --results DIR)")
    backends = {}
    for spec in args.backend or []:
        distro, sep, path = spec.partition("=")
        if not sep or not distro or not path:
            raise ConfigError(f"--backend {spec!r}: expected DISTRO=PATH")
        backends[distro] = Path(path)
    cfg = _load_config(args) if Path(args.config or config.DEFAULT_CONFIG).exists() else None
    attempt, log_text = pipeline.build_one(
        cfg,
        args.distro,
        args.artifact_url,
        input_url=args.input_url,
        backends=backends,
        diffoscope=args.diffoscope,
        method=args.method,
        release=args.release,
        keyring=args.keyring,
        check_valid_until=not args.no_check_valid_until,
    )
    sys.stderr.write(log_text)
    for a in attempt.artifacts:
        print(f"{a.filename}: expected {a.expected_sha256} built {a.built_sha256 or 'missing'}")
    print(f"{attempt.status.value}" + (f": {attempt.reason}" if attempt.reason else ""))
    return 0 if attempt.status == Status.GOOD else 1


def cmd_merge(args: argparse.Namespace) -> int:
    opts = pipeline.PassOptions(
        commit=not args.no_commit, render=not args.no_render, keep_files=args.keep_files
    )
    report = pipeline.merge(_load_config(args), [Path(r) for r in args.results], opts)
    for r in report.regressions:
        log.warning("regression: %s", r)
    if report.commit:
        log.info("state committed: %s", report.commit[:12])
    log.info("merge done: %s", report.summary().removeprefix("pass done: "))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Each method's tools, which are missing here and the apt package of each."""
    given = args.config or Path(config.DEFAULT_CONFIG).exists() or args.sync_config
    cfg = _load_config(args) if given else None
    profiles = list(cfg.profiles.values()) if cfg else []
    used: dict[str, list[str]] = {}
    for p in profiles:
        used.setdefault(pipeline.profile_backend(p), []).append(p.name)
    methods = list(used) if cfg else list(tools.METHOD_TOOLS)
    distros = sorted({p.distro for p in profiles}) if cfg else list(tools.SYNC_TOOLS)
    if args.apt:
        print("\n".join(tools.apt_packages(methods, distros)))
        return 0
    missing = 0
    sections = [("every pass", tools.COMMON_TOOLS)]
    sections += [(f"sync {d}", tools.SYNC_TOOLS.get(d, ())) for d in distros]
    for m in methods:
        who = f" (profiles: {', '.join(used[m])})" if m in used else ""
        if cfg and m in cfg.backends:
            sections.append((f"method {m}{who}: own backend {cfg.backends[m]}", ()))
        else:
            sections.append((f"method {m}{who}", tools.METHOD_TOOLS.get(m, ())))
    for title, needs in sections:
        print(title)
        for t in needs:
            ok = t.present()
            missing += not ok
            pkg = t.package or "(not packaged in Debian)"
            print(f"  {'ok' if ok else 'MISSING':<8} {t.command:<28} {pkg}")
    if missing and cfg:
        log.warning(
            "%d tool(s) missing; install them with: apt-get install $(rebuild doctor --apt)",
            missing,
        )
        return 1
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    cfg = workdir.init(Path(args.dir))
    cfg = cfg.resolve()
    log.info("new working directory: %s (edit it, then `rebuild run --config %s`)", cfg, cfg)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    path = Path(args.key) if args.key else _load_config(args).settings.signing_key
    attest.generate_key(path)
    log.info("new signing key: %s", path)
    print(attest.public_key_pem(attest.load_signing_key(path)), end="")
    return 0


def cmd_pubkey(args: argparse.Namespace) -> int:
    path = Path(args.key) if args.key else _load_config(args).settings.signing_key
    print(attest.public_key_pem(attest.load_signing_key(path)), end="")
    return 0


def cmd_attestation_verify(args: argparse.Namespace) -> int:
    key = attest.public_key_from_text(_read_text(Path(args.key), "public key"))
    data = _read_bytes(Path(args.file), "attestation")
    artifact = Path(args.artifact) if args.artifact else None
    try:
        info = attest.verify_link(data, key, artifact)
    except attest.AttestationError as e:
        print(f"rebuild: attestation NOT verified: {e}", file=sys.stderr)
        return 1
    what = f", matches {artifact}" if artifact else ""
    print(f"OK: {info.name!r} signed by {info.keyid}{what}")
    return 0


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise RebuilderError(f"{path}: cannot read the {what}: {e.strerror}") from None


def _read_text(path: Path, what: str) -> str:
    return _read_bytes(path, what).decode(errors="replace")


def _pkg_entries(args: argparse.Namespace) -> list[client.PkgEntry]:
    if args.host:
        # FAIL where the server says so (v1); a v0-only server lists a failed build as UNKWN
        entries = client.fetch_pkgs(args.host, cache_dir=client.default_cache_dir())
    else:
        entries = [_local_entry(d) for d in pipeline.local_pkgs(_load_config(args))]
    entries.sort(key=lambda e: (e.name, e.version, e.architecture, e.release or "", e.suite))
    found = [
        e
        for e in entries
        if (not args.name or _name_matches(args.name, e.name, e.source))
        and (not args.status or e.status in args.status)
        and (not args.distro or e.distro == args.distro)
        and (not args.suite or e.suite == args.suite)
        and (not args.architecture or e.architecture == args.architecture)
    ]
    if not found:
        log.warning("no package matches %s", _describe_filters(args) or "(the list is empty)")
    return found


def _local_entry(d: dict[str, object]) -> client.PkgEntry:
    return dataclasses.replace(client.PkgEntry.from_v1(d), source=str(d["source"]))


def _name_matches(pattern: str, *names: str) -> bool:
    """``--name``: a glob on the binary or the source package name (either matches)."""
    return any(n and fnmatch.fnmatchcase(n, pattern) for n in names)


def _describe_filters(args: argparse.Namespace) -> str:
    parts = [f"--status {s.value}" for s in getattr(args, "status", None) or ()]
    for key in ("name", "distro", "suite", "architecture"):
        if getattr(args, key, None):
            parts.append(f"--{key} {getattr(args, key)}")
    return " ".join(parts)


def cmd_pkgs_ls(args: argparse.Namespace) -> int:
    entries = _pkg_entries(args)
    if args.json_v0:
        _print_json([e.to_json() for e in entries])
    elif args.json:
        _print_json([e.to_v1(i).to_json() for i, e in enumerate(entries, start=1)])
    else:
        for e in entries:
            print(client.format_pkg_line(e))
    return 0


def cmd_queue_ls(args: argparse.Namespace) -> int:
    limit = 25 if args.head else None
    if args.host:
        entries = client.fetch_queue(args.host, cache_dir=client.default_cache_dir(), limit=limit)
    else:
        jobs, live = pipeline.waiting(_load_config(args), args.profiles)
        if live is not None:
            log.info("%s (not listed)", live.describe())
        entries = [_queue_entry(i, j, utcnow()) for i, j in enumerate(jobs[:limit], 1)]
    if args.json:
        _print_json([e.to_json() for e in entries])
    else:
        for e in entries:
            print(client.format_queue_line(e))
    return 0


def _queue_entry(position: int, job: Job, now: dt.datetime) -> client.QueueEntry:
    g = job.group
    return client.QueueEntry(
        position,
        g.name,
        g.version,
        g.distro,
        g.component,
        g.architecture,
        now,
        now,
        release=g.release,
        input_url=g.input_url,
        artifacts=tuple((a.name, a.version, a.url) for a in g.artifacts),
    )


def cmd_pkgs_file(args: argparse.Namespace) -> int:
    entries = [e for e in _pkg_entries(args) if e.build_id is not None]
    if args.version:
        entries = [e for e in entries if e.version == args.version]
    if not entries:
        raise RebuilderError(f"no built package matches {args.name!r}")
    if len({(e.name, e.version, e.architecture) for e in entries}) > 1:
        found = ", ".join(sorted({f"{e.name} {e.version} {e.architecture}" for e in entries}))
        raise RebuilderError(f"{args.name!r} is ambiguous ({found}); add --version/--architecture")
    e = entries[0]
    if args.kind == "diffoscope" and not e.has_diffoscope:
        why = "only a BAD build has one" if e.status == Status.GOOD else "none was made"
        raise RebuilderError(f"{e.name} {e.version}: {e.status.value}: no diffoscope ({why})")
    base = args.host or str(_load_config(args).settings.site_dir / e.distro)
    sys.stdout.buffer.write(client.fetch_build_file(base, e, args.kind))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if args.pacman_db:
        installed = client.read_pacman_local(Path(args.pacman_db))
    else:
        installed = client.read_dpkg_status(Path(args.dpkg_status))
    hosts = args.host or []
    if not hosts:
        raise RebuilderError("give at least one rebuilder with -H URL")
    with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
        lists = dict(zip(hosts, pool.map(client.fetch_pkgs, hosts), strict=True))
    report = client.verify_installed(installed, lists, args.require)
    if args.check_files:
        keys = {h: client.fetch_public_keys(h) for h in hosts}
        fetcher = client.attestation_fetcher({h: h for h in hosts})
        caches = [Path(d) for d in args.package_cache] or list(client.DEFAULT_CACHE_DIRS)
        report = client.check_files(report, caches, fetcher, keys)
    if args.json:
        _print_json(report.to_json())
    else:
        wanted = {s.value for s in args.filter or ()}
        if not args.summary:
            for v in report.verdicts:
                if not wanted or v.status.value in wanted:
                    print(client.format_verify_line(v))
        print(client.format_verify_summary(report))
    return 0 if report.not_reproduced == 0 else 1


# ------------------------------------------------------------------ parser


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("configuration")
    g.add_argument("--config", metavar="FILE", help="TOML config (default: ./rebuilder.toml)")
    g.add_argument("--sync-config", metavar="FILE", help="a rebuilderd-sync.conf with profiles")
    g.add_argument("--state-dir", metavar="DIR", help="override [rebuilder] state_dir")
    g.add_argument("--site-dir", metavar="DIR", help="override [rebuilder] site_dir")
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    g.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="rebuild",
        description="Rebuild distribution packages from source and check them bit for bit.",
    )
    parser.add_argument("--version", action="version", version=f"rebuilder {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_: str, **kw: object) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_, description=help_, **kw)  # type: ignore[arg-type]
        p.set_defaults(handler=handler)
        return p

    p = sub.add_parser(
        "init",
        help="make a working directory: config, git, .gitignore",
        description="make a working directory: config, git, .gitignore",
    )
    p.set_defaults(handler=cmd_init)
    p.add_argument("dir", nargs="?", default=".", metavar="DIR", help="default: here")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")

    p = add("run", cmd_run, "one pass: sync, plan, build, record, render, commit")
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help=PROFILES_HELP)
    p.add_argument("--jobs", "-j", type=int, metavar="N", help="parallel builds (default: cores)")
    p.add_argument("--max-builds", type=int, metavar="N", help="at most N builds (0: none)")
    p.add_argument(
        "--max-time",
        type=parse_duration,
        metavar="DURATION",
        help="stop starting builds after this long, e.g. 5h30m",
    )
    p.add_argument("--no-commit", action="store_true", help="do not commit the state to git")
    p.add_argument("--no-render", action="store_true", help="do not render the site")
    p.add_argument(
        "--executor",
        metavar="URL",
        default="",
        help="local (default), dask://HOST:PORT or tls://HOST:PORT?ca=..",
    )
    p.add_argument(
        "--force-sync",
        action="store_true",
        help="re-read indexes even if unchanged; accept most groups gone",
    )

    p = add("sync", cmd_sync, "update the state from the repositories, without building")
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help=PROFILES_HELP)
    p.add_argument("--print-json", action="store_true", help="print the snapshot, save nothing")
    p.add_argument("--force", action="store_true", help="re-read indexes even if unchanged")

    p = add("plan", cmd_plan, "what the next pass would build, in order, and why")
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help=PROFILES_HELP)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument(
        "--shards", type=int, metavar="N", help="sync, then write the queue as N job files"
    )
    p.add_argument(
        "--no-sync", action="store_true", help="plan from the state as it is, without syncing first"
    )
    p.add_argument("--out", metavar="DIR", help="where --shards writes shard-<i>.json")

    p = add("merge", cmd_merge, "fold shard results into the state, render, commit once")
    p.add_argument("results", nargs="+", metavar="RESULTS", help="results dirs of build --plan")
    p.add_argument(
        "--keep-files",
        type=int,
        default=0,
        metavar="N",
        help="keep the result files of each group's last N attempts only",
    )
    p.add_argument("--no-commit", action="store_true", help="do not commit the state to git")
    p.add_argument("--no-render", action="store_true", help="do not render the site")

    add("render", cmd_render, "render the static site from the state")

    p = add("status", cmd_status, "counts per profile and status, queue length, last pass")
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help=PROFILES_HELP)
    p.add_argument("-H", "--host", metavar="URL", help="a rebuilder (ours or rebuilderd)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    queue = sub.add_parser("queue", help="the build queue")
    queue_sub = queue.add_subparsers(dest="queue_command", required=True, metavar="COMMAND")
    p = queue_sub.add_parser("ls", parents=[common], help="list the queue, next build first")
    p.set_defaults(handler=cmd_queue_ls)
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help=PROFILES_HELP)
    p.add_argument("-H", "--host", metavar="URL", help="a rebuilder (ours or rebuilderd)")
    p.add_argument("--head", action="store_true", help="only the next 25")
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    pkgs = sub.add_parser("pkgs", help="package queries and queue control")
    pkgs_sub = pkgs.add_subparsers(dest="pkgs_command", required=True, metavar="COMMAND")
    p = pkgs_sub.add_parser("requeue", parents=[common], help="build matching packages first")
    p.set_defaults(handler=cmd_requeue)
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help=PROFILES_HELP)
    p.add_argument(
        "--status",
        type=Status,
        action="append",
        choices=list(Status),
        help="only groups with this status (repeat for several)",
    )
    p.add_argument("--name", metavar="GLOB", help=NAME_HELP)
    p.add_argument("--reset", action="store_true", help="also reset the status to UNKWN")

    def query_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("-H", "--host", metavar="URL", help="a rebuilder (ours or rebuilderd)")
        p.add_argument("--name", metavar="GLOB", help=NAME_HELP)
        p.add_argument(
            "--status",
            type=Status,
            action="append",
            choices=list(Status),
            help="only this status (repeat for several); a remote v0-only "
            "server lists a failed build as UNKWN",
        )
        p.add_argument("--distro", help="only this distribution (debian, archlinux...)")
        p.add_argument("--suite", help="only this component, as rebuilderd's suite (main, core...)")
        p.add_argument("--architecture", help="only this architecture (amd64, all...)")

    p = pkgs_sub.add_parser("ls", parents=[common], help="list packages and their status")
    p.set_defaults(handler=cmd_pkgs_ls)
    query_options(p)
    p.add_argument("--json", action="store_true", help="v1 BinaryPackage objects (rebuildctl's)")
    p.add_argument("--json-v0", action="store_true", help="v0 PkgRelease objects instead")
    for kind in ("log", "diffoscope", "attestation"):
        p = pkgs_sub.add_parser(kind, parents=[common], help=f"print a package's {kind}")
        p.set_defaults(handler=cmd_pkgs_file, kind=kind)
        query_options(p)
        p.add_argument("--version", help="the package version, when several are listed")

    p = add("doctor", cmd_doctor, "the tools each build method needs, and which are missing here")
    p.add_argument(
        "--apt",
        action="store_true",
        help="print only the apt packages the configured profiles need",
    )

    p = add("keygen", cmd_keygen, "create the attestation signing key (Ed25519, mode 0600)")
    p.add_argument("--key", metavar="PATH", help="default: [rebuilder] signing_key")
    p = add("pubkey", cmd_pubkey, "print the public key of the signing key")
    p.add_argument("--key", metavar="PATH", help="default: [rebuilder] signing_key")

    att = sub.add_parser("attestation", help="attestations")
    att_sub = att.add_subparsers(dest="att_command", required=True, metavar="COMMAND")
    p = att_sub.add_parser("verify", parents=[common], help="check a signed in-toto link")
    p.set_defaults(handler=cmd_attestation_verify)
    p.add_argument("file", metavar="FILE", help="the attestation (in-toto link) file")
    p.add_argument("--key", required=True, metavar="PUBKEY", help="public key file (PEM or hex)")
    p.add_argument("--artifact", metavar="PATH", help="check the link's digests against a file")

    p = add("verify", cmd_verify, "were the packages installed here reproduced?")
    p.add_argument("-H", "--host", action="append", metavar="URL", help="a rebuilder; repeat")
    p.add_argument(
        "--require",
        type=int,
        default=1,
        metavar="K",
        help="GOOD from at least K rebuilders (default 1)",
    )
    p.add_argument(
        "--filter",
        type=Status,
        action="append",
        choices=list(Status),
        help="print only packages with this verdict (repeat for several)",
    )
    p.add_argument("--summary", action="store_true", help="only the summary lines")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument(
        "--dpkg-status",
        default="/var/lib/dpkg/status",
        metavar="FILE",
        help="dpkg's database of installed packages (default: %(default)s)",
    )
    p.add_argument("--pacman-db", metavar="DIR", help="pacman's local database instead")
    p.add_argument(
        "--check-files",
        action="store_true",
        help="check attestations against the local package files",
    )
    p.add_argument(
        "--package-cache",
        action="append",
        default=[],
        metavar="DIR",
        help="where package files are (default: apt's and pacman's caches)",
    )

    p = add("build", cmd_build, "rebuild one package, or one shard, outside any state")
    p.add_argument("distro", nargs="?", help="the distribution: debian, archlinux, alpine, tails")
    p.add_argument(
        "artifact_url",
        nargs="?",
        metavar="ARTIFACT_URL",
        help="the published package to check, e.g. a .deb in a pool",
    )
    p.add_argument("--plan", metavar="FILE", help="build the jobs of a shard file")
    p.add_argument("--results", metavar="DIR", help="with --plan: where results go")
    p.add_argument("--jobs", "-j", type=int, metavar="N", help="parallel builds (with --plan)")
    p.add_argument(
        "--max-time",
        type=parse_duration,
        metavar="DURATION",
        help="with --plan: stop starting builds after this long",
    )
    p.add_argument("--input-url", metavar="URL", help="build input (default: the artifact)")
    p.add_argument("--backend", action="append", metavar="DISTRO=PATH", help="backend script")
    p.add_argument("--diffoscope", action="store_true", help="run diffoscope on a mismatch")
    p.add_argument(
        "--method",
        metavar="METHOD",
        help="build method (Debian: debrebuild, the default, or suite-chroot: "
        "the .dsc is found in the mirror's Sources unless --input-url names it)",
    )
    p.add_argument(
        "--release",
        metavar="SUITE",
        help="with suite-chroot: the suite to build in (default: stable)",
    )
    p.add_argument(
        "--keyring",
        metavar="FILE",
        help="with suite-chroot: keyring of the mirror's Release (default: Debian's)",
    )
    p.add_argument(
        "--no-check-valid-until",
        action="store_true",
        help="accept an expired Release (a frozen or snapshot mirror)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="rebuild: %(message)s", stream=sys.stderr)
    try:
        return args.handler(args)
    except RebuilderError as e:
        print(f"rebuild: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("rebuild: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a full disk or a vanished directory outside our own checks
        where = f"{e.filename}: " if e.filename else ""
        print(f"rebuild: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
