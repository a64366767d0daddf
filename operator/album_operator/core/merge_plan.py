"""What a MasterMerge build will do, decided before it does anything: the Plan in status.

Every build fills it in Planning; ``spec.dryRun`` stops there, creating nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from album_operator.core.collections import DesiredCollection
from album_operator.core.conditions import ConditionUpdate
from album_operator.core.idstreams import CollisionScan
from album_operator.core.merge import QDRANT_DEFAULT_HNSW_M

BYTES_PER_COMPONENT = {"Float32": 4, "Float16": 2, "Uint8": 1}
PRODUCT_COMPRESSION = {"x4": 4, "x8": 8, "x16": 16, "x32": 32, "x64": 64}
# Per point on top of its vectors: the ID, its version and the ID tracker's maps.
POINT_OVERHEAD_BYTES = 64
HNSW_LINK_BYTES = 4


@dataclass(frozen=True)
class SourceCount:
    name: str
    points: int


def quantized_bytes(size: int, quantization: Mapping[str, Any] | None) -> int:
    """Bytes of one vector's quantized copy (kept beside the original)."""
    if not quantization or quantization.get("disabled"):
        return 0
    if quantization.get("scalar") is not None:
        return size
    if quantization.get("binary") is not None:
        return math.ceil(size / 8)
    product = quantization.get("product") or {}
    return math.ceil(size * 4 / PRODUCT_COMPRESSION.get(product.get("compression", "x16"), 16))


def estimated_disk_bytes(points: int, master: DesiredCollection) -> int:
    """The master's vectors, their quantized copies and HNSW links (layer 0 holds 2m links per
    point); payloads are not counted, their size is not known before reading them."""
    hnsw_m = (master.hnsw.m if master.hnsw and master.hnsw.m is not None
              else QDRANT_DEFAULT_HNSW_M)
    quantization = (master.quantization.model_dump(mode="json", exclude_none=True)
                    if master.quantization else None)
    per_point = POINT_OVERHEAD_BYTES
    for vector in master.vectors.values():
        per_point += vector.size * BYTES_PER_COMPONENT.get(vector.datatype or "Float32", 4)
        per_point += quantized_bytes(vector.size, quantization)
        per_point += 2 * hnsw_m * HNSW_LINK_BYTES
    return points * per_point


def measured_rate(history: Iterable[Mapping[str, Any]]) -> float | None:
    """The copy rate of the newest successful build that measured one."""
    for record in history:
        rate = record.get("pointsPerSecond")
        if record.get("result") == "Succeeded" and rate:
            return float(rate)
    return None


def build_plan(sources: Sequence[SourceCount], scan: CollisionScan, master: DesiredCollection,
               rate: float | None) -> dict[str, Any]:
    """``status.plan``: the resolved sources, their counts and collisions, the target and its
    settings, the expected copy time at the last measured rate, and the disk it will take."""
    points = sum(source.points for source in sources)
    plan: dict[str, Any] = {
        "sources": [{"name": s.name, "points": s.points} for s in sources],
        "pointsToCopy": points, "distinctPoints": scan.distinct,
        "collidingIds": scan.colliding_ids,
        "collisionExamples": [f"{c.point_id} ({' & '.join(c.sources)})"
                              for c in scan.examples],
        "target": master.name,
        "vectors": {name or "(unnamed)": f"{v.size} {v.distance} {v.datatype or 'Float32'}"
                    for name, v in sorted(master.vectors.items())},
        "shardNumber": master.shard_number, "replicationFactor": master.replication_factor,
        "hnswM": master.hnsw.m if master.hnsw else None,
        "estimatedDiskBytes": estimated_disk_bytes(scan.distinct, master),
    }
    if rate:
        plan["measuredPointsPerSecond"] = round(rate, 1)
        plan["expectedCopySeconds"] = math.ceil(points / rate)
    return {k: v for k, v in plan.items() if v is not None}


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def plan_message(plan: Mapping[str, Any]) -> str:
    sources = plan.get("sources", [])
    copy_time = (f"copy about {plan['expectedCopySeconds']}s at "
                 f"{plan['measuredPointsPerSecond']:,.0f} points/s (last build)"
                 if plan.get("expectedCopySeconds") is not None
                 else "copy time unknown until a build has measured the rate")
    return (f"{len(sources)} sources, {plan.get('pointsToCopy', 0):,} points to copy, "
            f"{plan.get('distinctPoints', 0):,} distinct, {plan.get('collidingIds', 0):,} IDs "
            f"in more than one source; target {plan.get('target')}; {copy_time}; about "
            f"{_size(plan.get('estimatedDiskBytes', 0))} of vectors and index")


def planned_condition(plan: Mapping[str, Any] | None, problem: tuple[str, str] | None
                      ) -> ConditionUpdate:
    if problem is not None:
        return ConditionUpdate("Planned", "False", *problem)
    if plan is None:
        return ConditionUpdate("Planned", "Unknown", "NotPlannedYet", "no plan yet")
    return ConditionUpdate("Planned", "True", "Planned", plan_message(plan))
