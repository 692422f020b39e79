"""Feeds of status changes: Atom (RFC 4287) and JSON Feed 1.1.

Entries are :class:`~rebuilder.site.history.Change` values, newest first.
Links are absolute when the site's public URL (``site_url``) is known.
Without it, Atom links are relative to the feed (RFC 4287 resolves them
against the feed's own URL) and JSON Feed, which has no base, leaves its
``url`` fields out. Entry ids do not depend on the URL: ``urn:uuid:`` from a
hash of profile, group and build id, so moving the site does not re-announce
old entries.

Names come from repository indexes: every text goes through :func:`xml_text`
(escaped, and stripped of the code points XML 1.0 forbids, which a hostile
name could otherwise use to make the whole feed unparsable).

>>> xml_text('<a & "b"\\x00\\x1b>')
'&lt;a &amp; &quot;b&quot;\\ufffd\\ufffd&gt;'
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from rebuilder.site import paths
from rebuilder.site.history import Change

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_TO_ESCAPE = re.compile('[<>&"\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')
_NS = uuid.UUID("1b6d9a52-6f6e-4b39-9c55-1a0c8e2b6a10")  # this tool's namespace for entry ids


def xml_text(s: str) -> str:
    """``s`` safe as XML character data and attribute values."""
    if _TO_ESCAPE.search(s) is None:
        return s  # (most: a maintainer's feeds escape some 17,000 texts each pass)
    return escape(_NOT_XML.sub("\ufffd", s), {'"': "&quot;"})


def _clean(s: str) -> str:
    """No lone surrogates: JSON feeds are read by strict UTF-8 decoders."""
    return s.encode("utf-8", "replace").decode("utf-8")


def entry_id(c: Change) -> str:
    return _entry_id(c.profile, c.key, c.build_id)


@functools.lru_cache(maxsize=1024)  # each entry is in an Atom feed and a JSON Feed, in turn
def _entry_id(profile: str, key: str, build_id: int) -> str:
    r"""``uuid.uuid5(_NS, ...)``, without making a UUID object (a few times faster).

    >>> _entry_id("p", "k", 7) == "urn:uuid:" + str(uuid.uuid5(_NS, "p\x00k\x007"))
    True
    """
    name = f"{profile}\x00{key}\x00{build_id}".encode()
    digest = bytearray(hashlib.sha1(_NS.bytes + name, usedforsecurity=False).digest()[:16])
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # RFC 4122 variant
    x = digest.hex()
    return f"urn:uuid:{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def title(c: Change) -> str:
    arrow = f"{c.before} → {c.after}" if c.before else f"first build: {c.after}"
    return f"{c.name} {c.version} ({c.suite}): {arrow}"


def summary(c: Change) -> str:
    return f"{title(c)} in profile {c.profile}, build {c.build_id}."


def _link(site_url: str, feed: str, target: str) -> str:
    if site_url:
        return site_url.rstrip("/") + "/" + paths.url(target)
    return paths.href(feed, target)


def _rfc3339(t: _dt.datetime) -> str:
    return t.replace(microsecond=0).isoformat() + "Z"


def atom(
    name: str,
    items: Sequence[Change],
    *,
    feed: str,
    page: str,
    site_url: str,
    updated: _dt.datetime,
) -> bytes:
    """An Atom feed at site path ``feed``; ``page`` is the HTML page it belongs to."""
    when = _rfc3339(max((c.at for c in items), default=updated))
    feed_id = "urn:uuid:" + str(uuid.uuid5(_NS, f"feed\x00{site_url}\x00{feed}"))
    head = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<title>{xml_text(name)}</title>",
        f"<id>{feed_id}</id>",
        f"<updated>{when}</updated>",
        "<author><name>rebuilder</name></author>",
        f'<link rel="alternate" type="text/html" href="{xml_text(_link(site_url, feed, page))}"/>',
    ]
    if site_url:
        head.append(f'<link rel="self" href="{xml_text(_link(site_url, feed, feed))}"/>')
    body = []
    for c in items:
        link = xml_text(_link(site_url, feed, c.page))
        body.append(
            "<entry>"
            f"<title>{xml_text(title(c))}</title>"
            f"<id>{entry_id(c)}</id>"
            f"<updated>{_rfc3339(c.at)}</updated>"
            f'<link rel="alternate" type="text/html" href="{link}"/>'
            f'<category term="{xml_text(c.after)}"/>'
            f'<summary type="text">{xml_text(summary(c))}</summary>'
            "</entry>"
        )
    return ("\n".join([*head, *body, "</feed>"]) + "\n").encode("utf-8")


def json_feed(name: str, items: Sequence[Change], *, feed: str, page: str, site_url: str) -> bytes:
    """A JSON Feed 1.1 document at site path ``feed``."""
    doc: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": _clean(name),
        "items": [],
    }
    if site_url:
        doc["home_page_url"] = _link(site_url, feed, page)
        doc["feed_url"] = _link(site_url, feed, feed)
    for c in items:
        item: dict[str, Any] = {
            "id": entry_id(c),
            "title": _clean(title(c)),
            "content_text": _clean(summary(c)),
            "date_published": _rfc3339(c.at),
            "tags": [c.after] + (["regression"] if c.regression else []),
            "_rebuilder": {
                "profile": _clean(c.profile),
                "key": _clean(c.key),
                "name": _clean(c.name),
                "version": _clean(c.version),
                "before": c.before,
                "after": c.after,
                "build_id": c.build_id,
            },
        }
        if site_url:
            item["url"] = _link(site_url, feed, c.page)
        doc["items"].append(item)
    # compact: an indent takes json's pure-Python encoder, a tenth of the speed (a
    # maintainer's feeds are made again whenever one of their groups changes)
    text = json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return (text + "\n").encode()
