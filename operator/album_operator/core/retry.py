"""When a failing resource is tried again: exponential backoff with jitter, kept per object.

The book lives in memory (kopf's memo): a restarted operator tries everything once at once,
which is what a restart is for. Nothing here reads the clock or draws random numbers; the
caller passes ``now`` and the jitter fraction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

BASE_SECONDS = 5.0
CAP_SECONDS = 300.0


def backoff_seconds(attempt: int, base: float = BASE_SECONDS, cap: float = CAP_SECONDS,
                    jitter: float = 0.0) -> float:
    """Delay before retry number ``attempt`` (1 for the first retry): ``base`` doubling
    up to ``cap``, then shortened by up to a quarter by ``jitter`` in [0, 1) so that a
    fleet failing together does not retry in lockstep."""
    if attempt < 1:
        return 0.0
    exponential = base * float(2 ** min(attempt - 1, 30))
    return min(cap, exponential) * (1.0 - 0.25 * min(max(jitter, 0.0), 1.0))


@dataclass
class _Entry:
    attempts: int  # failed attempts in a row; 0 while resting after a success
    not_before: dt.datetime | None  # None: wait for a new generation (a permanent failure)
    generation: int


@dataclass
class RetryBook:
    """Per object: how many attempts in a row failed and when the next timer tick may run
    (change handlers always run: the change may be the fix)."""

    base: float = BASE_SECONDS
    cap: float = CAP_SECONDS
    _entries: dict[str, _Entry] = field(default_factory=dict)

    def due(self, key: str, generation: int, now: dt.datetime) -> bool:
        """Whether an attempt may run now. A new generation (the spec changed) is always
        tried at once: the change may be the fix."""
        entry = self._entries.get(key)
        if entry is None or entry.generation != generation:
            return True
        return entry.not_before is not None and now >= entry.not_before

    def failed(self, key: str, generation: int, now: dt.datetime, jitter: float,
               permanent: bool = False) -> float | None:
        """Records a failed attempt; returns the delay before the next one (None when only
        a spec change can help)."""
        entry = self._entries.get(key)
        attempts = entry.attempts + 1 if entry and entry.generation == generation else 1
        if permanent:
            self._entries[key] = _Entry(attempts, None, generation)
            return None
        delay = backoff_seconds(attempts, self.base, self.cap, jitter)
        self._entries[key] = _Entry(attempts, now + dt.timedelta(seconds=delay), generation)
        return delay

    def rest(self, key: str, generation: int, until: dt.datetime) -> None:
        """After a success: timer ticks before ``until`` have nothing to do."""
        self._entries[key] = _Entry(0, until, generation)

    def resting_until(self, key: str) -> dt.datetime | None:
        """When the timer's next reconcile of an object resting after a success is due;
        None while it is not resting."""
        entry = self._entries.get(key)
        return entry.not_before if entry and entry.attempts == 0 else None

    def attempts(self, key: str) -> int:
        entry = self._entries.get(key)
        return entry.attempts if entry else 0

    def succeeded(self, key: str) -> None:
        self._entries.pop(key, None)

    forget = succeeded
