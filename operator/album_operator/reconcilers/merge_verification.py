"""Checks a built master against its sources before any alias moves to it.

Every check reads; none writes. ID sets are compared by walking the master and the sources
in scroll order side by side, so memory does not grow with the collections.
"""

from __future__ import annotations

import random
from typing import Any

from album_operator.adapters.qdrant.merge import SourceReader, point_id
from album_operator.core.collection_plan import plan_collection
from album_operator.core.collections import DesiredCollection, ObservedCollection
from album_operator.core.engine import EngineCapabilities
from album_operator.core.idstreams import PointId, Reservoir, compare_ids, distinct_union
from album_operator.core.merge import merged_top_k, top_k_overlap
from album_operator.core.vectors import same_vectors
from album_operator.models.master_merge import VerifySettings


def config_differences(final: DesiredCollection, observed: ObservedCollection | None,
                       caps: EngineCapabilities) -> list[str]:
    """Settings of the master that differ from what it must be (empty when it matches)."""
    if observed is None:
        return ["the master does not exist"]
    plan = plan_collection(final, observed, caps,
                           owned_indexes=frozenset(i.field for i in final.payload_indexes))
    return [*plan.immutable_mismatches, *plan.drift]


def _mismatched_points(reader: SourceReader, sources: list[str], target: str,
                       sample: list[PointId], cosine: frozenset[str]
                       ) -> tuple[int, dict[PointId, Any]]:
    if not sample:
        return 0, {}
    copied = {point_id(r.id): r for r in reader.retrieve(target, sample)}
    latest: dict[PointId, Any] = {}
    for source in sources:  # later sources win, as they did during the copy
        latest.update({point_id(r.id): r for r in reader.retrieve(source, sample)})
    mismatched = 0
    for pid in sample:
        want, got = latest.get(pid), copied.get(pid)
        if want is None or got is None or want.payload != got.payload or not same_vectors(
                want.vector, got.vector, cosine):
            mismatched += 1
    return mismatched, latest


def _worst_overlap(settings: VerifySettings, reader: SourceReader, sources: list[str],
                   target: str, probes: list[Any]) -> float | None:
    worst: float | None = None
    for probe in probes:
        vector, using = probe.vector, None
        if isinstance(vector, dict):
            using, vector = next(iter(vector.items()))
        union = merged_top_k([reader.search(s, vector, settings.top_k, using)
                              for s in sources], settings.top_k)
        master = [pid for pid, _ in reader.search(target, vector, settings.top_k, using)]
        overlap = top_k_overlap(union, master)
        worst = overlap if worst is None else min(worst, overlap)
    return worst


def verify_master(settings: VerifySettings, reader: SourceReader, sources: list[str],
                  target: str, cosine: frozenset[str], config_problems: list[str], seed: int
                  ) -> dict[str, Any]:
    """Runs every check and returns ``status.verification``. ``cosine`` names the vectors
    compared after normalisation."""
    rng = random.Random(seed)
    sampler: Reservoir[PointId] = Reservoir(settings.sample_points, rng)
    ids = compare_ids(distinct_union([(s, reader.ids(s)) for s in sources]),
                      sampler.tap(reader.ids(target)))
    actual = reader.count(target)
    problems = []
    if actual != ids.expected:
        problems.append(f"count {actual} != expected {ids.expected}")
    if not ids.equal:
        problems.append(f"ID sets differ ({ids.missing} missing, {ids.unexpected} unexpected: "
                        f"{', '.join(ids.examples)})")
    sample = sampler.items
    mismatched, latest = _mismatched_points(reader, sources, target, sample, cosine)
    if mismatched:
        problems.append(f"{mismatched} of {len(sample)} sampled points differ")
    probes = [latest[p] for p in rng.sample(sample, min(settings.sample_queries, len(sample)))
              if p in latest]
    overlap = _worst_overlap(settings, reader, sources, target, probes)
    if overlap is not None and overlap < settings.min_top_k_overlap:
        problems.append(f"top-{settings.top_k} overlap {overlap:.2f} < "
                        f"{settings.min_top_k_overlap}")
    if config_problems:
        problems.append(f"master settings differ: {', '.join(config_problems)}")
    return {"passed": not problems, "expectedCount": ids.expected, "actualCount": actual,
            "sampledPoints": len(sample), "mismatchedPoints": mismatched,
            "sampledQueries": len(probes), "minOverlap": overlap,
            "configMatches": not config_problems, "message": "; ".join(problems)[:4000]}
