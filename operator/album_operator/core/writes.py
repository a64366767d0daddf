"""Which bodies a step must not act on: those that predate the operator's own last write.

kopf hands a timer the body it last saw. Between a status write and the watch event that
delivers it, that body still carries the status from before the write, and a step computed
from it would redo the last step or announce its condition change a second time. A stale
body is recognised by its resourceVersion: the one the last write was computed from. The
window bounds the wait for a write that never arrives (a failed patch): after it the body is
trusted again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

WINDOW_SECONDS = 30.0


@dataclass(frozen=True)
class _Write:
    based_on: str
    at: dt.datetime


@dataclass
class WriteLedger:
    window_seconds: float = WINDOW_SECONDS
    _writes: dict[str, _Write] = field(default_factory=dict)

    def wrote(self, key: str, based_on: str | None, now: dt.datetime) -> None:
        """A status write computed from the body at resourceVersion ``based_on``."""
        if based_on:
            self._writes[key] = _Write(based_on, now)

    def is_stale(self, key: str, resource_version: str | None, now: dt.datetime) -> bool:
        """Whether a body at ``resource_version`` predates the last write of ``key``."""
        write = self._writes.get(key)
        if write is None or resource_version != write.based_on:
            return False
        return (now - write.at).total_seconds() < self.window_seconds

    def forget(self, key: str) -> None:
        self._writes.pop(key, None)
