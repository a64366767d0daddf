"""Exponential backoff with full jitter: the ceilings by attempt, and the draws under them."""

from __future__ import annotations

import random

import pytest

from album_operator.edge.backoff import Backoff
from album_operator.edge.pushing import shrink_batch


@pytest.mark.parametrize(("attempt", "ceiling"), [
    (0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 30.0), (7, 30.0),
    (50, 30.0), (10_000, 30.0),
])
def test_ceiling_doubles_from_base_up_to_cap(attempt: int, ceiling: float) -> None:
    assert Backoff(base=0.5, factor=2.0, cap=30.0).ceiling(attempt) == ceiling


@pytest.mark.parametrize(("draw", "attempt", "delay"), [
    (0.0, 0, 0.0), (0.5, 0, 0.25), (0.5, 3, 2.0), (0.999, 6, 29.97), (0.25, 100, 7.5),
])
def test_delay_is_the_ceiling_scaled_by_the_draw(draw: float, attempt: int,
                                                 delay: float) -> None:
    assert Backoff().delay(attempt, lambda: draw) == pytest.approx(delay)


def test_full_jitter_spreads_delays_over_the_whole_range() -> None:
    backoff = Backoff(base=1.0, factor=2.0, cap=8.0)
    rng = random.Random(7)
    delays = [backoff.delay(3, rng.random) for _ in range(2000)]
    assert all(0.0 <= d < 8.0 for d in delays)
    assert min(delays) < 0.5
    assert max(delays) > 7.5
    assert 3.5 < sum(delays) / len(delays) < 4.5


@pytest.mark.parametrize("draw", [1.0, -0.1, 2.0])
def test_a_random_source_outside_zero_one_is_refused(draw: float) -> None:
    with pytest.raises(ValueError, match="random source"):
        Backoff().delay(0, lambda: draw)


@pytest.mark.parametrize(("base", "factor", "cap"), [(0.0, 2.0, 1.0), (1.0, 0.5, 5.0),
                                                     (2.0, 2.0, 1.0)])
def test_nonsense_settings_are_refused(base: float, factor: float, cap: float) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(base=base, factor=factor, cap=cap)


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().ceiling(-1)


@pytest.mark.parametrize(("size", "after"), [(64, 32), (3, 1), (2, 1), (1, None)])
def test_a_413_halves_the_batch_until_one_point(size: int, after: int | None) -> None:
    assert shrink_batch(size) == after
