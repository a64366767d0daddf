"""Kubernetes-style conditions, computed so that nothing changes unless something changed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class ConditionUpdate:
    """What a reconciler wants a condition to say; time and generation are filled in here."""

    type: str
    status: Status
    reason: str
    message: str = ""


def merge_conditions(
    current: Sequence[dict[str, Any]],
    updates: Iterable[ConditionUpdate],
    now: str,
    generation: int,
) -> list[dict[str, Any]]:
    """Applies updates to a condition list.

    ``lastTransitionTime`` moves only when a condition's status flips, so re-asserting the same
    state yields an identical list and therefore no status patch.
    """
    by_type = {c["type"]: dict(c) for c in current}
    for update in updates:
        previous = by_type.get(update.type)
        unchanged = previous is not None and previous.get("status") == update.status
        by_type[update.type] = {
            "type": update.type,
            "status": update.status,
            "reason": update.reason,
            "message": update.message,
            "lastTransitionTime": previous["lastTransitionTime"] if unchanged and previous
            else now,
            "observedGeneration": generation,
        }
    return [by_type[t] for t in sorted(by_type, key=_condition_order)]


def _condition_order(condition_type: str) -> tuple[int, str]:
    return (0 if condition_type == "Ready" else 1, condition_type)


def find(conditions: Sequence[dict[str, Any]], condition_type: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == condition_type), None)


def replacement_patch(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns ``current`` into exactly ``desired`` (empty: write
    nothing).

    A merge patch merges nested objects, so a key that ``desired`` lacks is sent as null at
    every depth; without that, a field of an earlier build (a failure reason, a message)
    would survive into the next. Lists are replaced whole by a merge patch anyway.
    """
    patch: dict[str, Any] = {}
    for key in current.keys() - desired.keys():
        patch[key] = None
    for key, value in desired.items():
        before = current.get(key)
        if before == value:
            continue
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = replacement_patch(before, value)
        else:
            patch[key] = value
    return patch


def status_patch(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``desired`` that differs from ``current`` (empty: write nothing).

    A None for a key ``current`` has removes it (merge-patch null); for a key it lacks, it
    is nothing to write.
    """
    return {key: value for key, value in desired.items() if current.get(key) != value}
