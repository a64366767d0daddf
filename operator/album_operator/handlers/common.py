"""The one status pipeline every kind goes through.

A handler call parses the body, runs its reconciler under the object's lock unless the
object is backing off, and writes the whole status the kind owns, replaced, so no field of
an earlier build or failure survives. Every exception maps here, in one place, to a Ready
condition with a reason from a closed set, a Warning event when that changes, and a retry
with exponential backoff and jitter. Handlers never raise to kopf (its retry annotations
would be rewritten on every attempt); the timers are the retries.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from album_operator.adapters import metrics
from album_operator.adapters.kube import SecretUnavailable
from album_operator.adapters.qdrant.connection import QdrantError
from album_operator.adapters.redaction import redact
from album_operator.config import OperatorConfig
from album_operator.core.conditions import (
    ConditionUpdate,
    find,
    merge_conditions,
    replacement_patch,
)
from album_operator.core.timeutil import rfc3339
from album_operator.reconcilers.resource import ResourceRef
from album_operator.services import Services

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)

# Not-ready states that are progress or a pause, not a problem: no backoff, no Warning.
QUIET_READY_REASONS = frozenset({"Building", "Pending", "Suspended", "Paused",
                                 "NothingPublished", "RunFailed"})


class InvalidSpec(ValueError):
    """The spec passed the CRD schema but not the model (an older CRD, or a rule only the
    model knows): nothing is done until the spec changes."""


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str
    permanent: bool = False


def classify(exc: BaseException) -> Failure:
    """The closed set of reasons an attempt can fail with; messages are redacted."""
    if isinstance(exc, InvalidSpec):
        return Failure("InvalidSpec", str(exc), permanent=True)
    if isinstance(exc, QdrantError):
        return Failure("QdrantUnavailable", str(exc))
    if isinstance(exc, SecretUnavailable):
        return Failure("SecretUnavailable", redact(str(exc)))
    if type(exc).__module__.startswith(("kubernetes.", "aiohttp.")):
        return Failure("KubernetesUnavailable", redact(f"{type(exc).__name__}: {exc}"))
    return Failure("InternalError", redact(f"{type(exc).__name__}: {exc}"))


def parse_spec(model: type[M], body: Mapping[str, Any]) -> M:
    """The typed spec, or InvalidSpec naming the offending fields."""
    try:
        return model.model_validate(dict(body.get("spec") or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            for error in exc.errors())
        raise InvalidSpec(f"invalid spec: {problems}") from None


def typed_status(model: type[BaseModel], status: Mapping[str, Any]) -> dict[str, Any]:
    """The status as the kind's model has it: unknown keys dropped, nulls absent, and no
    registered secret in any text (a last guard: messages are redacted where made)."""
    parsed = model.model_validate(dict(status))
    dumped: dict[str, Any] = _redacted(parsed.model_dump(mode="json", by_alias=True,
                                                         exclude_none=True))
    return dumped


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return value


def _at_generation(status: dict[str, Any], generation: int) -> dict[str, Any]:
    """The whole status was computed from this generation's spec, every condition too."""
    conditions = [{**c, "observedGeneration": generation}
                  for c in status.get("conditions") or []]
    return {**status, "conditions": conditions, "observedGeneration": generation}


def condition_reason(status: Mapping[str, Any], condition_type: str) -> str | None:
    condition = find(list(status.get("conditions") or []), condition_type)
    return condition.get("reason") if condition else None


def event(body: kopf.Body, warning: bool, reason: str, message: str) -> None:
    kopf.event(body, type="Warning" if warning else "Normal", reason=reason, message=message)


def failed_status(previous: Mapping[str, Any], failure: Failure, generation: int,
                  now: dt.datetime) -> dict[str, Any]:
    """What an attempt that raised leaves: everything as it was, Ready=False saying why."""
    conditions = merge_conditions(list(previous.get("conditions") or []), [
        ConditionUpdate("Ready", "False", failure.reason, failure.message)], rfc3339(now),
        generation)
    return {**previous, "conditions": conditions}


@dataclass(frozen=True)
class StepReport:
    """What one handler call did, for the kind's own events and logs."""

    ref: ResourceRef
    previous: dict[str, Any]
    status: dict[str, Any]
    failure: Failure | None
    written: bool


async def run_step(kind: str, status_model: type[BaseModel], body: kopf.Body,
                   patch: kopf.Patch, memo: Services, logger: kopf.Logger,
                   reconcile: Callable[[ResourceRef, dict[str, Any]],
                                       Awaitable[dict[str, Any]]],
                   timer: bool, rest_seconds: float | None = None) -> StepReport | None:
    """Runs one reconcile and writes its whole status. A timer tick of an object that is
    backing off (or resting ``rest_seconds`` after a success), or whose body does not yet
    show this operator's last status write, returns None: nothing is read, written or
    logged. Change handlers always run: the change may be the fix."""
    ref = ResourceRef.from_body(kind, body)
    previous = dict(body.get("status") or {})
    failure: Failure | None = None
    async with memo.locks.hold(ref.uid):
        # checked under the lock: a change handler may have just run on this object
        now = memo.clock()
        if timer and (not memo.retries.due(ref.uid, ref.generation, now)
                      or memo.writes.is_stale(ref.uid, previous, now)):
            return None
        try:
            # taken inside the object's lock: no task holds a slot while it waits for a lock
            async with memo.slots.hold(kind):
                with metrics.RECONCILE_SECONDS.labels(kind).time():
                    status = await reconcile(ref, previous)
            status = typed_status(status_model, _at_generation(status, ref.generation))
        except Exception as exc:
            failure = classify(exc)
            if failure.reason == "InternalError":
                logger.exception("%s %s/%s: unexpected error", kind, ref.namespace, ref.name)
            status = typed_status(status_model, failed_status(
                {**previous, "observedGeneration": ref.generation}, failure, ref.generation,
                now))
    ready = find(status.get("conditions") or [], "Ready")
    if failure is None and ready and ready["status"] != "True" and \
            ready["reason"] not in QUIET_READY_REASONS:
        # a problem the reconciler reported itself: tried again with the same backoff
        failure = Failure(ready["reason"], ready.get("message", ""))
    _schedule_retry(memo, ref, failure, now, rest_seconds)
    written = _write(patch, kind, previous, status)
    if written:
        memo.writes.wrote(ref.uid, status, now)
    _report_ready(body, kind, ref, previous, status, logger)
    return StepReport(ref, previous, status, failure, written)


def _schedule_retry(memo: Services, ref: ResourceRef, failure: Failure | None,
                    now: dt.datetime, rest_seconds: float | None) -> None:
    if failure is None:
        memo.retries.succeeded(ref.uid)
        if rest_seconds:
            memo.retries.rest(ref.uid, ref.generation, now + dt.timedelta(seconds=rest_seconds))
        return
    metrics.RECONCILES.labels(ref.kind, "Error").inc()
    delay = memo.retries.failed(ref.uid, ref.generation, now, random.random(),
                                permanent=failure.permanent)
    log.debug("%s %s/%s: next attempt in %s s", ref.kind, ref.namespace, ref.name, delay)


def _write(patch: kopf.Patch, kind: str, previous: dict[str, Any],
           status: dict[str, Any]) -> bool:
    changes = replacement_patch(previous, status)
    if changes:
        patch.status.update(changes)
        metrics.STATUS_PATCHES.labels(kind).inc()
    return bool(changes)


def _report_ready(body: kopf.Body, kind: str, ref: ResourceRef, previous: dict[str, Any],
                  status: dict[str, Any], logger: kopf.Logger) -> None:
    """A Warning event and log line when Ready turns False or its reason or message
    changes while False; the readiness gauge always."""
    ready = find(status.get("conditions") or [], "Ready") or {}
    before = find(previous.get("conditions") or [], "Ready") or {}
    is_ready = ready.get("status") == "True"
    metrics.set_resource_ready(kind, ref.namespace, ref.name, is_ready)
    if is_ready or not ready:
        return
    said = (before.get("status"), before.get("reason"), before.get("message"))
    if said != (ready.get("status"), ready.get("reason"), ready.get("message")) and \
            ready.get("reason") not in QUIET_READY_REASONS:
        event(body, True, ready["reason"], ready.get("message") or ready["reason"])
        logger.warning("%s %s/%s not ready: %s: %s", kind, ref.namespace, ref.name,
                       ready["reason"], ready.get("message"))


async def delete_within_grace(body: kopf.Body, config: OperatorConfig, retry: int,
                              runtime: dt.timedelta, delete: Callable[[], Awaitable[str]],
                              left_behind: str) -> str | None:
    """Runs a deletion; while Qdrant is unreachable retries with backoff, and after the
    grace period releases the finalizer with a Warning event, so namespaces never hang."""
    try:
        return await delete()
    except (QdrantError, SecretUnavailable) as exc:
        waited = runtime.total_seconds()
        if waited < config.deletion_grace_seconds:
            delay = min(config.retry_backoff_seconds * 2 ** min(retry, 6), 60.0,
                        max(config.deletion_grace_seconds - waited, 1.0))
            raise kopf.TemporaryError(f"cannot reach Qdrant to delete: {exc}",
                                      delay=delay) from None
        event(body, True, "FinalizerReleased",
              f"Qdrant unreachable for {waited:.0f}s (grace period "
              f"{config.deletion_grace_seconds:.0f}s); {left_behind} may remain: {exc}")
        return None


async def delete_resource(body: kopf.Body, memo: Services, retry: int, runtime: dt.timedelta,
                          logger: kopf.Logger, kind: str, model: type[M],
                          delete: Callable[[ResourceRef, M, dict[str, Any]], Awaitable[str]],
                          left_behind: str) -> None:
    """The deletion handler of every kind: forget the object's lock, backoff and metric
    series, apply its deletion policy within the grace period, log what was removed. An
    unparsable spec (it never made anything) releases the finalizer at once."""
    ref = ResourceRef.from_body(kind, body)
    memo.locks.forget(ref.uid)
    memo.retries.forget(ref.uid)
    memo.writes.forget(ref.uid)
    metrics.forget_resource(kind, ref.namespace, ref.name)
    try:
        spec = parse_spec(model, body)
    except InvalidSpec:
        return
    status = dict(body.get("status") or {})
    message = await delete_within_grace(body, memo.config, retry, runtime,
                                        lambda: delete(ref, spec, status), left_behind)
    if message:
        logger.info("%s %s/%s deleted: %s", kind, ref.namespace, ref.name, message)
