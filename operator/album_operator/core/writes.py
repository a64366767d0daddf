"""Which bodies a step must not act on: those that do not yet show the operator's own last
status write.

kopf hands a timer the body it last saw. Between a status write and the watch event that
delivers it (seconds when a fleet is being reconciled at once), that body still carries the
status from before the write, and a step computed from it would redo the last step, stamp a
new sync time or announce its condition change a second time. A body is stale while its
status differs from the one last written; the window bounds the wait for a write that never
arrives (a failed patch): after it the body is trusted again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WINDOW_SECONDS = 30.0


@dataclass(frozen=True)
class _Write:
    status: Mapping[str, Any]
    at: dt.datetime


@dataclass
class WriteLedger:
    window_seconds: float = WINDOW_SECONDS
    _writes: dict[str, _Write] = field(default_factory=dict)

    def wrote(self, key: str, status: Mapping[str, Any], now: dt.datetime) -> None:
        """The whole status just written for ``key``."""
        self._writes[key] = _Write(status, now)

    def is_stale(self, key: str, status: Mapping[str, Any], now: dt.datetime) -> bool:
        """Whether a body showing ``status`` predates the last write of ``key``."""
        write = self._writes.get(key)
        if write is None or (now - write.at).total_seconds() >= self.window_seconds:
            return False
        return dict(status) != dict(write.status)

    def forget(self, key: str) -> None:
        self._writes.pop(key, None)
