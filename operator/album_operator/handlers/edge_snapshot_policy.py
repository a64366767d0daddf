"""kopf wiring for EdgeSnapshotPolicy: one step per tick, status written once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import kopf

from album_operator.adapters.metrics import RECONCILES, STATUS_PATCHES
from album_operator.core.conditions import find
from album_operator.handlers.common import (
    delete_resource,
    event,
    parse_spec,
    step_exclusively,
    write_status,
)
from album_operator.models.edge_snapshot_policy import EdgeSnapshotPolicySpec
from album_operator.reconcilers.edge_snapshot_policy import KIND, delete_policy, step_policy
from album_operator.reconcilers.resource import ResourceRef
from album_operator.services import Services

# Ready=False reasons that are not a problem (a failed run has its own event)
QUIET_REASONS = {"Ready", "NothingPublished", "RunFailed"}


async def step(*, body: kopf.Body, patch: kopf.Patch, memo: Services, logger: kopf.Logger,
               **_: Any) -> None:
    ref = ResourceRef.from_body(KIND, body)
    spec = parse_spec(EdgeSnapshotPolicySpec, body)
    previous = dict(body.get("status") or {})
    changes = await step_exclusively(memo, ref, lambda: step_policy(ref, spec, previous, memo))
    changes["observedGeneration"] = ref.generation
    if write_status(patch, previous, changes):
        STATUS_PATCHES.labels(KIND).inc()
    ready = find(list(changes.get("conditions") or []), "Ready")
    before = find(list(previous.get("conditions") or []), "Ready") or {}
    if ready is not None and ready["reason"] not in QUIET_REASONS and (
            ready["reason"], ready["message"]) != (before.get("reason"), before.get("message")):
        event(body, True, ready["reason"], ready["message"])
        logger.warning("EdgeSnapshotPolicy %s/%s: %s", ref.namespace, ref.name,
                       ready["message"])
    run = changes.get("lastRun")
    if run and run != previous.get("lastRun"):
        failed = run["result"] == "Failed"
        RECONCILES.labels(KIND, run["result"]).inc()
        event(body, failed, "RunFailed" if failed else "Published", run["message"])
        logger.info("EdgeSnapshotPolicy %s/%s: %s", ref.namespace, ref.name, run["message"])


async def delete(*, body: kopf.Body, memo: Services, retry: int, runtime: dt.timedelta,
                 logger: kopf.Logger, **_: Any) -> None:
    await delete_resource(body, memo, retry, runtime, logger, KIND, EdgeSnapshotPolicySpec,
                          lambda ref, spec, status: delete_policy(ref, spec, status, memo),
                          "published snapshots")
