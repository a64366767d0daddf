"""kopf wiring for MasterMerge: one bounded build step per tick, status written once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import kopf

from album_operator.adapters.metrics import (
    MERGE_LAST_SWAP,
    MERGE_POINTS_COPIED,
    MERGE_POINTS_PER_SECOND,
    MERGE_VERIFICATIONS,
    RECONCILES,
    STATUS_PATCHES,
)
from album_operator.core.conditions import find
from album_operator.core.timeutil import parse_rfc3339
from album_operator.handlers.common import (
    condition_reason,
    delete_resource,
    event,
    parse_spec,
    step_exclusively,
    write_status,
)
from album_operator.models.master_merge import MasterMergeSpec
from album_operator.reconcilers.master_merge import (
    KIND,
    delete_master_merge,
    step_master_merge,
)
from album_operator.reconcilers.resource import ResourceRef
from album_operator.services import Services


async def step(*, body: kopf.Body, patch: kopf.Patch, memo: Services, logger: kopf.Logger,
               **_: Any) -> None:
    ref = ResourceRef.from_body(KIND, body)
    spec = parse_spec(MasterMergeSpec, body)
    previous = dict(body.get("status") or {})
    changes = await step_exclusively(memo, ref,
                                     lambda: step_master_merge(ref, spec, previous, memo))
    if not changes:
        return
    changes["observedGeneration"] = ref.generation
    RECONCILES.labels(KIND, str(changes.get("phase", "Idle"))).inc()
    _record_metrics(ref, previous, changes)
    if write_status(patch, previous, changes):
        STATUS_PATCHES.labels(KIND).inc()
    build = changes.get("currentBuild") or {}
    new_phase = changes.get("phase")
    ready = find(changes.get("conditions") or [], "Ready")
    if ready and ready["reason"] == "SecretUnavailable" and ready["reason"] != \
            condition_reason(previous, "Ready"):
        event(body, True, ready["reason"], ready["message"])
    if new_phase and new_phase != previous.get("phase"):
        message = build.get("message") or f"{build.get('name')}: {new_phase}"
        event(body, new_phase == "Failed", new_phase, message)
        logger.info("MasterMerge %s/%s: %s", ref.namespace, ref.name, message)
    elif new_phase == "Copying" and _crossed_tenth(previous.get("currentBuild") or {}, build):
        logger.info("MasterMerge %s/%s: copied %s/%s points (%s points/s, ETA %ss)",
                    ref.namespace, ref.name, build.get("copiedPoints"),
                    build.get("expectedPoints"), build.get("pointsPerSecond"),
                    build.get("etaSeconds"))


def _crossed_tenth(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Copy progress is logged at every tenth, not at every step."""
    total = after.get("expectedPoints") or 0
    if not total:
        return False
    return (10 * (before.get("copiedPoints") or 0) // total
            != 10 * (after.get("copiedPoints") or 0) // total)


async def delete(*, body: kopf.Body, memo: Services, retry: int, runtime: dt.timedelta,
                 logger: kopf.Logger, **_: Any) -> None:
    await delete_resource(body, memo, retry, runtime, logger, KIND, MasterMergeSpec,
                          lambda ref, spec, _status: delete_master_merge(ref, spec, memo),
                          "masters and the alias")


def _record_metrics(ref: ResourceRef, previous: dict[str, Any], changes: dict[str, Any]
                    ) -> None:
    labels = (ref.namespace, ref.name)
    before = previous.get("currentBuild") or {}
    after = changes.get("currentBuild") or {}
    if after.get("name") == before.get("name"):
        copied = (after.get("copiedPoints") or 0) - (before.get("copiedPoints") or 0)
    else:
        copied = after.get("copiedPoints") or 0
    if copied > 0:
        MERGE_POINTS_COPIED.labels(*labels).inc(copied)
    if after.get("pointsPerSecond") is not None:
        MERGE_POINTS_PER_SECOND.labels(*labels).set(after["pointsPerSecond"])
    verification = changes.get("verification")
    if verification and verification != previous.get("verification"):
        MERGE_VERIFICATIONS.labels(*labels, "passed" if verification["passed"]
                                   else "failed").inc()
    swapped = changes.get("lastSwapTime")
    if swapped and swapped != previous.get("lastSwapTime"):
        MERGE_LAST_SWAP.labels(*labels).set(parse_rfc3339(swapped).timestamp())
