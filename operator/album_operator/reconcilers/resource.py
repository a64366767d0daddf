"""The identity of a custom resource as every reconciler needs it, read once from the body."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from album_operator.core.claims import Claimant
from album_operator.core.collections import Owner


@dataclass(frozen=True)
class ResourceRef:
    kind: str
    namespace: str
    name: str
    uid: str
    generation: int
    created: str
    annotations: Mapping[str, str]

    @classmethod
    def from_body(cls, kind: str, body: Mapping[str, Any]) -> ResourceRef:
        meta = body["metadata"]
        return cls(kind=kind, namespace=meta["namespace"], name=meta["name"], uid=meta["uid"],
                   generation=int(meta.get("generation", 0)),
                   created=meta.get("creationTimestamp", ""),
                   annotations=dict(meta.get("annotations") or {}))

    def annotation_is_true(self, key: str) -> bool:
        return self.annotations.get(key, "").lower() == "true"

    def claimant(self) -> Claimant:
        return Claimant(self.created, self.uid, self.namespace, self.name)

    def owner(self) -> Owner:
        return Owner(self.kind, self.namespace, self.name, self.uid)
