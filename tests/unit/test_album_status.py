"""An AlbumCollection's status follows from the reconcile result alone."""

from __future__ import annotations

from typing import Any

import pytest

from album_operator.core.album_status import AlbumReconcileResult, Outcome, album_status
from album_operator.core.collection_plan import CollectionPlan
from album_operator.core.collections import ObservedCollection, ObservedVector

NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"
OBSERVED = ObservedCollection(name="album_2020", vectors={"": ObservedVector(512, "Cosine")},
                              points_count=42, indexed_vectors_count=40, segments_count=2,
                              status="green")


def result(outcome: Outcome, **extra: Any) -> AlbumReconcileResult:
    return AlbumReconcileResult(outcome, "album_2020", "embedded", observed=OBSERVED, **extra)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


@pytest.mark.parametrize(("outcome", "ready", "synced"), [
    # Synced names the state; what was done is told by the event
    ("Created", ("True", "Ready"), ("True", "InSync")),
    ("InSync", ("True", "Ready"), ("True", "InSync")),
    ("Repaired", ("True", "Ready"), ("True", "InSync")),
    ("Adopted", ("True", "Ready"), ("True", "InSync")),
    ("Recreated", ("True", "Ready"), ("True", "InSync")),
    ("DriftReported", ("True", "Ready"), ("False", "DriftReported")),
    ("ImmutableFieldMismatch", ("False", "ImmutableFieldMismatch"),
     ("False", "ImmutableFieldMismatch")),
    ("Conflict", ("False", "Conflict"), ("Unknown", "Conflict")),
    ("QdrantUnavailable", ("False", "QdrantUnavailable"), ("Unknown", "QdrantUnavailable")),
    ("InvalidConnection", ("False", "InvalidConnection"), ("Unknown", "InvalidConnection")),
    ("Paused", ("True", "Ready"), ("Unknown", "Paused")),
])
def test_conditions_for_each_outcome(outcome: Outcome, ready: tuple[str, str],
                                     synced: tuple[str, str]) -> None:
    status = album_status(result(outcome), {}, 1, NOW)
    assert conditions(status) == {"Ready": ready, "Synced": synced}


def test_an_unowned_incompatible_collection_is_a_conflict_that_names_the_fields() -> None:
    plan = CollectionPlan(immutable_mismatches=("vectors.size (spec 512, Qdrant 768)",),
                          adopting=True)
    status = album_status(result("ImmutableFieldMismatch", plan=plan,
                                 message="vectors.size (spec 512, Qdrant 768)"), {}, 1, NOW)
    assert conditions(status)["Ready"] == ("False", "Conflict")
    assert conditions(status)["Synced"] == ("False", "ImmutableFieldMismatch")
    assert status["drift"] == ["vectors.size (spec 512, Qdrant 768)"]


def test_counts_come_from_the_observed_collection() -> None:
    status = album_status(result("InSync"), {}, 1, NOW)
    assert (status["pointsCount"], status["indexedVectorsCount"], status["segmentsCount"],
            status["qdrantStatus"]) == (42, 40, 2, "green")


def test_an_idle_resync_produces_an_identical_status() -> None:
    first = album_status(result("Created", synced_now=True), {}, 1, NOW)
    idle = album_status(result("InSync"), first, 1, LATER)
    assert conditions(idle)["Synced"] == ("True", "InSync")
    again = album_status(result("InSync"), idle, 1, LATER)
    assert again == idle
    assert idle["lastSyncTime"] == NOW


def test_recreations_are_counted() -> None:
    status = album_status(result("Recreated", recreated=True), {"recreations": 2}, 1, NOW)
    assert status["recreations"] == 3


def test_the_ignored_settings_are_named_in_the_synced_message() -> None:
    status = album_status(result("Created", ignored_settings=("hnsw", "quantization")), {}, 1,
                          NOW)
    synced = next(c for c in status["conditions"] if c["type"] == "Synced")
    assert "does not apply: hnsw, quantization" in synced["message"]
    assert status["ignoredSettings"] == ["hnsw", "quantization"]


def test_unmanaged_indexes_are_reported_in_status_and_message() -> None:
    plan = CollectionPlan(unowned_indexes=("manual",))
    status = album_status(result("InSync", plan=plan), {}, 1, NOW)
    assert status["unmanagedPayloadIndexes"] == ["manual"]
    synced = next(c for c in status["conditions"] if c["type"] == "Synced")
    assert "left in place: manual" in synced["message"]


@pytest.mark.parametrize(("outcome", "repairs", "drift", "synced"), [
    ("Repaired", True, [], ("True", "InSync")),
    ("DriftReported", False, ["hnsw.m"], ("False", "DriftReported")),
    ("Adopted", True, [], ("True", "InSync")),
    ("Adopted", False, ["hnsw.m"], ("False", "DriftReported")),
    ("Paused", True, ["hnsw.m"], ("Unknown", "Paused")),
])
def test_drift_names_what_still_differs_after_the_reconcile(
        outcome: Outcome, repairs: bool, drift: list[str], synced: tuple[str, str]) -> None:
    plan = CollectionPlan(drift=("hnsw.m",), repairs=repairs, adopting=outcome == "Adopted")
    status = album_status(result(outcome, plan=plan), {}, 1, NOW)
    assert status["drift"] == drift
    assert conditions(status)["Synced"] == synced
