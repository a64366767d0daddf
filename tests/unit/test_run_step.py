"""The status pipeline's one entry point, run_step, against a fake memo: what it skips, how
often it reconciles, and which events it emits when a timer and a change handler meet."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from types import SimpleNamespace
from typing import Any, cast

import kopf
import pytest

from album_operator.core.retry import RetryBook
from album_operator.core.writes import WriteLedger
from album_operator.handlers import common
from album_operator.models.edge_snapshot_policy import EdgeSnapshotPolicyStatus
from album_operator.reconcilers.resource import ResourceRef
from album_operator.services import KeyedLocks, Services

NOW = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)


def ready(status: str, reason: str) -> dict[str, Any]:
    return {"conditions": [{"type": "Ready", "status": status, "reason": reason,
                            "message": f"{reason}.", "lastTransitionTime": "2026-12-03T10:00:00Z"}]}


BROKEN = ready("False", "InvalidSchedule")


def body(version: str, status: dict[str, Any] | None = None) -> kopf.Body:
    raw = {"metadata": {"namespace": "ns", "name": "p", "uid": "uid-1", "generation": 1,
                        "resourceVersion": version}, "status": status or {}}
    return kopf.Body(cast(kopf.RawBody, raw))


def memo(clock: list[dt.datetime]) -> Services:
    return cast(Services, SimpleNamespace(
        locks=KeyedLocks(), retries=RetryBook(base=5.0, cap=300.0), writes=WriteLedger(),
        clock=lambda: clock[0]))


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    said: list[str] = []
    monkeypatch.setattr(common, "event", lambda _b, _w, reason, _m: said.append(reason))
    return said


def step(services: Services, seen: kopf.Body, calls: list[str], timer: bool,
         status: dict[str, Any]) -> Any:
    async def reconcile(ref: ResourceRef, previous: dict[str, Any]) -> dict[str, Any]:
        calls.append("timer" if timer else "change")
        await asyncio.sleep(0)
        return status
    return common.run_step("EdgeSnapshotPolicy", EdgeSnapshotPolicyStatus, seen, kopf.Patch(),
                           services, cast(kopf.Logger, logging.getLogger("test")),
                           reconcile, timer=timer)


def test_a_timer_meeting_a_change_handler_on_the_same_body_neither_repeats_nor_re_announces(
        events: list[str]) -> None:
    services, calls = memo([NOW]), list[str]()
    seen = body("100")

    async def both() -> None:
        await asyncio.gather(step(services, seen, calls, False, BROKEN),
                             step(services, seen, calls, True, BROKEN))
    asyncio.run(both())
    assert calls == ["change"]
    assert events == ["InvalidSchedule"]


@pytest.mark.parametrize(("version", "seconds_later", "runs"), [
    ("100", 1, False),   # the body the last write was computed from: stale
    ("101", 1, True),    # the watch delivered the write
    ("100", 31, True),   # the write never arrived (a failed patch): trusted again
])
def test_a_timer_skips_a_body_that_predates_the_last_write(
        events: list[str], version: str, seconds_later: int, runs: bool) -> None:
    clock, calls = [NOW], list[str]()
    services = memo(clock)
    fine = ready("True", "Ready")
    assert asyncio.run(step(services, body("100"), calls, False, fine)).written
    clock[0] = NOW + dt.timedelta(seconds=seconds_later)
    report = asyncio.run(step(services, body(version), calls, True, fine))
    assert (report is not None) == runs
    assert calls == (["change", "timer"] if runs else ["change"])


@pytest.mark.parametrize(("version", "seconds_later", "stale"), [
    ("7", 0, True), ("7", 29, True), ("7", 30, False), ("8", 0, False), (None, 0, False)])
def test_the_write_ledger_knows_a_body_from_before_the_last_write(
        version: str | None, seconds_later: int, stale: bool) -> None:
    ledger = WriteLedger(window_seconds=30.0)
    ledger.wrote("uid", "7", NOW)
    assert ledger.is_stale("uid", version, NOW + dt.timedelta(seconds=seconds_later)) == stale
    assert not ledger.is_stale("other", "7", NOW)
    ledger.forget("uid")
    assert not ledger.is_stale("uid", "7", NOW)
