"""Who owns an external object when several resources claim it: the oldest, always; and
whether an owner stamp in Qdrant names a given resource."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from album_operator.core.collections import Owner
from album_operator.core.tenancy import OwnerStamp


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


def stamped_by(metadata: Mapping[str, Any], owner: Owner) -> bool:
    """Whether a collection's owner stamp (its Qdrant metadata) names ``owner``: the same
    kind, namespace and name.

    Not the uid: a resource deleted and applied again (a GitOps replace, a backup restore)
    gets a new uid but is the same resource, and one namespace + name names one resource at
    a time, so it owns what its earlier self built. Only the operator writes these stamps (an
    AlbumCollection never adopts a collection another kind stamped), and a resource of
    another namespace has another reference. Every stamp the operator has written holds the
    kind, the reference and the uid, so stamps of earlier versions are read the same way."""
    stamp = OwnerStamp.from_metadata(metadata)
    return stamp is not None and (stamp.kind, stamp.namespace, stamp.name) == (
        owner.kind, owner.namespace, owner.name)


def stamp_is_stale(metadata: Mapping[str, Any], owner: Owner) -> bool:
    """A stamp of ``owner`` written by an earlier incarnation of it (another uid): rewritten
    on adoption, so checks that compare the uid with the live resource (tenancy) see the
    owner that exists."""
    stamp = OwnerStamp.from_metadata(metadata)
    return stamped_by(metadata, owner) and stamp is not None and stamp.uid != owner.uid
