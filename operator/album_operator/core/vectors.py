"""How two stored points' dense vectors compare, for every reader that checks a copy: the
merge verification, the publishing shard's diff and the edge device's retirement of points.

Cosine vectors compare after L2 normalisation: engines store them normalised, and local mode
returns them either way. Other distances compare as stored, because a scaled Dot or Euclid
vector scores differently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

# Float32 storage, and float64 arithmetic on the way back, differ well inside these.
RELATIVE_TOLERANCE = 1e-4
ABSOLUTE_TOLERANCE = 1e-6


class HasDistance(Protocol):
    @property
    def distance(self) -> str: ...


def cosine_names(layout: Mapping[str, HasDistance]) -> frozenset[str]:
    """The vector names of ``layout`` whose distance is cosine ("" for the unnamed one)."""
    return frozenset(name for name, spec in layout.items() if spec.distance.lower() == "cosine")


def distance_names(layout: Mapping[str, HasDistance]) -> frozenset[str]:
    """The vector names of ``layout`` whose search score is a distance (lower ranks first)."""
    return frozenset(name for name, spec in layout.items()
                     if spec.distance.lower() in ("euclid", "manhattan"))


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def vectors_match(left: Sequence[float], right: Sequence[float], normalise: bool) -> bool:
    """Equal to float32 precision; with ``normalise``, equal after L2 normalisation."""
    if len(left) != len(right):
        return False
    if normalise:
        left, right = _unit(left), _unit(right)
    return all(math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=ABSOLUTE_TOLERANCE)
               for a, b in zip(left, right, strict=True))


def dense_vectors(vector: Any) -> dict[str, list[float]]:
    """A record's vectors by name, the unnamed one under "" (Qdrant returns a bare list)."""
    if isinstance(vector, dict):
        return {name: list(values) for name, values in vector.items()}
    return {"": list(vector or [])}


def same_vectors(left: Any, right: Any, cosine: frozenset[str]) -> bool:
    """Two records' vectors match name by name; those named in ``cosine`` after
    normalisation."""
    ours, theirs = dense_vectors(left), dense_vectors(right)
    return ours.keys() == theirs.keys() and all(
        vectors_match(ours[name], theirs[name], normalise=name in cosine) for name in ours)


def _unit_rows(rows: Any) -> Any:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0, 1.0, norms)


def rows_match(left: Sequence[Sequence[float]], right: Sequence[Sequence[float]],
               normalise: bool) -> list[bool]:
    """``vectors_match`` for many pairs at once (row i of ``left`` with row i of ``right``),
    in one array operation: a catch-up compares every point of a collection."""
    if not left:
        return []
    sizes = {len(row) for row in (*left, *right)}
    if len(sizes) != 1:
        return [vectors_match(a, b, normalise) for a, b in zip(left, right, strict=True)]
    ours, theirs = np.asarray(left, dtype=np.float64), np.asarray(right, dtype=np.float64)
    if normalise:
        ours, theirs = _unit_rows(ours), _unit_rows(theirs)
    limit = np.maximum(RELATIVE_TOLERANCE * np.maximum(np.abs(ours), np.abs(theirs)),
                       ABSOLUTE_TOLERANCE)
    close: list[bool] = np.all(np.abs(ours - theirs) <= limit, axis=1).tolist()
    return close


def matching_pairs(pairs: Sequence[tuple[Any, Any]], cosine: frozenset[str]) -> list[bool]:
    """``same_vectors`` for each pair of vectors (as records hold them), compared name by name
    in bulk."""
    mine = [dense_vectors(a) for a, _ in pairs]
    theirs = [dense_vectors(b) for _, b in pairs]
    verdict = [ours.keys() == other.keys() for ours, other in zip(mine, theirs, strict=True)]
    names = {name for vectors in mine for name in vectors}
    for name in names:
        rows = [i for i, ok in enumerate(verdict) if ok and name in mine[i]]
        matched = rows_match([mine[i][name] for i in rows], [theirs[i][name] for i in rows],
                             normalise=name in cosine)
        for i, ok in zip(rows, matched, strict=True):
            verdict[i] = verdict[i] and ok
    return verdict
