"""rebuilderd's wire formats, v0 and v1: records with their JSON, in one place.

The site writes them (:mod:`rebuilder.site.api_v0`, :mod:`rebuilder.site.api_v1`)
and the client reads them (:mod:`rebuilder.client`), as rebuilderd's daemon
and rebuildctl share ``common/src/api``. Field names, nullability and
spellings follow rebuilderd 0.28 (``common/src/api/v0/mod.rs`` and
``common/src/api/v1/models/*.rs``).
"""
