"""The rules every point a device uploads must meet, as pure functions.

One set of rules, used by the operator's endpoint (``core/edge.py`` ``route_points``), the
``album-edge`` client before it queues a point (``edge/points.py``) and the tests' fake
endpoint; ``album_operator.edge.protocol`` re-exports them with the rest of the protocol.

A point is a JSON object with exactly the keys ``id``, ``vector`` and (optional)
``payload``:

- ``id``: an integer in ``0..2^64-1`` (not a boolean, not a float), or a UUID string in its
  hyphenated 8-4-4-4-12 form (hex digits in either case; answered and stored in lower case).
  The braced (``{...}``), ``urn:uuid:`` and 32-digit forms are refused.
- ``vector``: for a collection with the unnamed vector, a list; for named vectors, an object
  ``{name: list}`` naming every vector of the collection and no other. Each list is
  non-empty, has the vector's dimensions, and holds numbers (not booleans) that are finite
  and fit a float32 (``|v| <= 3.4028234663852886e38``): no NaN, no ``Infinity``, no ``1e39``
  or ``1e400`` (which JSON parsing turns into infinity).
- ``payload``: a JSON object (absent or null: ``{}``); its compact UTF-8 JSON at most
  :data:`MAX_PAYLOAD_BYTES`, nested at most :data:`MAX_PAYLOAD_DEPTH` deep (the payload
  object itself is depth 1), strings and keys valid Unicode (no lone surrogates), numbers
  finite, integers in ``-2^63..2^64-1``.

Why so strict: Qdrant's embedded engine stores what the server refuses (an ID of 2^64, an
infinite or overflowing coordinate, a lone surrogate, a payload nested too deep) and the
edge shard the operator publishes from then cannot take the point, so every later
publication would fail.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_ID = 2**64 - 1
FLOAT32_MAX = 3.4028234663852886e38
MAX_PAYLOAD_BYTES = 64 << 10
MAX_PAYLOAD_DEPTH = 16
MIN_PAYLOAD_INT = -(2**63)
MAX_PAYLOAD_INT = 2**64 - 1
UNNAMED = ""
POINT_FIELDS = frozenset({"id", "vector", "payload"})

PointId = int | str
Vector = list[float] | dict[str, list[float]]
Layout = Mapping[str, int]
"""A collection's dense vectors: name -> dimensions (``""``: the unnamed vector)."""

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")
_ID_RULE = ("a point ID is an integer in 0..2^64-1 or a UUID in hyphenated form "
            "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")


class PointRejected(ValueError):
    """A point breaks the protocol's rules; ``str(error)`` is the reason a device sees."""


@dataclass(frozen=True)
class ValidPoint:
    id: PointId
    vector: Vector
    payload: dict[str, Any] = field(default_factory=dict)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def normalise_id(raw: object) -> PointId:
    """The ID in its one spelling: the integer, or the lower-case hyphenated UUID."""
    if isinstance(raw, bool):
        raise PointRejected(f"{_ID_RULE}, not a boolean")
    if isinstance(raw, int):
        if not 0 <= raw <= MAX_ID:
            raise PointRejected(f"{_ID_RULE}; {raw} is outside 0..2^64-1")
        return raw
    if isinstance(raw, uuid.UUID):
        return str(raw)
    if isinstance(raw, str) and _UUID.match(raw):
        return raw.lower()
    raise PointRejected(f"{_ID_RULE}; got {_shown(raw)}")


def _floats(raw: object, name: str) -> list[float]:
    shown = "the unnamed vector" if name == UNNAMED else f"vector {name!r}"
    if not isinstance(raw, list) or not raw:
        raise PointRejected(f"{shown} must be a non-empty list of numbers")
    out: list[float] = []
    for position, value in enumerate(raw):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PointRejected(f"{shown}[{position}] is {_shown(value)}, not a number")
        if isinstance(value, int):
            if abs(value) > FLOAT32_MAX:
                raise PointRejected(f"{shown}[{position}] = {_shown(value)} overflows a "
                                    "float32")
            out.append(float(value))
            continue
        if not math.isfinite(value):
            raise PointRejected(f"{shown}[{position}] is {value}, not a finite number")
        if abs(value) > FLOAT32_MAX:
            raise PointRejected(f"{shown}[{position}] = {value!r} overflows a float32")
        out.append(value)
    return out


def parse_vector(raw: object) -> Vector:
    """The vector's shape and values, without a layout: a list, or ``{name: list}``."""
    if isinstance(raw, dict):
        if not raw:
            raise PointRejected("vector must name at least one vector")
        named: dict[str, list[float]] = {}
        for name, values in raw.items():
            if not isinstance(name, str):
                raise PointRejected(f"vector name {_shown(name)} is not a string")
            named[name] = _floats(values, name)
        return named
    return _floats(raw, UNNAMED)


def check_vector(vector: Vector, layout: Layout) -> None:
    """Whether ``vector`` (already parsed) fits the collection's ``layout`` exactly."""
    if not layout:
        raise PointRejected("the collection has no dense vector")
    if set(layout) == {UNNAMED}:
        if not isinstance(vector, list):
            raise PointRejected("the collection has one unnamed vector: send a list, "
                                f"not named vectors {sorted(vector)}")
        if len(vector) != layout[UNNAMED]:
            raise PointRejected(f"the unnamed vector has {len(vector)} dimensions, the "
                                f"collection's has {layout[UNNAMED]}")
        return
    if not isinstance(vector, dict):
        raise PointRejected(f"the collection has named vectors {sorted(layout)}: send "
                            "{name: [numbers]}, not an unnamed vector (a list)")
    unknown = sorted(set(vector) - set(layout))
    if unknown:
        raise PointRejected(f"unknown vector {unknown[0]!r}; the collection has "
                            f"{sorted(layout)}")
    missing = sorted(set(layout) - set(vector))
    if missing:
        raise PointRejected(f"vector {missing[0]!r} is missing; the collection has "
                            f"{sorted(layout)}")
    for name, values in vector.items():
        if len(values) != layout[name]:
            raise PointRejected(f"vector {name!r} has {len(values)} dimensions, the "
                                f"collection's has {layout[name]}")


def _depth_and_values(value: object, depth: int) -> int:
    """The nesting depth under ``value`` (an object or array counts one), checking numbers."""
    if isinstance(value, dict):
        if depth > MAX_PAYLOAD_DEPTH:
            return depth
        return max((_depth_and_values(v, depth + 1) for v in value.values()), default=depth)
    if isinstance(value, list):
        if depth > MAX_PAYLOAD_DEPTH:
            return depth
        return max((_depth_and_values(v, depth + 1) for v in value), default=depth)
    if isinstance(value, int) and not isinstance(value, bool) and not (
            MIN_PAYLOAD_INT <= value <= MAX_PAYLOAD_INT):
        raise PointRejected(f"payload integer {_shown(value)} is outside -2^63..2^64-1")
    return depth - 1


def parse_payload(raw: object) -> dict[str, Any]:
    """The payload: a JSON object within the size and depth limits (None: ``{}``)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PointRejected("payload must be a JSON object")
    if _depth_and_values(raw, 1) > MAX_PAYLOAD_DEPTH:
        raise PointRejected(f"payload is nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    try:
        text = json.dumps(raw, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(text.encode("utf-8"))
    except ValueError as error:  # NaN/Infinity, or a lone surrogate (UnicodeEncodeError)
        raise PointRejected(f"payload is not valid JSON: {_shown(str(error))}") from None
    except TypeError as error:  # a Python caller's non-JSON value or key
        raise PointRejected(f"payload is not JSON: {error}") from None
    if size > MAX_PAYLOAD_BYTES:
        raise PointRejected(f"payload is {size} bytes of JSON, more than {MAX_PAYLOAD_BYTES}")
    return raw


def parse_point(raw: object) -> ValidPoint:
    """Every rule but the collection's vector layout (which the device checks against its
    shard's and the endpoint against the routed collection's: :func:`check_point`)."""
    if not isinstance(raw, dict):
        raise PointRejected('a point is a JSON object {"id", "vector", "payload"}')
    unknown = set(raw) - POINT_FIELDS
    if unknown:
        raise PointRejected(f"unknown point fields: {sorted(map(str, unknown))}")
    if "id" not in raw or "vector" not in raw:
        raise PointRejected('a point needs "id" and "vector"')
    return ValidPoint(normalise_id(raw["id"]), parse_vector(raw["vector"]),
                      parse_payload(raw.get("payload")))


def check_point(raw: object, layout: Layout) -> ValidPoint:
    """The point, valid for a collection with ``layout``; raises :class:`PointRejected`."""
    point = parse_point(raw)
    check_vector(point.vector, layout)
    return point


def echo_id(raw: object) -> PointId | None:
    """The ID a rejection names: the normalised ID, else what was sent when it is an integer
    or a short string, else None (the rejection's ``index`` still names the point)."""
    try:
        return normalise_id(raw)
    except PointRejected:
        pass
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and len(raw) <= 100:
        return raw
    return None
