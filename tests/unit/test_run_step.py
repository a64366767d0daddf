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
from album_operator.services import KeyedLocks, ReconcileSlots, Services

NOW = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)


def ready(status: str, reason: str) -> dict[str, Any]:
    return {"conditions": [{"type": "Ready", "status": status, "reason": reason,
                            "message": f"{reason}.", "lastTransitionTime": "2026-12-03T10:00:00Z"}]}


BROKEN = ready("False", "InvalidSchedule")


def body(version: str, status: dict[str, Any] | None = None, uid: str = "uid-1") -> kopf.Body:
    raw = {"metadata": {"namespace": "ns", "name": "p", "uid": uid, "generation": 1,
                        "resourceVersion": version}, "status": status or {}}
    return kopf.Body(cast(kopf.RawBody, raw))


def memo(clock: list[dt.datetime]) -> Services:
    return cast(Services, SimpleNamespace(
        locks=KeyedLocks(), retries=RetryBook(base=5.0, cap=300.0), writes=WriteLedger(),
        slots=ReconcileSlots(2), clock=lambda: clock[0]))


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


@pytest.mark.parametrize(("shows_write", "seconds_later", "runs"), [
    (False, 1, False),  # the body from before the write: stale
    (True, 1, True),    # the watch delivered the write
    (False, 31, True),  # the write never arrived (a failed patch): trusted again
])
def test_a_timer_skips_a_body_that_does_not_show_the_last_write(
        events: list[str], shows_write: bool, seconds_later: int, runs: bool) -> None:
    clock, calls = [NOW], list[str]()
    services = memo(clock)
    fine = ready("True", "Ready")
    first = asyncio.run(step(services, body("100"), calls, False, fine))
    assert first is not None
    assert first.written
    clock[0] = NOW + dt.timedelta(seconds=seconds_later)
    seen = body("101", first.status if shows_write else None)
    report = asyncio.run(step(services, seen, calls, True, fine))
    assert (report is not None) == runs
    assert calls == (["change", "timer"] if runs else ["change"])


WRITTEN = {"observedGeneration": 3, "phase": "Copying"}


@pytest.mark.parametrize(("seen", "seconds_later", "stale"), [
    ({}, 0, True), ({"observedGeneration": 3, "phase": "Planning"}, 29, True),
    ({}, 30, False), (WRITTEN, 0, False), (dict(WRITTEN), 1, False)])
def test_the_write_ledger_knows_a_status_from_before_the_last_write(
        seen: dict[str, Any], seconds_later: int, stale: bool) -> None:
    ledger = WriteLedger(window_seconds=30.0)
    ledger.wrote("uid", WRITTEN, NOW)
    assert ledger.is_stale("uid", seen, NOW + dt.timedelta(seconds=seconds_later)) == stale
    assert not ledger.is_stale("other", {}, NOW)
    ledger.forget("uid")
    assert not ledger.is_stale("uid", {}, NOW)


def test_a_fleet_is_reconciled_a_few_at_a_time_and_finishes_in_turn(events: list[str]) -> None:
    """Ten objects changed at once, two reconcile slots: never more than two run together,
    and the first ones finish before the last ones start."""
    services = memo([NOW])
    running, peak, order = 0, 0, list[str]()

    async def one(uid: str) -> None:
        async def reconcile(ref: ResourceRef, previous: dict[str, Any]) -> dict[str, Any]:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            order.append(f"start {ref.uid}")
            await asyncio.sleep(0.01)
            running -= 1
            order.append(f"end {ref.uid}")
            return ready("True", "Ready")
        await common.run_step("EdgeSnapshotPolicy", EdgeSnapshotPolicyStatus,
                              body("1", uid=uid), kopf.Patch(), services,
                              cast(kopf.Logger, logging.getLogger("test")), reconcile,
                              timer=False)

    async def fleet() -> None:
        await asyncio.gather(*(one(f"u{i}") for i in range(10)))
    asyncio.run(fleet())
    assert peak == 2
    assert order.index("end u0") < order.index("start u9")
