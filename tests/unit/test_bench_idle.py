"""The idle benchmark's counting: which fields a write changed, the backoff bound, totals."""

from __future__ import annotations

import json

from bench.idle import (
    Resource,
    WriteLog,
    backoff_attempt_bound,
    changed_paths,
    log_digest,
    plan,
    settled,
    summarize,
)


def test_changed_paths_names_leaves_and_skips_what_every_write_changes() -> None:
    old = {"metadata": {"resourceVersion": "1", "managedFields": [{"a": 1}],
                        "annotations": {"x": "1"}},
           "status": {"conditions": [{"type": "Ready", "status": "False"}], "n": 1}}
    new = {"metadata": {"resourceVersion": "2", "managedFields": [{"a": 2}],
                        "annotations": {"x": "2"}},
           "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "B"}],
                      "n": 1}}
    assert changed_paths(old, new) == [
        "metadata.annotations.x", "status.conditions[0].status", "status.conditions[1]"]
    assert changed_paths(new, new) == []


def test_write_log_counts_modified_per_object_and_diffs_consecutive_events() -> None:
    log = WriteLog()
    key = ("MasterMerge", "m")
    log.seed(key, {"status": {"conditions": [{"message": "a"}]}})
    log.record("MODIFIED", key, {"status": {"conditions": [{"message": "b"}]}})
    log.record("MODIFIED", key, {"status": {"conditions": [{"message": "b"}], "phase": "P"}})
    log.record("ADDED", ("MasterMerge", "n"), {})
    assert log.writes[key] == 2
    assert log.paths[key] == {"status.conditions[].message": 1, "status.phase": 1}
    assert log.other == {"ADDED": 1}


def test_summarize_separates_healthy_and_failing() -> None:
    a, b, c, d = (("K", n) for n in "abcd")
    figures = summarize({b: 3, c: 1}, healthy=[a, b], failing=[c, d])
    assert figures == {"healthy_writes": 3, "healthy_objects_written": 1, "failing_writes": 1,
                       "failing_max_per_resource": 1, "failing_mean_per_resource": 0.5}


def test_backoff_bound_follows_the_doubling_delays_shortened_by_jitter() -> None:
    # delays at most shortened by a quarter: 3.75, 7.5, 15, 30, 60, 120, 225 (capped 300)
    assert backoff_attempt_bound(0) == 1
    assert backoff_attempt_bound(11.25) == 3
    assert backoff_attempt_bound(300) == 7
    assert backoff_attempt_bound(461.25) == 8  # then one a capped delay
    assert backoff_attempt_bound(3600) == 8 + int((3600 - 461.25) // 225)


def test_log_digest_groups_by_message_with_numbers_blanked() -> None:
    lines = [json.dumps({"level": "info", "logger": "kopf.objects", "kind": "MasterMerge",
                         "message": f"m-{i} retrying in {i}s"}) for i in range(3)]
    assert log_digest([*lines, "Traceback"]) == {
        "info kopf.objects MasterMerge: m-N retrying in Ns": 3, "(not JSON) Traceback": 1}


def test_plan_has_about_fifteen_percent_failing_and_every_failure() -> None:
    secrets, first, second = plan(200, "http://127.0.0.1:1")
    resources = first + second
    assert len(resources) == 200
    assert sum(not r.healthy for r in resources) == 30
    assert {(r.kind, r.healthy) for r in resources} == {
        (k, h) for k in ("AlbumCollection", "MasterMerge", "EdgeSnapshotPolicy")
        for h in (True, False)}
    assert {r.kind for r in first} == {"AlbumCollection"}
    token = next(s for s in secrets if "token" in s["stringData"])["stringData"]["token"]
    assert len(token) >= 16


def test_settled_wants_ready_true_or_false_with_a_reason() -> None:
    ok, bad = Resource("K", "a", True, {}), Resource("K", "b", False, {})

    def obj(status: str, reason: str) -> dict[str, object]:
        return {"status": {"conditions": [{"type": "Ready", "status": status,
                                           "reason": reason}]}}

    assert settled(ok, obj("True", "Ready"))
    assert not settled(ok, obj("False", "Unavailable"))
    assert settled(bad, obj("False", "SourceMissing"))
    assert not settled(bad, obj("False", ""))
    assert not settled(bad, None)
