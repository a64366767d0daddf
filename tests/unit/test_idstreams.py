"""Constant-memory ID-set decisions over streams in Qdrant's scroll order."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable

import pytest

from album_operator.core.idstreams import (
    Collision,
    OutOfOrder,
    PointId,
    Reservoir,
    collision_message,
    compare_ids,
    distinct_union,
    id_order_key,
    scan_collisions,
)

U1, U2, U3 = sorted(str(uuid.UUID(int=n)) for n in (7, 300, 2**100))


def test_integers_come_before_uuids_in_scroll_order() -> None:
    ids: list[PointId] = [U2, 10**12, U1, 3, 0]
    assert sorted(ids, key=id_order_key) == [0, 3, 10**12, U1, U2]


@pytest.mark.parametrize(("streams", "distinct", "colliding", "examples"), [
    ([("a", [1, 2, 3]), ("b", [4, 5])], 5, 0, ()),
    ([("a", [1, 2, 3]), ("b", [3, 4]), ("c", [1, 3, 5])], 5, 2,
     (Collision(1, ("a", "c")), Collision(3, ("a", "b", "c")))),
    ([("a", [1, U1]), ("b", [2, U1, U3])], 4, 1, (Collision(U1, ("a", "b")),)),
    ([("a", []), ("b", [])], 0, 0, ()),
    ([("a", [5])], 1, 0, ()),
])
def test_collision_scan(streams: list[tuple[str, list[PointId]]], distinct: int,
                        colliding: int, examples: tuple[Collision, ...]) -> None:
    scan = scan_collisions(streams)
    assert (scan.distinct, scan.colliding_ids, scan.examples) == (distinct, colliding,
                                                                    examples)


def test_the_collision_message_gives_a_few_examples_and_a_count() -> None:
    scan = scan_collisions([("a", range(8)), ("b", range(8))], examples=2)
    assert collision_message(scan) == (
        "8 point IDs appear in more than one source: 0 (a & b), 1 (a & b) and 6 more")


def test_a_stream_out_of_scroll_order_is_refused_not_misread() -> None:
    with pytest.raises(OutOfOrder, match="b returned 2"):
        scan_collisions([("a", [1, 2]), ("b", [3, 2])])
    with pytest.raises(OutOfOrder):
        scan_collisions([("a", [U1, 4])])


def test_the_union_is_distinct_and_ordered() -> None:
    assert list(distinct_union([("a", [1, 4, U2]), ("b", [2, 4, U1, U2])])) == [
        1, 2, 4, U1, U2]


@pytest.mark.parametrize(("expected", "actual", "counts", "equal"), [
    ([1, 2, 3], [1, 2, 3], (3, 0, 0), True),
    ([1, 2, 3], [1, 3], (3, 1, 0), False),
    ([1, 3], [1, 2, 3, U1], (2, 0, 2), False),
    ([], [], (0, 0, 0), True),
    ([1, U1], [2, U2], (2, 2, 2), False),
])
def test_id_set_comparison(expected: list[PointId], actual: list[PointId],
                           counts: tuple[int, int, int], equal: bool) -> None:
    diff = compare_ids(expected, actual)
    assert (diff.expected, diff.missing, diff.unexpected) == counts
    assert diff.equal is equal


def test_differences_name_examples() -> None:
    diff = compare_ids([1, 2, 3, 4], [1, 5], examples=2)
    assert diff.examples == ("missing 2", "missing 3")


def streamed(n: int) -> Iterable[int]:
    yield from range(n)


def test_the_reservoir_keeps_everything_when_the_stream_is_short() -> None:
    reservoir: Reservoir[int] = Reservoir(10, random.Random(0))
    assert list(reservoir.tap(streamed(4))) == [0, 1, 2, 3]
    assert reservoir.items == [0, 1, 2, 3]


def test_the_reservoir_samples_uniformly_from_a_long_stream() -> None:
    hits = [0] * 100
    for seed in range(400):
        reservoir: Reservoir[int] = Reservoir(10, random.Random(seed))
        for item in streamed(100):
            reservoir.offer(item)
        assert len(set(reservoir.items)) == 10
        for item in reservoir.items:
            hits[item] += 1
    # each item is expected 40 times; a biased sampler (first or last items) is far off
    assert min(hits) > 15
    assert max(hits) < 70
    assert sum(hits[:50]) == pytest.approx(sum(hits[50:]), rel=0.15)
