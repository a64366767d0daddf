"""EdgeSnapshotPolicy's pure decisions: runs, catch-up, names, retention, partial diffs,
upload validation and routing."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest

from album_operator.core.edge import (
    LostSnapshots,
    Published,
    RunTrigger,
    due_run,
    lost_snapshots,
    parse_duration,
    partial_files,
    publishing_shard_needs_indexing,
    route_points,
    snapshot_name,
    snapshots_to_delete,
    upload_targets,
)
from album_operator.core.edge_points import Layout
from album_operator.models.edge_snapshot_policy import UploadSpec

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 10, 14, 30, 12, 345000, tzinfo=UTC)
HOURLY = RunTrigger(schedule="0 * * * *", last_scheduled_time=dt.datetime(
    2026, 3, 10, 14, 0, tzinfo=UTC), created=dt.datetime(2026, 1, 1, tzinfo=UTC),
    trigger_token=None, last_trigger_token=None, suspended=False,
    published_times=(dt.datetime(2026, 3, 10, 14, 0, 5, tzinfo=UTC),))
PREDECESSORS = (dt.datetime(2025, 12, 31, tzinfo=UTC),)  # before HOURLY was created


@pytest.mark.parametrize(("changes", "reason", "scheduled_for"), [
    ({}, None, None),
    ({"last_scheduled_time": dt.datetime(2026, 3, 10, 13, 0, tzinfo=UTC)},
     "scheduled for 2026-03-10T14:00:00Z", dt.datetime(2026, 3, 10, 14, 0, tzinfo=UTC)),
    # the operator was down for a day: one catch-up run, for the latest missed time
    ({"last_scheduled_time": dt.datetime(2026, 3, 9, 9, 0, tzinfo=UTC)},
     "scheduled for 2026-03-10T14:00:00Z", dt.datetime(2026, 3, 10, 14, 0, tzinfo=UTC)),
    ({"last_scheduled_time": dt.datetime(2026, 3, 9, 9, 0, tzinfo=UTC), "suspended": True},
     None, None),
    ({"trigger_token": "a", "last_trigger_token": None},
     "requested (albumops.io/snapshot-now=a)", NOW.replace(microsecond=0)),
    ({"trigger_token": "a", "last_trigger_token": "a"}, None, None),
    ({"trigger_token": "b", "last_trigger_token": "a", "suspended": True},
     "requested (albumops.io/snapshot-now=b)", NOW.replace(microsecond=0)),
    ({"published_times": (), "last_scheduled_time": None},
     "nothing published by this policy yet", NOW.replace(microsecond=0)),
    ({"published_times": (), "last_scheduled_time": None, "suspended": True}, None, None),
    # a predecessor of the same name retained its snapshots: this policy still runs first
    ({"published_times": PREDECESSORS, "last_scheduled_time": None},
     "nothing published by this policy yet", NOW.replace(microsecond=0)),
    # its first run, in the second it was created, seen before its status was: no second run
    ({"published_times": (dt.datetime(2026, 3, 10, 14, 10, tzinfo=UTC),),
      "last_scheduled_time": None, "created": dt.datetime(2026, 3, 10, 14, 10, tzinfo=UTC)},
     None, None),
    # published since creation, status lost: the schedule counts from creation
    ({"published_times": (*PREDECESSORS, dt.datetime(2026, 3, 10, 14, 20, tzinfo=UTC)),
      "last_scheduled_time": None, "created": dt.datetime(2026, 3, 10, 14, 10, tzinfo=UTC)},
     None, None),
    # a snapshot of unknown age may be this policy's own: no rush either
    ({"published_times": (None,), "last_scheduled_time": None,
      "created": dt.datetime(2026, 3, 10, 14, 10, tzinfo=UTC)}, None, None),
])
def test_when_a_run_is_due(changes: dict[str, Any], reason: str | None,
                           scheduled_for: dt.datetime | None) -> None:
    run = due_run(replace(HOURLY, **changes), NOW)
    assert (run.reason if run else None) == reason
    assert (run.scheduled_for if run else None) == scheduled_for


LOST = LostSnapshots(("p-shard0-20260310T140000Z.tar",), "the status records "
                     "p-shard0-20260310T140000Z.tar, which this replica's disk does not have")


@pytest.mark.parametrize(("changes", "reason"), [
    # restarted on an emptyDir: republished now, not at 15:00
    ({"lost": LOST, "published_times": ()}, f"republishing: {LOST.why}"),
    ({"lost": LOST, "suspended": True}, None),
    ({"lost": LOST, "trigger_token": "a"}, "requested (albumops.io/snapshot-now=a)"),
])
def test_lost_snapshots_are_republished_at_once_unless_suspended(
        changes: dict[str, Any], reason: str | None) -> None:
    run = due_run(replace(HOURLY, **changes), NOW)
    assert (run.reason if run else None) == reason
    if run:
        assert run.scheduled_for == NOW.replace(microsecond=0)


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, 10, hour, minute, tzinfo=UTC)


S0_13, S0_14, S1_14 = (Published(0, "s0-13", at(13)), Published(0, "s0-14", at(14)),
                       Published(1, "s1-14", at(14)))


@pytest.mark.parametrize(("recorded", "present", "reported", "lost"), [
    ([S0_14, S0_13], [S0_14, S0_13], False, None),
    # an emptyDir after a restart, or another replica's disk before a failover
    ([S0_14, S0_13], [], False, ("s0-14",)),
    # retention removed an older one: the newest is what devices are served
    ([S0_14, S0_13], [S0_14], False, None),
    ([S0_14, S0_13], [S0_13], False, ("s0-14",)),
    # a newer one was published since the status was written
    ([S0_13], [Published(0, "s0-15", at(15))], False, None),
    ([S0_14, S1_14], [S0_14], False, ("s1-14",)),
    ([], [], False, None),
    # the last step reported them missing and its republish failed: still lost
    ([], [], True, ()),
])
def test_lost_snapshots_are_the_newest_recorded_per_shard_that_nothing_present_replaces(
        recorded: list[Published], present: list[Published], reported: bool,
        lost: tuple[str, ...] | None) -> None:
    found = lost_snapshots(recorded, present, "this replica's disk", reported)
    assert (found.names if found else None) == lost
    if found and found.names:
        assert found.why == (f"the status records {', '.join(found.names)}, which this "
                             "replica's disk does not have")


def test_snapshot_names_are_deterministic_per_scheduled_time() -> None:
    at = dt.datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
    assert snapshot_name("album-2025-edge", 0, at) == "album-2025-edge-shard0-20260310T140000Z.tar"
    assert snapshot_name("p", 3, at) != snapshot_name("p", 3, at + dt.timedelta(hours=1))


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("168h", 604800), ("7d", 604800), ("1d12h", 129600)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "7", "d", "7w", "1h x"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def hours_ago(shard: int, *hours: int) -> list[Published]:
    return [Published(shard, f"s{shard}-{h}h", NOW - dt.timedelta(hours=h)) for h in hours]


@pytest.mark.parametrize(("snapshots", "keep_last", "max_age_h", "deleted"), [
    (hours_ago(0, 1, 2, 3), 3, None, []),
    (hours_ago(0, 1, 2, 3, 4, 5), 3, None, ["s0-4h", "s0-5h"]),
    (hours_ago(0, 1, 2, 30), 3, 24, ["s0-30h"]),
    # the newest is kept even when it is too old
    (hours_ago(0, 48, 72), 3, 24, ["s0-72h"]),
    (hours_ago(0, 48), 1, 24, []),
    # per shard
    (hours_ago(0, 1, 2) + hours_ago(1, 5, 6), 1, None, ["s0-2h", "s1-6h"]),
    ([], 3, 24, []),
])
def test_retention(snapshots: list[Published], keep_last: int, max_age_h: int | None,
                   deleted: list[str]) -> None:
    max_age = dt.timedelta(hours=max_age_h) if max_age_h is not None else None
    doomed = snapshots_to_delete(snapshots, keep_last, max_age, NOW)
    assert sorted(s.name for s in doomed) == sorted(deleted)


def segment(version: int, **files: int | None) -> dict[str, Any]:
    return {"segment_version": version, "file_versions": dict(files)}


SERVER = {"A": segment(9, **{"matrix.dat": 9, "deleted.dat": 12, "id_tracker.versions": None}),
          "B": segment(11, **{"chunk_0.mmap": 11})}


@pytest.mark.parametrize(("device", "expected"), [
    (SERVER, None),
    ({"A": segment(9, **{"matrix.dat": 9, "deleted.dat": 9, "id_tracker.versions": None}),
      "B": segment(0, **{"chunk_0.mmap": 0})},
     ["segments/A/deleted.dat", "segments/A/id_tracker.versions",
      "segments/A/segment.json", "segments/A/segment_manifest.json",
      "segments/A/version.info", "segments/B/chunk_0.mmap", "segments/B/segment.json",
      "segments/B/segment_manifest.json", "segments/B/version.info"]),
    # a segment the device never had: every file
    ({"A": SERVER["A"]},
     ["segments/A/id_tracker.versions", "segments/A/segment.json",
      "segments/A/segment_manifest.json", "segments/A/version.info",
      "segments/B/chunk_0.mmap", "segments/B/segment.json",
      "segments/B/segment_manifest.json", "segments/B/version.info"]),
    ({}, ["segments/A/deleted.dat", "segments/A/id_tracker.versions", "segments/A/matrix.dat",
          "segments/A/segment.json", "segments/A/segment_manifest.json",
          "segments/A/version.info", "segments/B/chunk_0.mmap", "segments/B/segment.json",
          "segments/B/segment_manifest.json", "segments/B/version.info"]),
])
def test_partial_files(device: dict[str, Any], expected: list[str] | None) -> None:
    assert partial_files(SERVER, device) == expected


def test_a_device_with_an_extra_segment_is_not_current() -> None:
    files = partial_files(SERVER, {**SERVER, "C": segment(3, x=3)})
    assert files is not None
    assert "segments/A/matrix.dat" not in files


ROUTED = UploadSpec.model_validate({"routeBy": {"field": "year", "template": "album_{year}"},
                                    "maxBatchSize": 10})
UUID = "6f1c2f8e-3b1a-4f0e-9a57-0c3c9a3b2f11"


@pytest.mark.parametrize(("unindexed", "points", "needed"), [
    (0, 0, False),
    (1_000, 1_000, False),        # a small shard: brute force is cheap up to the floor
    (1_001, 1_000, True),
    (1_001, 5_000, True),         # above the floor and a tenth
    (5_000, 50_000, False),       # a tenth of a large shard
    (5_001, 50_000, True),
])
def test_when_changed_points_get_indexed(unindexed: int, points: int, needed: bool) -> None:
    assert publishing_shard_needs_indexing(unindexed, points) is needed


LAYOUTS: dict[str, Layout | None] = {
    "album_2024": {"": 3}, "album_2025": {"": 3}, "album_2026": {"img": 3, "txt": 2},
    "album_2027": None}  # allowed, but Qdrant has no such collection (yet)
ALLOWED = frozenset(LAYOUTS)


@pytest.mark.parametrize(("point", "target", "reason"), [
    ({"id": 1, "vector": [1, 2, 3], "payload": {"year": 2025}}, "album_2025", None),
    ({"id": UUID.upper(), "vector": [1, 2, 3], "payload": {"year": "2024"}}, "album_2024",
     None),
    ({"id": 9, "vector": {"img": [1, 2, 3], "txt": [1, 2]}, "payload": {"year": 2026}},
     "album_2026", None),
    ({"id": -1, "vector": [1, 2, 3], "payload": {"year": 2025}}, None, "0..2^64-1"),
    ({"id": 2**64, "vector": [1, 2, 3], "payload": {"year": 2025}}, None, "outside"),
    ({"id": "not-a-uuid", "vector": [1, 2, 3], "payload": {"year": 2025}}, None,
     "or a UUID"),
    ({"id": True, "vector": [1, 2, 3], "payload": {"year": 2025}}, None, "boolean"),
    ({"id": 2, "vector": [1, 2], "payload": {"year": 2025}}, None, "has 2 dimensions"),
    ({"id": 3, "vector": {"image": [1, 2, 3]}, "payload": {"year": 2025}}, None,
     "send a list"),
    ({"id": 4, "vector": [1, "x", 3], "payload": {"year": 2025}}, None, "not a number"),
    ({"id": 4, "vector": [1, float("inf"), 3], "payload": {"year": 2025}}, None,
     "not a finite number"),
    ({"id": 5, "vector": [1, 2, 3], "payload": {}}, None, "'year' missing"),
    ({"id": 6, "vector": [1, 2, 3], "payload": {"year": "../x"}}, None, "not a plain value"),
    ({"id": 6, "vector": [1, 2, 3], "payload": {"year": [2025]}}, None, "not a plain value"),
    ({"id": 7, "vector": [1, 2, 3], "payload": {"year": 1990}}, None,
     "album_1990 is not an allowed upload target"),
    # routed to a collection whose vectors differ from the published one's: its own layout
    ({"id": 10, "vector": [1, 2, 3], "payload": {"year": 2026}}, None,
     "named vectors ['img', 'txt']"),
    ({"id": 11, "vector": {"img": [1, 2, 3]}, "payload": {"year": 2026}}, None,
     "vector 'txt' is missing"),
    ({"id": 12, "vector": [1, 2, 3], "payload": {"year": 2027}}, None,
     "album_2027 does not exist"),
    ({"id": 8, "vector": [1, 2, 3], "payload": ["year"]}, None, "payload must be a JSON object"),
    ({"id": 8, "vector": [1, 2, 3], "extra": 1, "payload": {"year": 2025}}, None,
     "unknown point fields"),
    ("not a point", None, "a point is a JSON object"),
])
def test_upload_validation_and_routing(point: Any, target: str | None,
                                       reason: str | None) -> None:
    routed, rejected = route_points([point], ROUTED, LAYOUTS, ALLOWED)
    if target is not None:
        assert [p.collection for p in routed] == [target]
        assert rejected == []
    else:
        assert routed == []
        assert reason is not None
        assert reason in rejected[0].reason


def test_a_fixed_upload_collection_must_still_be_allowed() -> None:
    fixed = UploadSpec.model_validate({"collection": "album_master"})
    routed, rejected = route_points([{"id": 1, "vector": [1, 2, 3]}], fixed,
                                    {"album_master": {"": 3}}, ALLOWED)
    assert routed == []
    assert "album_master is not an allowed upload target" in rejected[0].reason


def test_a_batch_is_judged_point_by_point_and_keeps_positions() -> None:
    batch = [{"id": 1, "vector": [1, 2, 3], "payload": {"year": 2025}},
             {"id": 2**64, "vector": [1, 2, 3], "payload": {"year": 2025}},
             {"id": UUID.upper(), "vector": [1, 2, float("nan")], "payload": {"year": 2024}},
             {"id": 3, "vector": {"img": [1, 2, 3], "txt": [1, 2]}, "payload": {"year": 2026}},
             [1, 2]]
    assert upload_targets(batch, ROUTED) == {"album_2024", "album_2025", "album_2026"}
    routed, rejected = route_points(batch, ROUTED, LAYOUTS, ALLOWED)
    assert [(p.index, p.point_id, p.collection) for p in routed] == [
        (0, 1, "album_2025"), (3, 3, "album_2026")]
    assert [(r.index, r.point_id) for r in rejected] == [(1, 2**64), (2, UUID), (4, None)]
