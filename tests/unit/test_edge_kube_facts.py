"""What an EdgeSnapshotPolicy reads from Kubernetes (device tokens, its collection's owner) is
read again once a resync interval has passed on the operator's clock, and not before."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from album_operator.adapters.edge.endpoint import token_digest
from album_operator.adapters.qdrant.connection import ConnectionSettings, QdrantPool
from album_operator.config import OperatorConfig
from album_operator.core.collections import Owner
from album_operator.models.edge_snapshot_policy import EdgeSnapshotPolicySpec
from album_operator.reconcilers.edge_snapshot_policy import KubeFacts, Target, _kube_facts
from album_operator.reconcilers.resource import ResourceRef
from album_operator.services import Services

TOKEN = "a-device-token-long-enough-0123456789"
NEW_TOKEN = "the-rotated-device-token-9876543210"
REF = ResourceRef("EdgeSnapshotPolicy", "photos", "edge", "uid-edge", 1,
                  "2026-01-01T00:00:00Z", {})
SPEC = EdgeSnapshotPolicySpec.model_validate({
    "collection": "album_2025", "schedule": "0 0 1 1 *",
    "devices": [{"name": "kiosk", "tokenSecretRef": "kiosk-token"}]})
TARGET = Target("album_2025", {}, Owner("AlbumCollection", "photos", "album-2025",
                                        "uid-album").metadata())


class SecretsKube:
    """The device token Secret and the collection's owner; counts the Secret reads."""

    def __init__(self) -> None:
        self.token = TOKEN
        self.secret_reads = 0

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        self.secret_reads += 1
        return {"token": self.token}

    async def get_custom(self, plural: str, namespace: str, name: str
                         ) -> dict[str, Any] | None:
        return {"metadata": {"uid": "uid-album"}}


class ClockedServices(Services):
    def __init__(self, kube: SecretsKube) -> None:
        super().__init__(config=OperatorConfig(resync_seconds=60.0),
                         pool=QdrantPool(ConnectionSettings()),
                         kube=kube)  # type: ignore[arg-type]
        self.now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
        self.clock = lambda: self.now


def facts(services: Services) -> KubeFacts:
    return asyncio.run(_kube_facts(REF, SPEC, services, None, TARGET))  # type: ignore[arg-type]


def test_kubernetes_facts_are_read_again_once_a_resync_interval_passes_on_the_clock(
        ) -> None:
    kube = SecretsKube()
    services = ClockedServices(kube)
    assert facts(services).token_digests == {token_digest(TOKEN)}
    kube.token = NEW_TOKEN
    services.now += dt.timedelta(seconds=59)
    assert facts(services).token_digests == {token_digest(TOKEN)}, "read once per interval"
    assert kube.secret_reads == 1
    services.now += dt.timedelta(seconds=1)
    assert facts(services).token_digests == {token_digest(NEW_TOKEN)}
    assert kube.secret_reads == 2
