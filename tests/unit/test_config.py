"""Operator settings derived from flags."""

from __future__ import annotations

import pytest

from album_operator.config import peering_priority


def test_an_explicit_priority_is_used_as_given() -> None:
    assert peering_priority("250", "pod-a") == 250


def test_auto_priorities_are_stable_per_pod_and_distinct_between_pods() -> None:
    pods = [f"album-operator-7c9f8-{suffix}" for suffix in ("x2k4p", "q8z1m", "b7n3v")]
    priorities = [peering_priority("auto", pod) for pod in pods]
    assert len(set(priorities)) == len(pods)  # kopf pauses every peer when priorities tie
    assert priorities == [peering_priority("auto", pod) for pod in pods]
    assert all(p > 0 for p in priorities)  # above kopf's default of 0


def test_a_priority_that_is_neither_a_number_nor_auto_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        peering_priority("high", "pod-a")
