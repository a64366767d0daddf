"""An AlbumCollection's status, computed from what one reconcile found and did (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from album_operator.core.collection_plan import CollectionPlan
from album_operator.core.collections import ObservedCollection
from album_operator.core.conditions import ConditionUpdate, merge_conditions

Outcome = Literal[
    "InSync", "Created", "Recreated", "Repaired", "Adopted", "DriftReported",
    "ImmutableFieldMismatch", "Conflict", "Paused", "QdrantUnavailable", "InvalidConnection",
    "CollectionNameChanged",
]


IN_SYNC_OUTCOMES = frozenset({"InSync", "Created", "Recreated", "Repaired", "Adopted"})


def action_message(result: AlbumReconcileResult) -> str:
    """What a reconcile that changed something did, for its event."""
    name = result.collection
    drift = ", ".join(result.plan.drift) if result.plan else ""
    return {
        "Created": f"collection {name} was created from the spec",
        "Recreated": f"collection {name} was missing and has been recreated from the spec",
        "Repaired": f"collection {name} repaired: {drift}",
        "Adopted": (f"collection {name} carried the owner stamp {result.stamp_before}, which no "
                    "live AlbumCollection claims, and was adopted" if result.stamp_before
                    else f"collection {name} existed without an owner and was adopted"),
    }.get(result.outcome, result.message or f"collection {name}: {result.outcome}")


@dataclass(frozen=True)
class AlbumReconcileResult:
    """What happened in one reconcile; the status is derived from it alone."""

    outcome: Outcome
    collection: str
    engine: str | None
    message: str = ""
    observed: ObservedCollection | None = None
    plan: CollectionPlan | None = None
    ignored_settings: Sequence[str] = ()
    owned_indexes: Sequence[str] = ()
    recreated: bool = False
    synced_now: bool = False
    stamp_before: str | None = None
    """An adopted collection's owner stamp as found (uid, and reference when it had one)."""
    paused: bool = False


@dataclass(frozen=True)
class _ConditionPair:
    ready: ConditionUpdate
    synced: ConditionUpdate


def _ignored_note(result: AlbumReconcileResult) -> str:
    note = ""
    if result.ignored_settings:
        note += (f" The {result.engine} engine does not apply: "
                 f"{', '.join(result.ignored_settings)}.")
    if result.plan and result.plan.unowned_indexes:
        note += (" Payload indexes not declared by this resource, left in place: "
                 f"{', '.join(result.plan.unowned_indexes)}.")
    return note


def _conditions_for(result: AlbumReconcileResult) -> _ConditionPair:
    name = result.collection
    note = _ignored_note(result)
    differences = _differences(result)
    drift = ", ".join(differences)
    outcome = result.outcome
    if outcome in IN_SYNC_OUTCOMES and differences:
        outcome = "DriftReported"  # adopted under driftPolicy Report: the drift stays
    if outcome in IN_SYNC_OUTCOMES:
        # Synced names the state, not the last action (events and status.recreations tell
        # those): a resync that finds nothing to do after a creation or repair writes nothing.
        if result.paused:
            note += " Paused by albumops.io/paused: nothing would be changed."
        return _ConditionPair(
            ConditionUpdate("Ready", "True", "Ready", f"Collection {name} is ready."),
            ConditionUpdate("Synced", "True", "InSync", f"Collection {name} matches the spec."
                            f"{note}"))
    if outcome == "DriftReported":
        return _ConditionPair(
            ConditionUpdate("Ready", "True", "Ready", f"Collection {name} is ready."),
            ConditionUpdate("Synced", "False", "DriftReported",
                            f"driftPolicy is Report; differs from the spec: {drift}.{note}"))
    if outcome == "Paused":
        ready = (ConditionUpdate("Ready", "True", "Ready", result.message) if result.observed
                 else ConditionUpdate("Ready", "False", "Paused", result.message))
        return _ConditionPair(
            ready,
            ConditionUpdate("Synced", "Unknown", "Paused", result.message))
    if outcome == "ImmutableFieldMismatch":
        message = result.message
        unadoptable = result.plan is not None and result.plan.adopting
        ready_reason = "Conflict" if unadoptable else "ImmutableFieldMismatch"
        ready_message = (f"existing collection {name} is not owned by this resource and is "
                         f"incompatible with its spec, so it was not adopted; {message}"
                         if unadoptable else message)
        return _ConditionPair(
            ConditionUpdate("Ready", "False", ready_reason, ready_message),
            ConditionUpdate("Synced", "False", "ImmutableFieldMismatch", message))
    return _ConditionPair(
        ConditionUpdate("Ready", "False", outcome, result.message),
        ConditionUpdate("Synced", "Unknown", outcome, result.message))


def _differences(result: AlbumReconcileResult) -> tuple[str, ...]:
    """What differs from the spec after this reconcile (a paused one applied nothing)."""
    if result.plan is None:
        return ()
    if result.plan.immutable_mismatches:
        return result.plan.immutable_mismatches
    return result.plan.drift if result.outcome == "Paused" else result.plan.remaining_drift


def album_status(result: AlbumReconcileResult, previous: dict[str, Any], generation: int,
                 now: str) -> dict[str, Any]:
    """The whole status the resource should have after this reconcile."""
    pair = _conditions_for(result)
    conditions = merge_conditions(previous.get("conditions", []),
                                  [pair.ready, pair.synced], now, generation)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions,
        "collectionName": result.collection,
        "engine": result.engine,
        "ignoredSettings": list(result.ignored_settings),
        "ownedPayloadIndexes": sorted(result.owned_indexes),
        "recreations": int(previous.get("recreations", 0)) + (1 if result.recreated else 0),
        "drift": list(_differences(result)),
        "unmanagedPayloadIndexes": list(result.plan.unowned_indexes) if result.plan else [],
        "lastSyncTime": now if result.synced_now else previous.get("lastSyncTime"),
        "paused": (result.paused or result.outcome == "Paused") or None,
    }
    observed = result.observed
    if observed is not None:
        status.update(
            pointsCount=observed.points_count,
            indexedVectorsCount=observed.indexed_vectors_count,
            segmentsCount=observed.segments_count,
            qdrantStatus=observed.status,
        )
    return status
