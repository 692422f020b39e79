"""Bring back the result files (``builds/``) of the site published by an earlier run.

A runner starts empty, and a Pages deployment replaces the whole site, so the
merge job must add the new results to the old ones. The old ones come from
the newest ``github-pages`` artifact of this repository (upload-pages-artifact
keeps it for the retention the workflow gives it), not from a second copy on
the published site: that would double the site's size.

    python .ci/restore_site.py SITE_DIR

Needs GITHUB_API_URL, GITHUB_REPOSITORY and GH_TOKEN (actions: read); without
them, or without any earlier artifact, it says so and leaves SITE_DIR as is.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from rebuilder import fetch

ARTIFACT = "github-pages"
SAFE = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4


def main(site: Path) -> int:
    names = ("GITHUB_API_URL", "GITHUB_REPOSITORY", "GH_TOKEN")
    api, repo, token = (os.environ.get(k) for k in names)
    if not (api and repo and token):
        print("restore: not on GitHub Actions: nothing restored", file=sys.stderr)
        return 0
    auth = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
    http = fetch.session()
    r = http.get(
        f"{api}/repos/{repo}/actions/artifacts",
        params={"name": ARTIFACT, "per_page": 1},
        headers=auth,
        timeout=60,
    )
    r.raise_for_status()
    found = [a for a in r.json().get("artifacts", []) if not a.get("expired")]
    if not found:
        print("restore: no published site yet: nothing restored", file=sys.stderr)
        return 0
    # the archive URL answers with a redirect to a signed URL that needs no token
    r = http.get(found[0]["archive_download_url"], headers=auth, allow_redirects=False, timeout=60)
    r.raise_for_status()
    with tempfile.TemporaryDirectory() as tmp:
        z = Path(tmp) / "site.zip"
        fetch.download(r.headers["Location"], z)
        site.mkdir(parents=True, exist_ok=True)
        n = 0
        with (
            zipfile.ZipFile(z) as zf,
            zf.open("artifact.tar") as raw,
            tarfile.open(fileobj=io.BufferedReader(raw), mode="r|") as tar,
        ):
            for m in tar:
                parts = Path(m.name.removeprefix("./")).parts
                # regular files and folders under builds/ only: no links, nothing outside
                if parts[:1] != ("builds",) or ".." in parts or not (m.isfile() or m.isdir()):
                    continue
                tar.extract(m, site, **SAFE)
                n += m.isfile()
    print(f"restore: {n} result files of run {found[0]['workflow_run']['id']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "site")))
