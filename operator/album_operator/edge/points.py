"""Points as the device handles them, as pure functions: parsing, IDs, validation, hit merging.

- :class:`EdgePoint` ``(id, vector, payload)``: ``id`` is an unsigned integer or a UUID
  string in hyphenated form (normalised to lower case); ``vector`` is a list of floats (the
  unnamed vector ``""``) or ``{name: [floats]}``; ``payload`` a JSON object.
  :meth:`EdgePoint.from_json` parses ``{"id", "vector", "payload"}`` (one JSONL line) and
  :meth:`EdgePoint.to_json` gives the body the endpoint's ``POST /points`` takes.
- The rules themselves (IDs, vectors, payload limits) are the protocol's
  (``edge/protocol.py``, from ``core/edge_points.py``): the endpoint applies the same ones.
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from album_operator.core.vectors import same_vectors
from album_operator.edge import protocol
from album_operator.edge.protocol import (
    UNNAMED,
    PointId,
    PointRejected,
    Vector,
    normalise_id,
    parse_point,
    parse_vector,
)

__all__ = ["HIGHER_IS_BETTER", "UNNAMED", "EdgePoint", "Hit", "PointId", "PointRejected",
           "StoredPoint", "Vector", "VectorSpec", "check_point", "id_key", "layout_from_json",
           "merge_hits", "normalise_id", "parse_jsonl", "parse_vector", "same_content"]

HIGHER_IS_BETTER = {"cosine": True, "dot": True, "euclid": False, "manhattan": False}


def id_key(raw: object) -> str:
    """The queue's key for a point ID (the endpoint may answer an ID in another spelling)."""
    return str(normalise_id(raw))


@dataclass(frozen=True)
class EdgePoint:
    id: PointId
    vector: Vector
    payload: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: object) -> EdgePoint:
        """Every protocol rule but the layout's (``protocol.parse_point``); raises
        ``PointRejected``, a ValueError."""
        point = parse_point(obj)
        return cls(point.id, point.vector, point.payload)

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
    """Why ``point`` breaks the protocol's rules for ``layout`` (the shard's, from
    ``GET /snapshots``), or None. The very check the endpoint makes
    (``protocol.check_point``), so a point it would reject is refused before it is queued."""
    try:
        protocol.check_point(point.to_json(), {name: spec.size for name, spec in layout.items()})
    except PointRejected as error:
        return str(error)
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
