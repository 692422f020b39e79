"""The site as GitHub Pages publishes it: within its 1 GB, by leaving out what no client
can read from a host without query routing or server rules.

upload-pages-artifact packs the site with ``tar --dereference --hard-dereference``, so
every link is a full copy, and a host like Pages ignores query strings. So, in place,
just before the upload:

* ``<distro>/api/v1/builds/`` goes (the pieces of several-link attestations; the rest of
  a build's v1 files come from v0 through the rules): rebuildctl finds a build only
  through ``packages/binary?name=``, which needs a rewrite rule (docs/site.md); our client
  falls back to v0;
* ``<distro>/api/v1/packages/by-name/`` goes: it only answers ``?name=`` through that rule;
* the plain v0 copies of logs and diffoscope texts go: each is in the results store
  (``builds/``, gzip'd), which the pages' views load and link. Attestations stay (small,
  and ``rebuild verify --check-files`` reads them).

    python -m rebuilder.site.pages SITE_DIR
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from rebuilder.site import cache, paths

TEXTS = tuple(k for k in paths.API_KINDS if k in paths.VIEWS)  # served from the store


def trim(site: Path) -> int:
    """Remove from ``site`` what the Pages tree leaves out; the number of files removed."""
    removed = 0
    # the site is no longer as the last render left it: the next one must not trust that
    for name in cache.OWN:
        (site / name).unlink(missing_ok=True)
    # the renderer's compiled templates are its own, not the site's: not published
    compiled = site / cache.COMPILED
    if compiled.is_dir() and not compiled.is_symlink():
        shutil.rmtree(compiled)
    for api in sorted(site.glob(f"*/{paths.API}")):
        if api.parent.name in paths.RESERVED_TOP or api.is_symlink() or not api.is_dir():
            continue  # p/api: a profile's pages, not a distribution's API
        for folder in (api / "v1/builds", api / "v1/packages/by-name"):
            if folder.is_dir() and not folder.is_symlink():
                removed += sum(len(files) for _, _, files in os.walk(folder))
                shutil.rmtree(folder)
        builds = api / "v0/builds"
        if not builds.is_dir() or builds.is_symlink():
            continue
        with os.scandir(builds) as it:
            for build in it:
                for kind in TEXTS:
                    f = Path(build.path, kind)
                    if f.is_file() or f.is_symlink():
                        f.unlink()
                        removed += 1
    return removed


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0], "index.html").is_file():
        print("usage: python -m rebuilder.site.pages SITE_DIR (a rendered site)", file=sys.stderr)
        return 2
    n = trim(Path(argv[0]))
    print(f"pages: {n} files left out of the Pages tree", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
