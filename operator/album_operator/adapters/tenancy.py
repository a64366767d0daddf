"""Looks up who owns a Qdrant collection, for the tenancy decision in ``core/tenancy.py``.

The owner stamp comes from the collection's metadata in Qdrant; whether that owner still
exists, and what it shares, from Kubernetes (the owning resource itself, in its namespace).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from album_operator.adapters.kube import KubeApi
from album_operator.core.tenancy import (
    OWNING_KINDS,
    AccessDecision,
    Grant,
    Need,
    OwnerFacts,
    OwnerStamp,
    decide_access,
)

PLURALS = {"AlbumCollection": "albumcollections", "MasterMerge": "mastermerges"}


def _grants(resource: Mapping[str, Any]) -> tuple[Grant, ...]:
    shared = (resource.get("spec") or {}).get("sharedWith") or []
    return tuple(Grant(entry["namespace"], entry.get("access", "Read")) for entry in shared
                 if isinstance(entry, dict) and entry.get("namespace"))


async def owner_facts(kube: KubeApi, stamp: OwnerStamp) -> OwnerFacts | None:
    """The stamped owner as Kubernetes has it now; None for a kind that owns nothing."""
    if stamp.kind not in OWNING_KINDS:
        return None
    try:
        resource = await kube.get_custom(PLURALS[stamp.kind], stamp.namespace, stamp.name)
    except PermissionError:
        # Not allowed to look (namespaced RBAC): the owner counts as present, sharing nothing.
        return OwnerFacts(stamp.uid)
    if resource is None:
        return OwnerFacts(None)
    return OwnerFacts((resource.get("metadata") or {}).get("uid"), _grants(resource))


async def collection_access(kube: KubeApi, namespace: str, collection: str,
                            metadata: Mapping[str, Any], need: Need) -> AccessDecision:
    """May a resource in ``namespace`` ``need`` this collection, whose Qdrant metadata is
    ``metadata``?"""
    stamp = OwnerStamp.from_metadata(metadata)
    owner = await owner_facts(kube, stamp) if stamp is not None else None
    return decide_access(namespace, collection, stamp, owner, need)
