"""kopf wiring for MasterMerge: one bounded build step per tick, its whole status written."""

from __future__ import annotations

import datetime as dt
from typing import Any, get_args

import kopf

from album_operator.adapters.metrics import (
    MERGE_BUILD_PHASE,
    MERGE_FAILED_BUILDS,
    MERGE_LAST_SWAP,
    MERGE_NEXT_SCHEDULED,
    MERGE_POINTS_COPIED,
    MERGE_VERIFICATIONS,
    RECONCILES,
    set_state,
    set_timestamp,
)
from album_operator.core.merge import Phase
from album_operator.handlers.common import (
    StepReport,
    delete_resource,
    event,
    parse_spec,
    run_step,
)
from album_operator.models.master_merge import MasterMergeSpec, MasterMergeStatus
from album_operator.reconcilers.master_merge import (
    KIND,
    delete_master_merge,
    step_master_merge,
)
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
        spec = parse_spec(MasterMergeSpec, body)
        return await step_master_merge(ref, spec, previous, memo)

    report = await run_step(KIND, MasterMergeStatus, body, patch, memo, logger, reconcile,
                            timer)
    if report is None:
        return
    RECONCILES.labels(KIND, str(report.status.get("phase", "Idle"))).inc()
    _record_metrics(report.ref, report.previous, report.status)
    _post_phase(body, report, logger)


def _post_phase(body: kopf.Body, report: StepReport, logger: kopf.Logger) -> None:
    """An event per phase a build enters; copy progress in the log at every tenth."""
    ref, previous, status = report.ref, report.previous, report.status
    build = status.get("currentBuild") or {}
    before = previous.get("currentBuild") or {}
    new_phase = build.get("phase")
    if new_phase and (new_phase, build.get("name")) != (before.get("phase"), before.get("name")):
        message = build.get("message") or f"{build.get('name')}: {new_phase}"
        event(body, new_phase == "Failed", new_phase, message)
        logger.info("MasterMerge %s/%s: %s", ref.namespace, ref.name, message)
    elif new_phase == "Copying" and _crossed_tenth(before, build):
        logger.info("MasterMerge %s/%s: copied %s/%s points (%s points/s, ETA %ss)",
                    ref.namespace, ref.name, build.get("copiedPoints"),
                    build.get("pointsToCopy"), build.get("pointsPerSecond"),
                    build.get("etaSeconds"))


def _crossed_tenth(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Copy progress is logged at every tenth, not at every step."""
    total = after.get("pointsToCopy") or 0
    if not total:
        return False
    return (10 * (before.get("copiedPoints") or 0) // total
            != 10 * (after.get("copiedPoints") or 0) // total)


async def delete(*, body: kopf.Body, memo: Services, retry: int, runtime: dt.timedelta,
                 logger: kopf.Logger, **_: Any) -> None:
    await delete_resource(body, memo, retry, runtime, logger, KIND, MasterMergeSpec,
                          lambda ref, spec, _status: delete_master_merge(ref, spec, memo),
                          "masters and the alias")


def _record_metrics(ref: ResourceRef, previous: dict[str, Any], status: dict[str, Any]
                    ) -> None:
    labels = (ref.namespace, ref.name)
    before = previous.get("currentBuild") or {}
    after = status.get("currentBuild") or {}
    if after.get("name") == before.get("name"):
        copied = (after.get("copiedPoints") or 0) - (before.get("copiedPoints") or 0)
    else:
        copied = after.get("copiedPoints") or 0
    # created at 0 before the first copy: a stalled-copy alert compares its increase
    MERGE_POINTS_COPIED.labels(*labels).inc(max(copied, 0))
    verification = status.get("verification")
    if verification and verification != previous.get("verification"):
        MERGE_VERIFICATIONS.labels(*labels, "passed" if verification["passed"]
                                   else "failed").inc()
    _record_state(labels, status)


def _record_state(labels: tuple[str, str], status: dict[str, Any]) -> None:
    """Gauges read from the whole status at every step, so that they are there again after
    an operator restart or a failover, not only after the next change."""
    build = status.get("currentBuild") or {}
    set_state(MERGE_BUILD_PHASE, labels, get_args(Phase), build.get("phase"))
    MERGE_FAILED_BUILDS.labels(*labels).set(status.get("failedBuildsInARow") or 0)
    set_timestamp(MERGE_LAST_SWAP, labels, status.get("lastSwapTime"))
    set_timestamp(MERGE_NEXT_SCHEDULED, labels, status.get("nextScheduledTime"))
