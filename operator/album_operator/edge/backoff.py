"""Exponential backoff with full jitter, as pure functions of the attempt and a random source.

``ceiling(attempt) = min(cap, base * factor ** attempt)`` for attempt 0, 1, 2, ...; the delay
is ``ceiling * rand()`` with ``rand`` returning a float in ``[0, 1)`` (``random.random`` in
production, a fixed function in tests). Full jitter spreads the retries of many devices that
lost the endpoint at the same moment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base:
            raise ValueError("backoff needs base > 0, factor >= 1 and cap >= base")

    def ceiling(self, attempt: int) -> float:
        """The largest delay before retry number ``attempt`` (0 for the first retry)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        ceiling = self.base
        for _ in range(attempt):
            ceiling *= self.factor
            if ceiling >= self.cap:
                return self.cap
        return min(ceiling, self.cap)

    def delay(self, attempt: int, rand: Callable[[], float]) -> float:
        """A delay drawn uniformly from ``[0, ceiling(attempt))``."""
        draw = rand()
        if not 0.0 <= draw < 1.0:
            raise ValueError(f"random source returned {draw}, not a float in [0, 1)")
        return self.ceiling(attempt) * draw
