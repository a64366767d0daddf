"""kopf wiring for AlbumCollection: parse, reconcile, write status once, post events."""

from __future__ import annotations

import datetime as dt
from typing import Any

import kopf

from album_operator.adapters.metrics import DRIFT_REPAIRS, RECONCILES
from album_operator.core.album_status import (
    IN_SYNC_OUTCOMES,
    AlbumReconcileResult,
    action_message,
    album_status,
)
from album_operator.core.claims import Claimant
from album_operator.core.timeutil import rfc3339
from album_operator.handlers.common import (
    condition_reason,
    delete_resource,
    event,
    parse_spec,
    run_step,
)
from album_operator.models.album_collection import AlbumCollectionSpec, AlbumCollectionStatus
from album_operator.reconcilers.album_collection import (
    KIND,
    claim_key,
    delete_album_collection,
    reconcile_album_collection,
)
from album_operator.reconcilers.resource import ResourceRef
from album_operator.services import Services

WARNING_OUTCOMES = {"Recreated", "DriftReported", "ImmutableFieldMismatch", "Conflict",
                    "QdrantUnavailable", "InvalidConnection", "CollectionNameChanged"}
ACTION_OUTCOMES = {"Created", "Recreated", "Repaired", "Adopted"}


async def index_claims(*, namespace: str | None, name: str, body: kopf.Body, **_: Any
                       ) -> dict[str, Claimant]:
    """kopf index: which AlbumCollections claim which collection (per connection). Async,
    so kopf calls it on the event loop instead of a thread per event."""
    try:
        spec = AlbumCollectionSpec.model_validate(dict(body.get("spec") or {}))
    except ValueError:
        return {}
    meta = body["metadata"]
    namespace = namespace or ""
    return {claim_key(namespace, spec): Claimant(
        meta.get("creationTimestamp", ""), meta["uid"], namespace, name)}


def _post_events(body: kopf.Body, result: AlbumReconcileResult, previous: dict[str, Any],
                 failing: bool) -> None:
    """An event for every action taken, and for a change of the Synced state; a collection
    first seen in sync (status lost, or a reconcile racing the first one's write) is no
    news, a warning is news even on first sight. A failure (``failing``) was announced by
    run_step with its Ready condition: its Synced change is not a second event."""
    before = condition_reason(previous, "Synced")
    after = "InSync" if result.outcome in IN_SYNC_OUTCOMES else result.outcome
    changed = before != after and (before is not None or result.outcome in WARNING_OUTCOMES)
    if result.outcome in ACTION_OUTCOMES or (changed and not failing):
        event(body, result.outcome in WARNING_OUTCOMES, result.outcome,
              action_message(result))


async def on_change(*, body: kopf.Body, patch: kopf.Patch, memo: Services,
                    logger: kopf.Logger, **kwargs: Any) -> None:
    await _reconcile(body, patch, memo, logger, kwargs["album_claims"], timer=False)


async def on_tick(*, body: kopf.Body, patch: kopf.Patch, memo: Services,
                  logger: kopf.Logger, **kwargs: Any) -> None:
    await _reconcile(body, patch, memo, logger, kwargs["album_claims"], timer=True)


async def _reconcile(body: kopf.Body, patch: kopf.Patch, memo: Services, logger: kopf.Logger,
                     album_claims: kopf.Index[str, Claimant], timer: bool) -> None:
    results: list[AlbumReconcileResult] = []

    async def reconcile(ref: ResourceRef, previous: dict[str, Any]) -> dict[str, Any]:
        spec = parse_spec(AlbumCollectionSpec, body)
        result = _renamed(spec, previous)
        if result is None:
            claimants = list(album_claims.get(claim_key(ref.namespace, spec), []))
            result = await reconcile_album_collection(ref, spec, previous, memo, claimants)
        results.append(result)
        return album_status(result, previous, ref.generation, rfc3339(memo.clock()))

    report = await run_step(KIND, AlbumCollectionStatus, body, patch, memo, logger, reconcile,
                            timer, rest_seconds=memo.config.resync_seconds)
    if report is None or not results:
        return
    result = results[0]
    RECONCILES.labels(KIND, result.outcome).inc()
    if result.outcome == "Repaired":
        DRIFT_REPAIRS.labels(KIND).inc()
    if report.written:
        logger.info("AlbumCollection %s/%s: %s", report.ref.namespace, report.ref.name,
                    result.outcome)
    _post_events(body, result, report.previous, failing=report.failure is not None)


def _renamed(spec: AlbumCollectionSpec, previous: dict[str, Any]) -> AlbumReconcileResult | None:
    """A collectionName that differs from the collection this resource already manages
    (set after creation past an older CRD) is refused: following it would orphan the old
    collection and start an empty one."""
    managed = previous.get("collectionName")
    wanted = spec.resolved_collection_name()
    if not managed or managed == wanted:
        return None
    return AlbumReconcileResult(
        outcome="CollectionNameChanged", collection=managed, engine=previous.get("engine"),
        message=f"spec asks for collection {wanted}, but this resource manages {managed}; "
        f"set collectionName back to {managed} (to move the data, create a new "
        "AlbumCollection and merge)")


async def delete(*, body: kopf.Body, memo: Services, retry: int, runtime: dt.timedelta,
                 logger: kopf.Logger, **_: Any) -> None:
    await delete_resource(body, memo, retry, runtime, logger, KIND, AlbumCollectionSpec,
                          lambda ref, spec, _status: delete_album_collection(ref, spec, memo),
                          "the collection")
