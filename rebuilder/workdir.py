"""``rebuild init``: a working directory an operator can point cron at.

It holds the configuration (from a template), a git repository whose history of
``state/`` is the audit log, and a ``.gitignore`` that keeps what must never be
committed out of it: the private signing key, the rendered site, the caches, the
journals and the lock.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rebuilder import audit
from rebuilder.config import DEFAULT_CONFIG
from rebuilder.errors import ConfigError

GITIGNORE = """\
# made by `rebuild init`: none of this belongs in the audit log
/rebuilder.key
/site/
/.cache/
/state/*.journal
/state/.rebuilder.lock
/state/.last-run.json
/state/.running.json
/state/.pending.json
/state/.summary/
"""

FIRST_COMMIT = """\
rebuilder: new working directory

rebuilder.toml  the configuration: settings and profiles (what to rebuild, from where)
.gitignore      keeps the signing key, the site, the caches, journals and the lock out

Each pass commits state/ here; `git log state/` is the audit log.
"""


def template() -> str:
    """The configuration a new working directory starts with."""
    return resources.files("rebuilder").joinpath("templates", DEFAULT_CONFIG).read_text()


def init(folder: Path) -> Path:
    """Make ``folder`` a working directory; the config file's path. Refuses to overwrite."""
    cfg = folder / DEFAULT_CONFIG
    if cfg.exists():
        raise ConfigError(f"{cfg}: already exists; not overwritten")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    cfg.write_text(template())
    ignore = folder / ".gitignore"
    have = ignore.read_text().splitlines() if ignore.exists() else []
    missing = [ln for ln in GITIGNORE.splitlines() if ln not in have]
    if missing:
        sep = "\n" if have and not ignore.read_text().endswith("\n") else ""
        with ignore.open("a") as f:
            f.write(sep + "\n".join(missing) + "\n")
    if audit.work_tree(folder) is None:
        audit.git_init(folder)
    audit.commit(folder, [cfg, ignore], FIRST_COMMIT)
    return cfg
