"""Points as the device handles them, as pure functions: parsing, IDs, validation, hit merging.

- :class:`EdgePoint` ``(id, vector, payload)``: ``id`` is an unsigned integer or a UUID
  string (normalised to lower-case hyphenated form); ``vector`` is a list of floats (the
  unnamed vector ``""``) or ``{name: [floats]}``; ``payload`` a JSON object.
  :meth:`EdgePoint.from_json` parses ``{"id", "vector", "payload"}`` (one JSONL line) and
  :meth:`EdgePoint.to_json` gives the body the endpoint's ``POST /points`` takes.
- :func:`id_key`: one string per point ID, used by the upload queue to match the IDs the
  endpoint confirms with the rows it sent (``5`` and ``"5"`` never collide: UUIDs have dashes).
- :class:`VectorSpec` and :func:`check_point`: the reason a point does not fit the shard's
  vector layout (from ``GET /snapshots``), or None.
- :class:`Hit` and :func:`merge_hits`: local and mirror results combined, a local point
  shadowing the mirror's point with the same ID.
- :func:`same_content`: whether two stored points hold the same payload and vectors, which
  is when a local point has come back through the mirror and can be retired.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from album_operator.core.vectors import same_vectors

PointId = int | str
Vector = list[float] | dict[str, list[float]]
UNNAMED = ""
HIGHER_IS_BETTER = {"cosine": True, "dot": True, "euclid": False, "manhattan": False}
MAX_ID = 2**64 - 1


def normalise_id(raw: object) -> PointId:
    """An unsigned 64-bit integer or a UUID string (any accepted spelling, returned in the
    canonical one); anything else raises ValueError."""
    if isinstance(raw, bool):
        raise ValueError("a point ID is an unsigned integer or a UUID, not a boolean")
    if isinstance(raw, int):
        if not 0 <= raw <= MAX_ID:
            raise ValueError(f"integer point ID {raw} is outside 0..2^64-1")
        return raw
    if isinstance(raw, uuid.UUID):
        return str(raw)
    if isinstance(raw, str):
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            raise ValueError(f"point ID {raw!r} is neither an unsigned integer nor a UUID"
                             ) from None
    raise ValueError(f"point ID {raw!r} is neither an unsigned integer nor a UUID")


def id_key(raw: object) -> str:
    """The queue's key for a point ID (the endpoint may answer an ID in another spelling)."""
    return str(normalise_id(raw))


def _floats(raw: object, where: str) -> list[float]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{where} must be a non-empty list of numbers")
    out: list[float] = []
    for value in raw:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where} holds {value!r}, not a number")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{where} holds {value!r}, not a finite number")
        out.append(number)
    return out


def parse_vector(raw: object) -> Vector:
    if isinstance(raw, dict):
        if not raw:
            raise ValueError("vector must name at least one vector")
        return {str(name): _floats(values, f"vector {name!r}") for name, values in raw.items()}
    return _floats(raw, "vector")


@dataclass(frozen=True)
class EdgePoint:
    id: PointId
    vector: Vector
    payload: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: object) -> EdgePoint:
        if not isinstance(obj, dict):
            raise ValueError("a point is a JSON object {\"id\", \"vector\", \"payload\"}")
        unknown = set(obj) - {"id", "vector", "payload"}
        if unknown:
            raise ValueError(f"unknown point fields: {sorted(unknown)}")
        if "id" not in obj or "vector" not in obj:
            raise ValueError("a point needs \"id\" and \"vector\"")
        payload = obj.get("payload") or {}
        if not isinstance(payload, dict):
            raise ValueError("payload must be a JSON object")
        return cls(normalise_id(obj["id"]), parse_vector(obj["vector"]), payload)

    @property
    def key(self) -> str:
        return str(self.id)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "vector": self.vector, "payload": self.payload}

    def dumps(self) -> str:
        """Compact JSON of :meth:`to_json`, as stored in the queue and sent upstream."""
        return json.dumps(self.to_json(), separators=(",", ":"), allow_nan=False)


def parse_jsonl(lines: Iterable[str]) -> Iterable[EdgePoint]:
    """Points from JSON lines (blank lines skipped); a bad line raises ValueError naming it."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield EdgePoint.from_json(json.loads(line))
        except ValueError as error:
            raise ValueError(f"line {number}: {error}") from None


@dataclass(frozen=True)
class VectorSpec:
    size: int
    distance: str

    @property
    def higher_is_better(self) -> bool:
        try:
            return HIGHER_IS_BETTER[self.distance.lower()]
        except KeyError:
            raise ValueError(f"unknown distance {self.distance!r}") from None


def layout_from_json(raw: Mapping[str, Any]) -> dict[str, VectorSpec]:
    """``{"name": {"size", "distance"}}`` (``GET /snapshots``' ``vectors``) as VectorSpecs."""
    layout = {}
    for name, spec in raw.items():
        size, distance = spec.get("size"), spec.get("distance")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"vector {name!r} has no positive integer size")
        if not isinstance(distance, str) or distance.lower() not in HIGHER_IS_BETTER:
            raise ValueError(f"vector {name!r} has unknown distance {distance!r}")
        layout[str(name)] = VectorSpec(size, distance)
    if not layout:
        raise ValueError("the shard declares no dense vector")
    return layout


def check_point(point: EdgePoint, layout: Mapping[str, VectorSpec]) -> str | None:
    """Why ``point`` does not fit ``layout``, or None when it does."""
    vectors = point.vector if isinstance(point.vector, dict) else {UNNAMED: point.vector}
    for name, values in vectors.items():
        spec = layout.get(name)
        if spec is None:
            shown = "the unnamed vector" if name == UNNAMED else f"vector {name!r}"
            return f"{shown} is not in the shard's layout {sorted(layout)}"
        if len(values) != spec.size:
            return f"vector {name!r} has {len(values)} dimensions, the shard's has {spec.size}"
    return None


Source = Literal["local", "mirror"]


@dataclass(frozen=True)
class Hit:
    id: PointId
    score: float
    payload: dict[str, Any]
    source: Source

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "score": self.score, "payload": self.payload,
                "source": self.source}


class StoredPoint(Protocol):
    """A point as a shard returns it (qdrant-edge's ``Record``)."""

    @property
    def payload(self) -> Any: ...

    @property
    def vector(self) -> Any: ...


def same_content(mine: StoredPoint, theirs: StoredPoint, cosine: frozenset[str]) -> bool:
    """Equal payloads and equal vectors, those named in ``cosine`` after normalisation."""
    return ((mine.payload or {}) == (theirs.payload or {})
            and same_vectors(mine.vector, theirs.vector, cosine))


def merge_hits(local: Sequence[Hit], mirror: Sequence[Hit], shadowed: set[str], limit: int,
               higher_is_better: bool) -> list[Hit]:
    """The best ``limit`` hits of both shards. ``shadowed`` holds the ID keys the local shard
    has, whose mirror hits are dropped (the local version wins even when it scores lower).
    On equal scores the local hit comes first."""
    kept = [*local, *(hit for hit in mirror if str(hit.id) not in shadowed)]
    sign = -1.0 if higher_is_better else 1.0
    ordered = sorted(enumerate(kept), key=lambda item: (sign * item[1].score, item[0]))
    return [hit for _, hit in ordered[:limit]]
