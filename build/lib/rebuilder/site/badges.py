"""Badges: a small SVG and a shields.io endpoint document, per profile and per package.

A package's badge shows its verdict (four possible badges, so each package's
badge is a hard link to one of four files); a profile's shows its share of
GOOD groups. The endpoint JSON follows shields.io's schema 1
(``schemaVersion, label, message, color``), for
``https://img.shields.io/endpoint?url=<site>/badges/<profile>.json``.

>>> svg("reproducible", "GOOD", "#4c1").startswith(b'<svg xmlns="http://www.w3.org/2000/svg"')
True
>>> share_color(0.97), share_color(0.5), share_color(None)
('brightgreen', 'yellow', 'lightgrey')
"""

from __future__ import annotations

import json

from markupsafe import escape

from rebuilder.model import Status

LABEL = "reproducible"
STATUS_COLORS = {  # shields.io colour names
    Status.GOOD.value: "brightgreen",
    Status.BAD.value: "red",
    Status.FAIL.value: "orange",
    Status.UNKWN.value: "lightgrey",
}
HEX = {
    "brightgreen": "#4c1",
    "green": "#97ca00",
    "yellow": "#dfb317",
    "orange": "#fe7d37",
    "red": "#e05d44",
    "lightgrey": "#9f9f9f",
}


def share_color(share: float | None) -> str:
    if share is None:
        return "lightgrey"
    if share >= 0.95:
        return "brightgreen"
    if share >= 0.8:
        return "green"
    if share >= 0.5:
        return "yellow"
    return "red"


def share_message(share: float | None) -> str:
    return "no packages" if share is None else f"{100 * share:.1f}%"


def _width(text: str) -> int:
    # Verdana 11px averages ~6.5 units a character; wide enough for digits and capitals
    return int(len(text) * 6.8) + 10


def svg(label: str, message: str, color: str) -> bytes:
    """A flat two-part badge; every text is escaped."""
    lw, mw = _width(label), _width(message)
    total = lw + mw
    lab, msg = escape(label), escape(message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label="{lab}: {msg}"><title>{lab}: {msg}</title>'
        f'<rect width="{lw}" height="20" fill="#555"/>'
        f'<rect x="{lw}" width="{mw}" height="20" fill="{escape(color)}"/>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" '
        f'font-size="11"><text x="{lw / 2:.1f}" y="14">{lab}</text>'
        f'<text x="{lw + mw / 2:.1f}" y="14">{msg}</text></g></svg>\n'
    ).encode()


def endpoint(label: str, message: str, color: str) -> bytes:
    """shields.io's endpoint badge schema."""
    doc = {"schemaVersion": 1, "label": label, "message": message, "color": color}
    return (json.dumps(doc, sort_keys=True) + "\n").encode()


def status_badges(status: str) -> tuple[bytes, bytes]:
    """(SVG, endpoint JSON) of a package verdict."""
    color = STATUS_COLORS[status]
    return svg(LABEL, status, HEX[color]), endpoint(LABEL, status, color)


def share_badges(share: float | None) -> tuple[bytes, bytes]:
    """(SVG, endpoint JSON) of a profile's share of GOOD groups."""
    color = share_color(share)
    message = share_message(share)
    return svg(LABEL, message, HEX[color]), endpoint(LABEL, message, color)
