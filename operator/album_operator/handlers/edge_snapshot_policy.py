"""kopf wiring for EdgeSnapshotPolicy: one step per tick, its whole status written."""

from __future__ import annotations

import datetime as dt
from typing import Any

import kopf

from album_operator.adapters.metrics import EDGE_NEXT_RUN, RECONCILES, set_timestamp
from album_operator.core.conditions import find
from album_operator.core.edge import SNAPSHOTS_MISSING
from album_operator.handlers.common import delete_resource, event, parse_spec, run_step
from album_operator.models.edge_snapshot_policy import (
    EdgeSnapshotPolicySpec,
    EdgeSnapshotPolicyStatus,
)
from album_operator.reconcilers.edge_snapshot_policy import KIND, delete_policy, step_policy
from album_operator.reconcilers.resource import ResourceRef
from album_operator.services import Services


async def on_change(*, body: kopf.Body, patch: kopf.Patch, memo: Services,
                    logger: kopf.Logger, **_: Any) -> None:
    await _step(body, patch, memo, logger, timer=False)


async def on_tick(*, body: kopf.Body, patch: kopf.Patch, memo: Services,
                  logger: kopf.Logger, **_: Any) -> None:
    await _step(body, patch, memo, logger, timer=True)


async def _step(body: kopf.Body, patch: kopf.Patch, memo: Services, logger: kopf.Logger,
                timer: bool) -> None:
    async def reconcile(ref: ResourceRef, previous: dict[str, Any]) -> dict[str, Any]:
        spec = parse_spec(EdgeSnapshotPolicySpec, body)
        return await step_policy(ref, spec, previous, memo)

    report = await run_step(KIND, EdgeSnapshotPolicyStatus, body, patch, memo, logger,
                            reconcile, timer)
    if report is None:
        return
    set_timestamp(EDGE_NEXT_RUN, (report.ref.namespace, report.ref.name),
                  report.status.get("nextRun"))
    run = report.status.get("lastRun")
    if run and run != report.previous.get("lastRun"):
        failed = run["result"] == "Failed"
        RECONCILES.labels(KIND, run["result"]).inc()
        _warn_if_republished(body, report.ref, report.status, logger)
        event(body, failed, "RunFailed" if failed else "Published", run["message"])
        logger.info("EdgeSnapshotPolicy %s/%s: %s", report.ref.namespace, report.ref.name,
                    run["message"])


def _warn_if_republished(body: kopf.Body, ref: ResourceRef, status: dict[str, Any],
                         logger: kopf.Logger) -> None:
    """Lost snapshots that a run republished leave Ready True: the Warning says they were
    lost, and where (a failed republish warns through Ready=False SnapshotsMissing)."""
    published = find(status.get("conditions") or [], "Published") or {}
    if published.get("reason") == "Republished":
        event(body, True, SNAPSHOTS_MISSING, published.get("message") or "")
        logger.warning("EdgeSnapshotPolicy %s/%s: %s", ref.namespace, ref.name,
                       published.get("message"))


async def delete(*, body: kopf.Body, memo: Services, retry: int, runtime: dt.timedelta,
                 logger: kopf.Logger, **_: Any) -> None:
    await delete_resource(body, memo, retry, runtime, logger, KIND, EdgeSnapshotPolicySpec,
                          lambda ref, spec, status: delete_policy(ref, spec, status, memo),
                          "published snapshots")
