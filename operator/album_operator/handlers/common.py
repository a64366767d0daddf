"""What every handler does the same way: parse the body, write status once, post events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from album_operator.adapters.kube import SecretUnavailable
from album_operator.adapters.metrics import RECONCILE_SECONDS, RECONCILES
from album_operator.adapters.qdrant.connection import QdrantError
from album_operator.config import OperatorConfig
from album_operator.core.conditions import find, status_patch
from album_operator.reconcilers.resource import ResourceRef
from album_operator.services import Services

M = TypeVar("M", bound=BaseModel)


def parse_spec(model: type[M], body: Mapping[str, Any]) -> M:
    """The typed spec, or a permanent error that names the offending fields."""
    try:
        return model.model_validate(dict(body.get("spec") or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            for error in exc.errors())
        raise kopf.PermanentError(f"invalid spec: {problems}") from None


def write_status(patch: kopf.Patch, current: Mapping[str, Any],
                 desired: Mapping[str, Any]) -> bool:
    """Puts only the changed status fields into kopf's patch. Returns True if any changed."""
    changes = status_patch(dict(current), dict(desired))
    if changes:
        patch.status.update(changes)
    return bool(changes)


def condition_reason(status: Mapping[str, Any], condition_type: str) -> str | None:
    condition = find(list(status.get("conditions") or []), condition_type)
    return condition.get("reason") if condition else None


async def step_exclusively(memo: Services, ref: ResourceRef,
                           step: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Runs one reconcile step under the object's lock, timed; an unreachable Qdrant or a
    missing Secret becomes a kopf retry with the configured backoff."""
    async with memo.locks.hold(ref.uid):
        try:
            with RECONCILE_SECONDS.labels(ref.kind).time():
                return await step()
        except (QdrantError, SecretUnavailable) as exc:
            RECONCILES.labels(ref.kind, "Error").inc()
            raise kopf.TemporaryError(str(exc), delay=memo.config.retry_backoff_seconds
                                      ) from None


def event(body: kopf.Body, warning: bool, reason: str, message: str) -> None:
    kopf.event(body, type="Warning" if warning else "Normal", reason=reason, message=message)


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
            delay = min(config.retry_backoff_seconds * 2 ** min(retry, 6), 60.0)
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
    """The deletion handler of every kind: forget the object's lock, apply its deletion
    policy within the grace period, log what was removed. An unparsable spec (it never
    made anything) releases the finalizer at once."""
    ref = ResourceRef.from_body(kind, body)
    memo.locks.forget(ref.uid)
    try:
        spec = parse_spec(model, body)
    except kopf.PermanentError:
        return
    status = dict(body.get("status") or {})
    message = await delete_within_grace(body, memo.config, retry, runtime,
                                        lambda: delete(ref, spec, status), left_behind)
    if message:
        logger.info("%s %s/%s deleted: %s", kind, ref.namespace, ref.name, message)
