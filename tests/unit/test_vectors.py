"""How stored vectors compare: cosine after normalisation, other distances as stored."""

from __future__ import annotations

from typing import Any

import pytest

from album_operator.core.vectors import (
    cosine_names,
    matching_pairs,
    rows_match,
    same_vectors,
    vectors_match,
)
from album_operator.edge.points import VectorSpec

COSINE = frozenset({"", "image"})


@pytest.mark.parametrize(("left", "right", "normalise", "same"), [
    ([3.0, 4.0], [0.6, 0.8], True, True),     # local mode returns raw or normalised
    ([3.0, 4.0], [0.6, 0.8], False, False),   # a scaled Dot or Euclid vector scores differently
    ([0.6, 0.8], [0.60001, 0.8], True, True),
    ([0.6, 0.8], [0.6 + 1e-9, 0.8], False, True),  # float noise
    ([1000.0, 2.0], [1000.00001, 2.0], False, True),  # float32 precision of a large value
    ([0.6, 0.8], [0.8, 0.6], True, False),
    ([0.6, 0.8], [0.8, 0.6], False, False),
    ([0.0, 1e-3], [0.0, 2e-3], False, False),  # small components are not rounded away
    ([1.0], [1.0, 0.0], True, False),
    ([0.0, 0.0], [0.0, 0.0], True, True),     # a zero vector does not divide by zero
])
def test_vectors_match(left: list[float], right: list[float], normalise: bool,
                       same: bool) -> None:
    assert vectors_match(left, right, normalise) is same
    assert rows_match([left], [right], normalise) == [same], "the bulk comparison agrees"


VECTOR_PAIRS: list[tuple[Any, Any]] = [
    ([3.0, 4.0], [0.6, 0.8]), ([0.6, 0.8], [0.8, 0.6]), ([0.0, 0.0], [0.0, 0.0]),
    ({"image": [3.0, 4.0], "raw": [1.0, 2.0]}, {"image": [0.6, 0.8], "raw": [1.0, 2.0]}),
    ({"image": [3.0, 4.0], "raw": [1.0, 2.0]}, {"image": [0.6, 0.8], "raw": [0.5, 1.0]}),
    ({"image": [3.0, 4.0]}, {"raw": [3.0, 4.0]}),
    ([1.0], [1.0, 0.0]),
]


def test_bulk_pairs_agree_with_one_by_one() -> None:
    assert matching_pairs(VECTOR_PAIRS, COSINE) == [
        same_vectors(a, b, COSINE) for a, b in VECTOR_PAIRS] == [
        True, False, True, True, False, False, False]


@pytest.mark.parametrize(("left", "right", "same"), [
    ([3.0, 4.0], [0.6, 0.8], True),  # a bare list is the unnamed vector
    ([3.0, 4.0], {"": [0.6, 0.8]}, True),
    ({"image": [1.0, 0.0], "text": [0.0, 2.0]}, {"image": [2.0, 0.0], "text": [0.0, 2.0]},
     True),
    ({"image": [1.0, 0.0], "text": [0.0, 2.0]}, {"image": [1.0, 0.0], "text": [0.0, 1.0]},
     False),  # "text" is not cosine: its scale counts
    ({"image": [1.0, 0.0]}, {"image": [1.0, 0.0], "text": [0.0, 1.0]}, False),
    ({"image": [1.0, 0.0]}, {"text": [1.0, 0.0]}, False),
    ([1.0, 0.0], [0.0, 1.0], False),
    ([1.0, 0.0], [1.0, 0.0, 0.0], False),
    (None, [], True),
])
def test_records_vectors_compare_by_name(left: Any, right: Any, same: bool) -> None:
    assert same_vectors(left, right, COSINE) is same


def test_cosine_names_follow_the_layout_whatever_the_spelling() -> None:
    layout = {"": VectorSpec(4, "Cosine"), "image": VectorSpec(4, "cosine"),
              "text": VectorSpec(4, "Dot"), "geo": VectorSpec(2, "Euclid")}
    assert cosine_names(layout) == frozenset({"", "image"})
    assert cosine_names({}) == frozenset()
