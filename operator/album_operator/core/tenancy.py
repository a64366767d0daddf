"""Namespaces are tenants: who may read or write a Qdrant collection, decided from its owner.

A collection belongs to the namespace of the resource whose owner stamp it carries (an
AlbumCollection that created or adopted it, or a MasterMerge that built it). A resource in
another namespace may use it only through a grant written by the owner, in the owner's
namespace (``spec.sharedWith`` of the AlbumCollection, in the spirit of the Gateway API's
ReferenceGrant). Refusals name the owner's namespace, never the owner's data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from album_operator.core.collections import OWNER_KIND, OWNER_REF, OWNER_UID

Need = Literal["Read", "Write"]
OWNING_KINDS = frozenset({"AlbumCollection", "MasterMerge"})


@dataclass(frozen=True)
class OwnerStamp:
    """Who a collection's metadata says owns it."""

    kind: str
    namespace: str
    name: str
    uid: str

    @staticmethod
    def from_metadata(metadata: Mapping[str, Any]) -> OwnerStamp | None:
        kind, ref, uid = (metadata.get(OWNER_KIND), metadata.get(OWNER_REF),
                          metadata.get(OWNER_UID))
        if not (isinstance(kind, str) and isinstance(ref, str) and isinstance(uid, str)
                and kind and uid):
            return None
        namespace, _, name = ref.partition("/")
        if not (namespace and name):
            return None
        return OwnerStamp(kind, namespace, name, uid)


@dataclass(frozen=True)
class Grant:
    """One entry of an owner's ``spec.sharedWith``."""

    namespace: str
    access: Literal["Read", "ReadWrite"]

    def allows(self, namespace: str, need: Need) -> bool:
        return self.namespace == namespace and (need == "Read" or self.access == "ReadWrite")


@dataclass(frozen=True)
class OwnerFacts:
    """What Kubernetes says of the stamped owner now: its uid (None when it no longer
    exists) and the grants it writes."""

    live_uid: str | None
    grants: Sequence[Grant] = ()


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    reason: str
    message: str


def decide_access(namespace: str, collection: str, stamp: OwnerStamp | None,
                  owner: OwnerFacts | None, need: Need) -> AccessDecision:
    """May a resource in ``namespace`` ``need`` the collection whose stamp is ``stamp``?

    ``owner`` describes the stamped resource (None when the stamp names no owning kind)."""
    verb = "read" if need == "Read" else "write to"
    if stamp is None or stamp.kind not in OWNING_KINDS:
        return AccessDecision(False, "NotOwned",
                              f"collection {collection} is not owned by any AlbumCollection or "
                              f"MasterMerge; adopt it with an AlbumCollection in {namespace} "
                              f"to {verb} it")
    if owner is None or owner.live_uid != stamp.uid:
        return AccessDecision(False, "OwnerGone",
                              f"collection {collection} carries the owner stamp of a resource "
                              f"in namespace {stamp.namespace} that no longer exists")
    if stamp.namespace == namespace:
        return AccessDecision(True, "Owned", f"collection {collection} belongs to {namespace}")
    if any(grant.allows(namespace, need) for grant in owner.grants):
        return AccessDecision(True, "Granted",
                              f"collection {collection} is shared with {namespace} by "
                              f"namespace {stamp.namespace}")
    return AccessDecision(False, "OwnedByAnotherNamespace",
                          f"collection {collection} belongs to namespace {stamp.namespace}, "
                          f"which does not share it with {namespace} for "
                          f"{'reading' if need == 'Read' else 'writing'}")
