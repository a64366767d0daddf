"""MasterMerge decisions as pure functions: names, triggers, phases, collisions, retention.

The controller that executes these (scroll, upsert, verify, swap) is not wired yet; these
decisions are the part that must be right before anything is copied or any alias moves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from croniter import croniter

from album_operator.models.master_merge import MasterMergeSpec

Phase = Literal[
    "Pending", "Planning", "Copying", "Indexing", "Verifying", "Swapping", "Succeeded", "Failed"
]
StepOutcome = Literal["done", "more", "failed"]

# The only transitions a build may make; everything else is a bug.
TRANSITIONS: Mapping[Phase, Phase] = {
    "Pending": "Planning",
    "Planning": "Copying",
    "Copying": "Indexing",
    "Indexing": "Verifying",
    "Verifying": "Swapping",
    "Swapping": "Succeeded",
}
TERMINAL: frozenset[Phase] = frozenset({"Succeeded", "Failed"})


def next_phase(phase: Phase, outcome: StepOutcome) -> Phase:
    """Where a build goes after one step of ``phase`` ended with ``outcome``."""
    if phase in TERMINAL:
        raise ValueError(f"a {phase} build takes no more steps")
    if outcome == "failed":
        return "Failed"
    if outcome == "more":
        return phase
    return TRANSITIONS[phase]


def target_name(prefix: str, version: int) -> str:
    return f"{prefix}_v{version}"


def parse_version(prefix: str, name: str) -> int | None:
    match = re.fullmatch(re.escape(prefix) + r"_v([1-9][0-9]*)", name)
    return int(match.group(1)) if match else None


def next_version(prefix: str, existing: Iterable[str]) -> int:
    """One past the highest version of this prefix that exists or ever existed."""
    versions = [v for v in (parse_version(prefix, n) for n in existing) if v is not None]
    return max(versions, default=0) + 1


_NOT_BUILD_SETTINGS = {"rollback_to", "suspend", "schedule", "retention", "deletion_policy"}


def build_digest(spec: MasterMergeSpec) -> str:
    """Identifies what a build depends on; rollback, suspend, schedule and retention do not
    start a rebuild when they change."""
    relevant = spec.model_dump(mode="json", exclude=_NOT_BUILD_SETTINGS)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TriggerState:
    spec_digest: str
    last_built_digest: str | None
    rebuild_token: str | None
    last_rebuild_token: str | None
    schedule: str | None
    last_scheduled_time: dt.datetime | None
    created: dt.datetime
    suspended: bool
    building: bool
    pinned: bool = False


def due_scheduled_time(schedule: str, since: dt.datetime, now: dt.datetime
                       ) -> dt.datetime | None:
    """The latest scheduled time in (since, now], or None.

    Runs missed while the operator was down collapse into this one catch-up, not a burst.
    """
    first = croniter(schedule, since).get_next(dt.datetime)
    if first > now:
        return None
    latest: dt.datetime = croniter(schedule, now + dt.timedelta(seconds=1)).get_prev(
        dt.datetime)
    return latest


def rebuild_reason(state: TriggerState, now: dt.datetime) -> str | None:
    """Why a new build should start now, or None. A running build is never interrupted, and
    none starts while suspended or while rollbackTo pins the alias."""
    if state.suspended or state.building or state.pinned:
        return None
    if state.last_built_digest is None:
        return "no master has been built yet"
    if state.spec_digest != state.last_built_digest:
        return "the build settings changed"
    if state.rebuild_token and state.rebuild_token != state.last_rebuild_token:
        return f"rebuild requested (albumops.io/rebuild={state.rebuild_token})"
    if state.schedule:
        since = state.last_scheduled_time or state.created
        due = due_scheduled_time(state.schedule, since, now)
        if due is not None:
            return f"scheduled for {due.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    return None


PointId = int | str


@dataclass(frozen=True)
class Collision:
    point_id: PointId
    sources: tuple[str, ...]


def find_collisions(ids_by_source: Sequence[tuple[str, Iterable[PointId]]]
                    ) -> list[Collision]:
    """Point IDs present in more than one source, with the sources in their given order."""
    seen: dict[PointId, list[str]] = {}
    for source, ids in ids_by_source:
        for point_id in ids:
            seen.setdefault(point_id, []).append(source)
    return [Collision(pid, tuple(srcs)) for pid, srcs in seen.items() if len(srcs) > 1]


def collision_message(collisions: Sequence[Collision], examples: int = 5) -> str:
    shown = ", ".join(f"{c.point_id} ({' & '.join(c.sources)})" for c in collisions[:examples])
    more = f" and {len(collisions) - examples} more" if len(collisions) > examples else ""
    return f"{len(collisions)} point IDs appear in more than one source: {shown}{more}"


def expected_distinct_points(counts: Mapping[str, int], collisions: Sequence[Collision]
                             ) -> int:
    """Distinct points after a PreferLater merge: each collision counted once."""
    duplicates = sum(len(c.sources) - 1 for c in collisions)
    return sum(counts.values()) - duplicates


def may_swap(alias_target: str | None, last_left_target: str | None) -> bool:
    """The alias moves only if nobody else moved it since this resource last did."""
    return alias_target is None or alias_target == last_left_target


def masters_to_delete(owned: Iterable[str], prefix: str, alias_target: str | None,
                      last_verified: str | None, keep_previous: int) -> list[str]:
    """Masters built by this resource that retention removes, oldest first.

    The alias target and the last verified build are never removed; of the rest, the
    ``keep_previous`` newest stay for rollback.
    """
    protected = {n for n in (alias_target, last_verified) if n}
    versioned = sorted(((parse_version(prefix, n), n) for n in owned
                        if parse_version(prefix, n) is not None and n not in protected),
                       reverse=True)
    return [name for _, name in sorted(versioned[keep_previous:])]


def top_k_overlap(expected: Sequence[PointId], actual: Sequence[PointId]) -> float:
    """Share of the expected top-k IDs that the actual top-k also returned."""
    if not expected:
        return 1.0
    return len(set(expected) & set(actual)) / len(expected)


def vectors_match(left: Sequence[float], right: Sequence[float], tolerance: float = 1e-4
                  ) -> bool:
    """Equal after L2 normalisation (local mode returns cosine vectors normalised or raw)."""
    if len(left) != len(right):
        return False
    left_norm = math.sqrt(sum(x * x for x in left)) or 1.0
    right_norm = math.sqrt(sum(x * x for x in right)) or 1.0
    return all(abs(a / left_norm - b / right_norm) <= tolerance for a, b in zip(
        left, right, strict=True))


def merged_top_k(results: Iterable[Sequence[tuple[PointId, float]]], k: int,
                 higher_is_better: bool = True) -> list[PointId]:
    """The top-k of several sources' results, as one search over their union would rank."""
    pooled = [hit for hits in results for hit in hits]
    pooled.sort(key=lambda hit: hit[1], reverse=higher_is_better)
    return [point_id for point_id, _ in pooled[:k]]
