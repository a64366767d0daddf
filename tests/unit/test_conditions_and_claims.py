"""Conditions change only when something changed; the oldest claimant always wins."""

from __future__ import annotations

import pytest

from album_operator.core.claims import Claimant, rightful_owner, stamp_is_stale, stamped_by
from album_operator.core.collections import Owner
from album_operator.core.conditions import ConditionUpdate, find, merge_conditions, status_patch

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"


def test_a_new_condition_gets_the_current_time_and_generation() -> None:
    merged = merge_conditions([], [ConditionUpdate("Ready", "True", "Ready", "ok")], T0, 3)
    assert merged == [{"type": "Ready", "status": "True", "reason": "Ready", "message": "ok",
                       "lastTransitionTime": T0, "observedGeneration": 3}]


def test_reasserting_the_same_state_changes_nothing() -> None:
    first = merge_conditions([], [ConditionUpdate("Ready", "True", "Ready", "ok")], T0, 1)
    again = merge_conditions(first, [ConditionUpdate("Ready", "True", "Ready", "ok")], T1, 1)
    assert again == first
    assert status_patch({"conditions": first}, {"conditions": again}) == {}


def test_transition_time_moves_only_when_status_flips() -> None:
    first = merge_conditions([], [ConditionUpdate("Synced", "True", "InSync")], T0, 1)
    reason_only = merge_conditions(first, [ConditionUpdate("Synced", "True", "Repaired")], T1, 1)
    assert find(reason_only, "Synced")["lastTransitionTime"] == T0  # type: ignore[index]
    flipped = merge_conditions(first, [ConditionUpdate("Synced", "False", "DriftReported")],
                               T1, 2)
    assert find(flipped, "Synced")["lastTransitionTime"] == T1  # type: ignore[index]
    assert find(flipped, "Synced")["observedGeneration"] == 2  # type: ignore[index]


def test_ready_is_listed_first_and_other_conditions_are_kept() -> None:
    current = merge_conditions([], [ConditionUpdate("Synced", "True", "InSync")], T0, 1)
    merged = merge_conditions(current, [ConditionUpdate("Ready", "True", "Ready")], T0, 1)
    assert [c["type"] for c in merged] == ["Ready", "Synced"]


def test_status_patch_holds_only_changed_keys() -> None:
    assert status_patch({"a": 1, "b": [1]}, {"a": 1, "b": [2], "c": None}) == {"b": [2]}
    assert status_patch({"c": 5}, {"c": None}) == {"c": None}


def test_the_oldest_claimant_wins_whatever_the_order() -> None:
    old = Claimant("2026-01-01T00:00:00Z", "uid-b", "ns", "old")
    young = Claimant("2026-02-01T00:00:00Z", "uid-a", "ns", "young")
    assert rightful_owner([young, old]) == old
    assert rightful_owner([old, young]) == old


def test_claimants_created_in_the_same_second_are_ordered_by_uid() -> None:
    a = Claimant("2026-01-01T00:00:00Z", "uid-a", "ns", "a")
    b = Claimant("2026-01-01T00:00:00Z", "uid-b", "ns", "b")
    assert rightful_owner([b, a]) == a


def test_nobody_owns_an_unclaimed_collection() -> None:
    assert rightful_owner([]) is None


def test_within_one_second_the_incumbent_keeps_its_claim() -> None:
    a = Claimant("2026-01-01T00:00:00Z", "uid-a", "ns", "a")
    b = Claimant("2026-01-01T00:00:00Z", "uid-b", "ns", "b")
    assert rightful_owner([a, b], incumbent_uid="uid-b") == b
    older = Claimant("2025-12-31T23:59:59Z", "uid-z", "ns", "z")
    assert rightful_owner([a, b, older], incumbent_uid="uid-b") == older


MERGE = Owner("MasterMerge", "photos", "master", "uid-now")


@pytest.mark.parametrize(("metadata", "owned", "stale"), [
    (MERGE.metadata(), True, False),
    # the same resource deleted and applied again (GitOps replace, restore): a new uid
    ({**MERGE.metadata(), "albumops.io/owner-uid": "uid-before"}, True, True),
    # written by the first operator version, as every version has written it
    ({"albumops.io/owner-kind": "MasterMerge", "albumops.io/owner": "photos/master",
      "albumops.io/owner-uid": "7d3c-old"}, True, True),
    (Owner("MasterMerge", "other", "master", "uid-now").metadata(), False, False),
    (Owner("MasterMerge", "photos", "master-2", "uid-now").metadata(), False, False),
    (Owner("AlbumCollection", "photos", "master", "uid-now").metadata(), False, False),
    # the uid alone proves nothing
    ({"albumops.io/owner-kind": "MasterMerge", "albumops.io/owner-uid": "uid-now"}, False,
     False),
    ({}, False, False),
])
def test_an_owner_stamp_names_its_resource_by_kind_namespace_and_name_not_by_uid(
        metadata: dict[str, str], owned: bool, stale: bool) -> None:
    assert stamped_by(metadata, MERGE) is owned
    assert stamp_is_stale(metadata, MERGE) is stale
