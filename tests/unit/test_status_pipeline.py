"""The status pipeline's pure parts: whole-status replacement, backoff, the retry book."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from album_operator.core.conditions import replacement_patch
from album_operator.core.retry import RetryBook, backoff_seconds
from album_operator.core.schedule import first_slot_since, schedule_problem

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 2, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(("current", "desired", "patch"), [
    ({}, {}, {}),
    ({"phase": "Failed"}, {"phase": "Failed"}, {}),
    # a key the new status lacks is removed, at every depth
    ({"phase": "Failed", "progress": "3/9"}, {"phase": "Planning"},
     {"phase": "Planning", "progress": None}),
    ({"currentBuild": {"name": "m_v1", "failureReason": "IdCollision", "message": "x"}},
     {"currentBuild": {"name": "m_v2"}},
     {"currentBuild": {"name": "m_v2", "failureReason": None, "message": None}}),
    ({"currentBuild": {"sources": [{"name": "a", "nextOffset": "7"}]}},
     {"currentBuild": {"sources": [{"name": "a"}]}},
     {"currentBuild": {"sources": [{"name": "a"}]}}),  # lists are replaced whole
    ({"verification": {"passed": False}}, {}, {"verification": None}),
])
def test_a_status_write_replaces_everything_the_kind_owns(
        current: dict[str, Any], desired: dict[str, Any], patch: dict[str, Any]) -> None:
    assert replacement_patch(current, desired) == patch


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386, as the API server applies it."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_patch(result[key], value)
        else:
            result[key] = value
    return result


def test_applying_the_patch_yields_exactly_the_desired_status() -> None:
    current = {"phase": "Succeeded", "currentBuild": {"name": "m_v1", "message": "old",
                                                      "failureReason": "X", "copiedPoints": 9},
               "history": [{"name": "m_v1"}], "verification": {"passed": True}}
    desired = {"phase": "Planning", "currentBuild": {"name": "m_v2", "copiedPoints": 0},
               "history": [{"name": "m_v1"}]}
    assert merge_patch(current, replacement_patch(current, desired)) == desired


@pytest.mark.parametrize(("attempt", "jitter", "seconds"), [
    (0, 0.0, 0.0), (1, 0.0, 5.0), (2, 0.0, 10.0), (3, 0.0, 20.0), (7, 0.0, 300.0),
    (100, 0.0, 300.0), (1, 0.999, 3.75), (7, 1.0, 225.0)])
def test_backoff_doubles_up_to_its_cap_and_jitter_only_shortens(
        attempt: int, jitter: float, seconds: float) -> None:
    assert backoff_seconds(attempt, 5.0, 300.0, jitter) == pytest.approx(seconds, abs=0.01)


def test_the_retry_book_backs_off_rests_and_lets_a_new_generation_through() -> None:
    book = RetryBook(base=5.0, cap=300.0)
    assert book.due("uid", 1, NOW)
    assert book.failed("uid", 1, NOW, jitter=0.0) == 5.0
    assert not book.due("uid", 1, NOW + dt.timedelta(seconds=4))
    assert book.due("uid", 1, NOW + dt.timedelta(seconds=5))
    assert book.failed("uid", 1, NOW, jitter=0.0) == 10.0
    assert book.due("uid", 2, NOW), "a spec change is tried at once"
    assert book.failed("uid", 1, NOW, jitter=0.0, permanent=True) is None
    assert not book.due("uid", 1, NOW + dt.timedelta(days=1)), "only a spec change helps"
    assert book.resting_until("uid") is None, "backing off is not resting"
    book.succeeded("uid")
    book.rest("uid", 1, NOW + dt.timedelta(seconds=60))
    assert book.resting_until("uid") == NOW + dt.timedelta(seconds=60)
    assert not book.due("uid", 1, NOW + dt.timedelta(seconds=59))
    assert book.due("uid", 1, NOW + dt.timedelta(seconds=60))
    assert book.failed("uid", 1, NOW, jitter=0.0) == 5.0, "resting is not a failure"
    assert book.resting_until("uid") is None


@pytest.mark.parametrize(("schedule", "problem"), [
    ("*/5 * * * *", None),
    ("@daily", None),
    ("99 99 * * *", "schedule '99 99 * * *' is not a valid cron expression"),
    ("0 0 31 2 *", "schedule '0 0 31 2 *' never matches a date"),
    ("0 0 * * xyz", "schedule '0 0 * * xyz' is not a valid cron expression"),
])
def test_a_schedule_that_can_never_run_is_named(schedule: str, problem: str | None) -> None:
    assert schedule_problem(schedule, NOW) == problem


@pytest.mark.parametrize(("last_run", "seen", "due"), [
    (None, NOW - dt.timedelta(minutes=10), None),  # 10:00 passed before the schedule existed
    (None, NOW - dt.timedelta(minutes=40), NOW.replace(minute=0)),
    (NOW.replace(minute=0), NOW - dt.timedelta(hours=5), None),
    (NOW - dt.timedelta(hours=3), NOW - dt.timedelta(hours=5), NOW.replace(minute=0)),
])
def test_the_first_slot_is_the_first_after_the_schedule_was_set(
        last_run: dt.datetime | None, seen: dt.datetime, due: dt.datetime | None) -> None:
    assert first_slot_since("0 * * * *", last_run, seen, NOW) == due
