"""The plan a MasterMerge build (or a dry run) reports before it acts, as tables of cases."""

from __future__ import annotations

from typing import Any

import pytest

from album_operator.core.collections import DesiredCollection
from album_operator.core.idstreams import Collision, CollisionScan
from album_operator.core.merge_plan import (
    SourceCount,
    build_plan,
    estimated_disk_bytes,
    measured_rate,
    plan_message,
    planned_condition,
    quantized_bytes,
)
from album_operator.models.collection_settings import (
    HnswConfig,
    QuantizationConfig,
    VectorParams,
)


def master(size: int = 512, m: int | None = 16, datatype: str = "Float32",
           quantization: dict[str, Any] | None = None) -> DesiredCollection:
    return DesiredCollection(
        name="album_master_v3",
        vectors={"": VectorParams.model_validate({"size": size, "distance": "Cosine",
                                                  "datatype": datatype})},
        hnsw=HnswConfig(m=m) if m is not None else None,
        quantization=QuantizationConfig.model_validate(quantization) if quantization else None,
        shard_number=3, replication_factor=2)


@pytest.mark.parametrize(("quantization", "size", "expected"), [
    (None, 512, 0),
    ({"disabled": True}, 512, 0),
    ({"scalar": {"type": "int8"}}, 512, 512),
    ({"binary": {}}, 512, 64),
    ({"binary": {}}, 100, 13),
    ({"product": {"compression": "x16"}}, 512, 128),
    ({"product": {"compression": "x64"}}, 512, 32),
])
def test_quantized_copies_take_what_their_kind_keeps(quantization: dict[str, Any] | None,
                                                     size: int, expected: int) -> None:
    assert quantized_bytes(size, quantization) == expected


@pytest.mark.parametrize(("collection", "per_point"), [
    (master(), 64 + 512 * 4 + 2 * 16 * 4),
    (master(m=32), 64 + 512 * 4 + 2 * 32 * 4),
    (master(m=None), 64 + 512 * 4 + 2 * 16 * 4),  # Qdrant's default m
    (master(datatype="Float16"), 64 + 512 * 2 + 2 * 16 * 4),
    (master(quantization={"scalar": {"type": "int8"}}), 64 + 512 * 4 + 512 + 2 * 16 * 4),
])
def test_disk_is_vectors_quantized_copies_and_links_per_point(collection: DesiredCollection,
                                                              per_point: int) -> None:
    assert estimated_disk_bytes(1000, collection) == 1000 * per_point


@pytest.mark.parametrize(("history", "rate"), [
    ([], None),
    ([{"result": "Failed", "pointsPerSecond": 900.0}], None),
    ([{"result": "Succeeded"}, {"result": "Succeeded", "pointsPerSecond": 2500.0}], 2500.0),
    ([{"result": "Succeeded", "pointsPerSecond": 3100.0},
      {"result": "Succeeded", "pointsPerSecond": 2500.0}], 3100.0),
])
def test_the_measured_rate_is_the_newest_successful_builds(history: list[dict[str, Any]],
                                                           rate: float | None) -> None:
    assert measured_rate(history) == rate


SCAN = CollisionScan(distinct=270, colliding_ids=2, examples=(
    Collision(1000, ("album_2017", "album_2018")), Collision(1001, ("album_2017", "album_2018"))))
SOURCES = [SourceCount("album_2017", 100), SourceCount("album_2018", 172)]


def test_a_plan_names_sources_counts_collisions_target_time_and_disk() -> None:
    plan = build_plan(SOURCES, SCAN, master(), rate=2000.0)
    assert plan == {
        "sources": [{"name": "album_2017", "points": 100}, {"name": "album_2018", "points": 172}],
        "pointsToCopy": 272, "distinctPoints": 270, "collidingIds": 2,
        "collisionExamples": ["1000 (album_2017 & album_2018)",
                              "1001 (album_2017 & album_2018)"],
        "target": "album_master_v3", "vectors": {"(unnamed)": "512 Cosine Float32"},
        "shardNumber": 3, "replicationFactor": 2, "hnswM": 16,
        "estimatedDiskBytes": 270 * (64 + 2048 + 128),
        "measuredPointsPerSecond": 2000.0, "expectedCopySeconds": 1}
    assert plan_message(plan) == (
        "2 sources, 272 points to copy, 270 distinct, 2 IDs in more than one source; target "
        "album_master_v3; copy about 1s at 2,000 points/s (last build); about 590.6 KiB of "
        "vectors and index")


def test_without_a_measured_rate_the_copy_time_is_unknown_not_guessed() -> None:
    plan = build_plan(SOURCES, SCAN, master(), rate=None)
    assert "expectedCopySeconds" not in plan
    assert "copy time unknown until a build has measured the rate" in plan_message(plan)


@pytest.mark.parametrize(("plan", "problem", "expected"), [
    (None, None, ("Unknown", "NotPlannedYet")),
    ({"sources": []}, None, ("True", "Planned")),
    (None, ("SourceMissing", "source collection x does not exist"), ("False", "SourceMissing")),
])
def test_the_planned_condition(plan: dict[str, Any] | None, problem: tuple[str, str] | None,
                               expected: tuple[str, str]) -> None:
    condition = planned_condition(plan, problem)
    assert (condition.type, condition.status, condition.reason) == ("Planned", *expected)
