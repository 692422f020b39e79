"""Read any rebuilder (our static site or a live rebuilderd) and check installed packages.

* :mod:`~rebuilder.client.remote`: what a rebuilder publishes, v1 first, v0 when v1 is
  missing, over :mod:`rebuilder.fetch` (or from a site on disk);
* :mod:`~rebuilder.client.records`: the packages, queue and dashboard as the client holds
  them, whichever API version they came from (wire formats: :mod:`rebuilder.api`);
* :mod:`~rebuilder.client.installed`: the packages installed here (dpkg, pacman);
* :mod:`~rebuilder.client.verify`: were they reproduced, by a quorum of rebuilders, and do
  the signed attestations name the local files' bytes;
* :mod:`~rebuilder.client.output`: lines in the manner of rebuildctl and debian-repro-status.
"""

from rebuilder.client.installed import (
    Installed,
    PackageDatabaseError,
    read_dpkg_status,
    read_pacman_local,
)
from rebuilder.client.output import (
    format_dashboard,
    format_pkg_line,
    format_queue_line,
    format_verify_line,
    format_verify_summary,
)
from rebuilder.client.records import Dashboard, PkgEntry, QueueEntry
from rebuilder.client.remote import (
    BUILD_FILE_KINDS,
    ClientError,
    attestation_fetcher,
    default_cache_dir,
    fetch_build_file,
    fetch_dashboard,
    fetch_pkgs,
    fetch_public_keys,
    fetch_queue,
)
from rebuilder.client.verify import (
    DEFAULT_CACHE_DIRS,
    FileCheck,
    PackageVerdict,
    VerifyReport,
    check_files,
    verify_installed,
)

__all__ = [
    "BUILD_FILE_KINDS",
    "DEFAULT_CACHE_DIRS",
    "ClientError",
    "Dashboard",
    "FileCheck",
    "Installed",
    "PackageDatabaseError",
    "PackageVerdict",
    "PkgEntry",
    "QueueEntry",
    "VerifyReport",
    "attestation_fetcher",
    "check_files",
    "default_cache_dir",
    "fetch_build_file",
    "fetch_dashboard",
    "fetch_pkgs",
    "fetch_public_keys",
    "fetch_queue",
    "format_dashboard",
    "format_pkg_line",
    "format_queue_line",
    "format_verify_line",
    "format_verify_summary",
    "read_dpkg_status",
    "read_pacman_local",
    "verify_installed",
]
