"""kopf wiring for AlbumCollection: parse, reconcile, write status once, post events."""

from __future__ import annotations

import datetime as dt
from typing import Any

import kopf

from album_operator.adapters.metrics import (
    DRIFT_REPAIRS,
    RECONCILE_SECONDS,
    RECONCILES,
    STATUS_PATCHES,
)
from album_operator.core.album_status import AlbumReconcileResult, album_status
from album_operator.core.claims import Claimant
from album_operator.core.timeutil import rfc3339
from album_operator.handlers.common import (
    condition_reason,
    delete_resource,
    event,
    parse_spec,
    write_status,
)
from album_operator.models.album_collection import AlbumCollectionSpec
from album_operator.reconcilers.album_collection import (
    KIND,
    claim_key,
    delete_album_collection,
    reconcile_album_collection,
)
from album_operator.reconcilers.resource import ResourceRef
from album_operator.services import Services

RETRYABLE = {"QdrantUnavailable"}
WARNING_OUTCOMES = {"Recreated", "DriftReported", "ImmutableFieldMismatch", "Conflict",
                    "QdrantUnavailable", "InvalidConnection"}
ACTION_OUTCOMES = {"Created", "Recreated", "Repaired", "Adopted"}


def index_claims(*, namespace: str | None, name: str, body: kopf.Body, **_: Any
                 ) -> dict[str, Claimant]:
    """kopf index: which AlbumCollections claim which collection (per connection)."""
    try:
        spec = AlbumCollectionSpec.model_validate(dict(body.get("spec") or {}))
    except ValueError:
        return {}
    meta = body["metadata"]
    namespace = namespace or ""
    return {claim_key(namespace, spec): Claimant(
        meta.get("creationTimestamp", ""), meta["uid"], namespace, name)}


def _post_events(body: kopf.Body, result: AlbumReconcileResult,
                 previous: dict[str, Any]) -> None:
    before = condition_reason(previous, "Synced")
    # A collection first seen in sync (a second reconcile racing the first one's status
    # write, or status lost) is no news; a warning is news even on first sight.
    changed = before != _synced_reason(result) and (
        before is not None or result.outcome in WARNING_OUTCOMES)
    if result.outcome in ACTION_OUTCOMES or changed:
        warning = result.outcome in WARNING_OUTCOMES
        message = result.message or f"collection {result.collection}: {result.outcome}"
        if result.outcome == "Repaired" and result.plan:
            message = f"collection {result.collection} repaired: {', '.join(result.plan.drift)}"
        event(body, warning, result.outcome, message)


def _synced_reason(result: AlbumReconcileResult) -> str:
    return "InSync" if result.outcome == "InSync" else result.outcome


async def reconcile(*, body: kopf.Body, patch: kopf.Patch, memo: Services,
                    logger: kopf.Logger, **kwargs: Any) -> None:
    album_claims: kopf.Index[str, Claimant] = kwargs["album_claims"]
    ref = ResourceRef.from_body(KIND, body)
    spec = parse_spec(AlbumCollectionSpec, body)
    previous = dict(body.get("status") or {})
    claimants = list(album_claims.get(claim_key(ref.namespace, spec), []))
    async with memo.locks.hold(ref.uid):
        with RECONCILE_SECONDS.labels(KIND).time():
            result = await reconcile_album_collection(ref, spec, previous, memo, claimants)
    RECONCILES.labels(KIND, result.outcome).inc()
    if result.outcome == "Repaired":
        DRIFT_REPAIRS.labels(KIND).inc()
    desired = album_status(result, previous, ref.generation, rfc3339(memo.clock()))
    if write_status(patch, previous, desired):
        STATUS_PATCHES.labels(KIND).inc()
        logger.info("AlbumCollection %s/%s: %s", ref.namespace, ref.name, result.outcome)
    _post_events(body, result, previous)
    if result.outcome in RETRYABLE:
        raise kopf.TemporaryError(result.message, delay=memo.config.retry_backoff_seconds)


async def delete(*, body: kopf.Body, memo: Services, retry: int, runtime: dt.timedelta,
                 logger: kopf.Logger, **_: Any) -> None:
    await delete_resource(body, memo, retry, runtime, logger, KIND, AlbumCollectionSpec,
                          lambda ref, spec, _status: delete_album_collection(ref, spec, memo),
                          "the collection")
