"""Reconciles one AlbumCollection: observe Qdrant, plan in core, apply, report.

Order matters: ownership is settled before Qdrant is touched, the plan is computed before
anything is written, and a paused resource or an immutable mismatch writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from album_operator.adapters.kube import SecretUnavailable
from album_operator.adapters.qdrant import collections as qdrant_collections
from album_operator.adapters.qdrant.connection import QdrantEngine, QdrantError
from album_operator.core.album_status import AlbumReconcileResult, Outcome
from album_operator.core.claims import Claimant, rightful_owner
from album_operator.core.collection_plan import (
    Action,
    CollectionPlan,
    CreateCollection,
    CreatePayloadIndex,
    UpdateCollection,
    plan_collection,
)
from album_operator.core.collections import (
    OWNER_KIND,
    ObservedCollection,
    desired_from_spec,
    ignored_settings,
)
from album_operator.models.album_collection import AlbumCollectionSpec
from album_operator.reconcilers.resource import ResourceRef
from album_operator.services import Services

KIND = "AlbumCollection"
PAUSED_ANNOTATION = "albumops.io/paused"


def claim_key(namespace: str, spec: AlbumCollectionSpec) -> str:
    """Resources on the same connection claiming the same collection share this key."""
    connection = (f"{namespace}/{spec.connection.secret_ref.name}" if spec.connection
                  else "default")
    return f"{connection}|{spec.resolved_collection_name()}"


def describe_action(action: Action) -> str:
    if isinstance(action, CreateCollection):
        return f"create collection {action.desired.name}"
    if isinstance(action, UpdateCollection):
        return f"update collection {action.name}"
    if isinstance(action, CreatePayloadIndex):
        return f"create payload index {action.index.field}"
    return f"delete payload index {action.field}"


def _owned_by_another_kind(observed: ObservedCollection) -> str | None:
    """A collection another kind made (a merge's master, say) is never adopted."""
    kind = observed.metadata.get(OWNER_KIND)
    return f"{kind} {observed.owner_ref()}" if kind and kind != KIND else None


def _owned_indexes(spec: AlbumCollectionSpec, previous: Sequence[str],
                   observed: ObservedCollection | None, applies: bool) -> list[str]:
    if not applies:
        return []
    present = set(observed.payload_indexes) if observed else set()
    return sorted({i.field for i in spec.payload_indexes} | (set(previous) & present))


def _outcome(plan: CollectionPlan, observed_before: ObservedCollection | None,
             previously_created: bool, repair: bool) -> Outcome:
    if observed_before is None:
        return "Recreated" if previously_created else "Created"
    if plan.adopting:
        return "Adopted"
    if plan.drift:
        return "Repaired" if repair else "DriftReported"
    return "InSync"


async def reconcile_album_collection(
    ref: ResourceRef,
    spec: AlbumCollectionSpec,
    status: dict[str, Any],
    services: Services,
    claimants: Sequence[Claimant],
) -> AlbumReconcileResult:
    collection = spec.resolved_collection_name()
    try:
        engine = await services.engine_for(ref.namespace, spec.connection)
    except SecretUnavailable as exc:
        return AlbumReconcileResult("InvalidConnection", collection, None, str(exc))

    try:
        return await _reconcile_with_engine(ref, spec, status, engine, claimants)
    except QdrantError as exc:
        return AlbumReconcileResult("QdrantUnavailable", collection, engine.capabilities.kind,
                                    f"Qdrant at {engine.label} failed: {exc}")


async def _reconcile_with_engine(
    ref: ResourceRef,
    spec: AlbumCollectionSpec,
    status: dict[str, Any],
    engine: QdrantEngine,
    claimants: Sequence[Claimant],
) -> AlbumReconcileResult:
    caps = engine.capabilities
    desired = desired_from_spec(spec, ref.owner())
    common: dict[str, Any] = {"collection": desired.name, "engine": caps.kind,
                              "ignored_settings": ignored_settings(desired, caps)}
    observed = await qdrant_collections.describe(engine, desired.name)
    incumbent = observed.owner_uid() if observed else None
    winner = rightful_owner([*claimants, ref.claimant()], incumbent)
    if winner is not None and winner.uid != ref.uid:
        return AlbumReconcileResult("Conflict", observed=observed, message=(
            f"collection {desired.name} is claimed by the older AlbumCollection "
            f"{winner.describe()}; this resource will not touch it"), **common)
    previous_owned = status.get("ownedPayloadIndexes", [])

    if observed is not None:
        other = _owned_by_another_kind(observed)
        if other:
            return AlbumReconcileResult("Conflict", observed=observed, message=(
                f"collection {desired.name} is owned by {other}; not adopting it"), **common)

    repair = spec.drift_policy == "Repair"
    plan = plan_collection(desired, observed, caps, frozenset(previous_owned), repair=repair)
    owned = _owned_indexes(spec, previous_owned, observed, caps.applies_payload_indexes)
    if plan.immutable_mismatches:
        message = ("cannot change without recreating the collection (nothing was changed): "
                   + "; ".join(plan.immutable_mismatches))
        return AlbumReconcileResult("ImmutableFieldMismatch", message=message,
                                    observed=observed, plan=plan, owned_indexes=owned, **common)
    if ref.annotation_is_true(PAUSED_ANNOTATION) and plan.actions:
        pending = ", ".join(describe_action(a) for a in plan.actions)
        return AlbumReconcileResult(
            "Paused", observed=observed, plan=plan, owned_indexes=owned, **common,
            message=f"paused by {PAUSED_ANNOTATION}; not applied: {pending}")

    for action in plan.actions:
        await qdrant_collections.apply(engine, action)
    after = await qdrant_collections.describe(engine, desired.name) if plan.actions else observed
    # lastSyncTime survives a status written while the collection was gone; counts do not
    outcome = _outcome(plan, observed, status.get("lastSyncTime") is not None, repair)
    stamp = (f"{observed.owner_ref() or 'unknown'} (uid {incumbent})"
             if outcome == "Adopted" and observed and incumbent else None)
    return AlbumReconcileResult(
        outcome, observed=after, plan=plan, recreated=outcome == "Recreated",
        stamp_before=stamp, paused=ref.annotation_is_true(PAUSED_ANNOTATION),
        owned_indexes=_owned_indexes(spec, previous_owned, after, caps.applies_payload_indexes),
        synced_now=bool(plan.actions) or not status.get("lastSyncTime"), **common)


async def delete_album_collection(ref: ResourceRef, spec: AlbumCollectionSpec,
                                  services: Services) -> str:
    """Removes the collection if the policy says so and this resource owns it.

    Raises QdrantError or SecretUnavailable when Qdrant cannot be reached; the caller decides
    how long to keep trying.
    """
    name = spec.resolved_collection_name()
    if spec.deletion_policy == "Retain":
        return f"collection {name} retained (deletionPolicy Retain)"
    engine = await services.engine_for(ref.namespace, spec.connection)
    observed = await qdrant_collections.describe(engine, name)
    if observed is None:
        return f"collection {name} was already gone"
    if observed.owner_uid() != ref.uid:
        return f"collection {name} is not owned by this resource; left in place"
    await qdrant_collections.delete(engine, name)
    return f"collection {name} deleted (deletionPolicy Delete)"
