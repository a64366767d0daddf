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


def rightful_owner(claimants: Iterable[Claimant], incumbent_uid: str | None = None
                   ) -> Claimant | None:
    """The oldest claimant. Creation times have one-second resolution, so among claimants
    created in the same second the incumbent (who already owns the object) keeps it."""
    return min(claimants, default=None,
               key=lambda c: (c.created, c.uid != incumbent_uid, c.uid))
