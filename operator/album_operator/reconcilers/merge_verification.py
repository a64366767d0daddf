"""Checks a built master against its sources before any alias moves to it.

Every check reads; none writes. ID sets are compared by walking the master and the sources
in scroll order side by side, so memory does not grow with the collections.

After a catch-up, the master is checked against the snapshot of the final pass (its ID count
and digest): that pass compared every point's payload and vectors with the sources and
repaired the differences, and nothing else writes the master. Points written into the sources
since then are counted (``changedSinceCatchUp``), not failed: the next build copies them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from album_operator.adapters.qdrant.merge import SourceReader, point_id
from album_operator.core.catchup import IdSet
from album_operator.core.collection_plan import plan_collection
from album_operator.core.collections import DesiredCollection, ObservedCollection
from album_operator.core.engine import EngineCapabilities
from album_operator.core.idstreams import (
    IdSetDiff,
    PointId,
    Reservoir,
    compare_ids,
    distinct_union,
)
from album_operator.core.merge import ranked_union, top_k_overlap
from album_operator.core.vectors import same_vectors
from album_operator.models.master_merge import VerifySettings

PROBES_AT_ONCE = 4


def config_differences(final: DesiredCollection, observed: ObservedCollection | None,
                       caps: EngineCapabilities) -> list[str]:
    """Settings of the master that differ from what it must be (empty when it matches)."""
    if observed is None:
        return ["the master does not exist"]
    plan = plan_collection(final, observed, caps,
                           owned_indexes=frozenset(i.field for i in final.payload_indexes))
    return [*plan.immutable_mismatches, *plan.drift]


@dataclass(frozen=True)
class _Compared:
    differing: set[PointId]
    """Points the master and the sources hold differently (or only one of them holds)."""
    latest: dict[PointId, Any]
    """The sources' version of each point: the later source's, as the copy wrote it."""
    holder: dict[PointId, int]
    """Index of the source that version comes from."""


def _differing_points(reader: SourceReader, sources: list[str], target: str,
                      sample: list[PointId], cosine: frozenset[str]) -> _Compared:
    if not sample:
        return _Compared(set(), {}, {})
    copied = {point_id(r.id): r for r in reader.retrieve(target, sample)}
    latest: dict[PointId, Any] = {}
    holder: dict[PointId, int] = {}
    for index, source in enumerate(sources):
        for record in reader.retrieve(source, sample):
            latest[point_id(record.id)] = record
            holder[point_id(record.id)] = index
    differing = set()
    for pid in sample:
        want, got = latest.get(pid), copied.get(pid)
        if want is None or got is None or want.payload != got.payload or not same_vectors(
                want.vector, got.vector, cosine):
            differing.add(pid)
    return _Compared(differing, latest, holder)


class _IdSetTap:
    """Adds up the IDs of a stream as it passes."""

    def __init__(self) -> None:
        self.value = IdSet()

    def tap(self, ids: Iterator[PointId]) -> Iterator[PointId]:
        for each in ids:
            self.value = self.value.with_ids((each,))
            yield each


def _search_overlap(settings: VerifySettings, reader: SourceReader, sources: list[str],
                    target: str, probe: Any, cosine: frozenset[str],
                    ascending: frozenset[str]) -> float:
    """Top-k of the master against the top-k of the sources' union, both exact. Points that
    differ between the two now (written into a source after the catch-up) rank in neither,
    and a shared ID ranks by the version the master holds (the later source's), so a source
    being written does not count against the master. Only the IDs on which the two lists
    disagree are read to find such points."""
    vector, using = probe.vector, None
    if isinstance(vector, dict):
        using, vector = next(iter(vector.items()))
    depth = settings.top_k * 2
    hits = [(score, pid, index) for index, source in enumerate(sources)
            for pid, score in reader.search(source, vector, depth, using)]
    higher_is_better = (using or "") not in ascending
    master = [pid for pid, _ in reader.search(target, vector, depth, using)]
    unstable: set[PointId] = set()
    holder: dict[PointId, int] = {}
    checked: set[PointId] = set()
    while True:
        expected = ranked_union(hits, higher_is_better, unstable, holder)[:settings.top_k]
        actual = [pid for pid in master if pid not in unstable][:settings.top_k]
        suspects = (set(expected) ^ set(actual)) - checked
        if not suspects:
            return top_k_overlap(expected, actual)
        checked |= suspects
        compared = _differing_points(reader, sources, target, sorted(suspects, key=str),
                                     cosine)
        unstable |= compared.differing
        holder.update(compared.holder)


def _worst_overlap(settings: VerifySettings, reader: SourceReader, sources: list[str],
                   target: str, probes: list[Any], cosine: frozenset[str],
                   ascending: frozenset[str]) -> float | None:
    def overlap(probe: Any) -> float:
        return _search_overlap(settings, reader, sources, target, probe, cosine, ascending)
    # Exact searches scan every vector on the server; a server runs several at once.
    with ThreadPoolExecutor(max_workers=PROBES_AT_ONCE if reader.concurrent else 1,
                            thread_name_prefix="verify") as pool:
        overlaps = list(pool.map(overlap, probes))
    return min(overlaps, default=None)


def _id_problems(ids: IdSetDiff, actual: int, master_ids: IdSet, snapshot: IdSet | None
                 ) -> list[str]:
    if snapshot is None:
        problems = [] if actual == ids.expected else [
            f"count {actual} != expected {ids.expected}"]
        if not ids.equal:
            problems.append(f"ID sets differ ({ids.missing} missing, {ids.unexpected} "
                            f"unexpected: {', '.join(ids.examples)})")
        return problems
    problems = [] if actual == snapshot.count else [
        f"count {actual} != {snapshot.count} of the final catch-up"]
    if master_ids != snapshot:
        problems.append(f"the master's IDs ({master_ids.count}) are not the {snapshot.count} "
                        "IDs of the final catch-up")
    return problems


def verify_master(settings: VerifySettings, reader: SourceReader, sources: list[str],
                  target: str, cosine: frozenset[str], config_problems: list[str], seed: int,
                  snapshot: IdSet | None = None, ascending: frozenset[str] = frozenset()
                  ) -> dict[str, Any]:
    """Runs every check and returns ``status.verification``. ``cosine`` names the vectors
    compared after normalisation, ``ascending`` those whose search scores are distances
    (Euclid, Manhattan: lower ranks first); ``snapshot`` is the final catch-up's ID set,
    when the build had one (without it the master must equal the sources as they are
    now)."""
    rng = random.Random(seed)
    sampler: Reservoir[PointId] = Reservoir(settings.sample_points, rng)
    master_ids = _IdSetTap()
    with reader.id_streams([*sources, target]) as streams:
        master_stream = streams.pop()[1]
        ids = compare_ids(distinct_union(streams), sampler.tap(master_ids.tap(master_stream)))
    actual = reader.count(target)
    problems = _id_problems(ids, actual, master_ids.value, snapshot)
    sample = sampler.items
    sampled = _differing_points(reader, sources, target, sample, cosine)
    differing, latest = sampled.differing, sampled.latest
    if differing and snapshot is None:
        problems.append(f"{len(differing)} of {len(sample)} sampled points differ")
    probes = [latest[p] for p in rng.sample(sample, min(settings.sample_queries, len(sample)))
              if p in latest]
    overlap = _worst_overlap(settings, reader, sources, target, probes, cosine, ascending)
    if overlap is not None and overlap < settings.min_top_k_overlap:
        problems.append(f"top-{settings.top_k} overlap {overlap:.2f} < "
                        f"{settings.min_top_k_overlap}")
    if config_problems:
        problems.append(f"master settings differ: {', '.join(config_problems)}")
    result: dict[str, Any] = {
        "passed": not problems,
        "expectedCount": snapshot.count if snapshot else ids.expected, "actualCount": actual,
        "sampledPoints": len(sample), "mismatchedPoints": len(differing),
        "sampledQueries": len(probes), "minOverlap": overlap,
        "configMatches": not config_problems, "message": "; ".join(problems)[:4000]}
    if snapshot is not None:
        result["changedSinceCatchUp"] = ids.missing + ids.unexpected + len(differing)
    return result
