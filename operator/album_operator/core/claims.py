"""Who owns an external object when several resources claim it: the oldest, always."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Claimant:
    """Ordered by creation time, then uid, so every replica picks the same winner."""

    created: str
    uid: str
    namespace: str
    name: str

    def describe(self) -> str:
        return f"{self.namespace}/{self.name}"


def rightful_owner(claimants: Iterable[Claimant]) -> Claimant | None:
    return min(claimants, default=None)
