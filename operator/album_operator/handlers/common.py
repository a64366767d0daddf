"""What every handler does the same way: parse the body, write status once, post events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from album_operator.core.conditions import find, status_patch

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


def event(body: kopf.Body, warning: bool, reason: str, message: str) -> None:
    kopf.event(body, type="Warning" if warning else "Normal", reason=reason, message=message)
