"""Field readers for the JSON of both API versions; each raises ``ValueError`` naming the field."""

from __future__ import annotations

import datetime as _dt
import functools
import json
from collections.abc import Mapping
from typing import Any


def obj(d: Any) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ValueError("not an object")
    return d


def req_str(d: Mapping[str, Any], key: str, *, empty: bool = False) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not (value or empty):
        raise ValueError(f"no {key!r}")
    return value


def opt_str(d: Mapping[str, Any], key: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key!r} is not a string")
    return value


def count(d: Mapping[str, Any], key: str) -> int:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key!r} is not a count")
    return value


def opt_int(d: Mapping[str, Any], key: str) -> int | None:
    value = d.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{key!r} is not an integer")
    return value


def req_int(d: Mapping[str, Any], key: str) -> int:
    value = opt_int(d, key)
    if value is None:
        raise ValueError(f"no {key!r}")
    return value


def opt_bool(d: Mapping[str, Any], key: str) -> bool:
    return d.get(key) is True


def opt_time(d: Mapping[str, Any], key: str) -> _dt.datetime | None:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            t = _dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:  # rebuilderd's times are naive UTC (chrono's NaiveDateTime); keep them so
            return t if t.tzinfo is None else t.astimezone(_dt.UTC).replace(tzinfo=None)
    raise ValueError(f"{key!r} is not a date and time")


def req_time(d: Mapping[str, Any], key: str) -> _dt.datetime:
    t = opt_time(d, key)
    if t is None:
        raise ValueError(f"no {key!r}")
    return t


def one_of(d: Mapping[str, Any], key: str, allowed: frozenset[str], *, null: bool) -> str | None:
    value = d.get(key)
    if value is None and null:
        return None
    if value is None:
        raise ValueError(f"no {key!r}")
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"unknown {key} {value!r}")
    return value


# -- writing: the wire types' hand-made encoders (a Debian-sized render encodes some 80,000
# records of each version: a few times faster than json.dumps of their dicts)


def json_str(s: str) -> str:
    """``s`` as a JSON string; printable ASCII but ``"`` and ``\\`` needs no escaping.

    >>> json_str("hello"), json_str("é"), json_str('a"b') == json.dumps('a"b')
    ('"hello"', '"é"', True)
    """
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'
    return json.dumps(s, ensure_ascii=False)


json_few = functools.lru_cache(maxsize=4096)(json_str)  # distros, components, architectures
