"""The AlbumCollection reconciler on a real in-memory Qdrant engine (no Kubernetes)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from qdrant_client import QdrantClient

from album_operator.adapters.qdrant.connection import (
    ConnectionSettings,
    QdrantEngine,
    QdrantError,
    QdrantPool,
)
from album_operator.config import OperatorConfig
from album_operator.core.album_status import AlbumReconcileResult, album_status
from album_operator.core.claims import Claimant
from album_operator.core.engine import EMBEDDED
from album_operator.models.album_collection import AlbumCollectionSpec
from album_operator.models.common import ConnectionSpec
from album_operator.reconcilers.album_collection import KIND, reconcile_album_collection
from album_operator.reconcilers.resource import ResourceRef
from album_operator.services import Services

T = TypeVar("T")
SPEC = AlbumCollectionSpec.model_validate({"year": 2019, "vectors": {"size": 4}})


class FlakyEngine(QdrantEngine):
    """A real embedded engine that fails its next ``failures`` calls, like a lost server."""

    def __init__(self) -> None:
        super().__init__(QdrantClient(location=":memory:"), EMBEDDED, "flaky",
                         ConnectionSettings())
        self.failures = 0

    def call(self, fn: Callable[[QdrantClient], T]) -> T:
        if self.failures:
            self.failures -= 1
            raise QdrantError("connection refused")
        return super().call(fn)


class OneEngineServices(Services):
    def __init__(self, engine: QdrantEngine) -> None:
        super().__init__(config=OperatorConfig(), pool=QdrantPool(ConnectionSettings()),
                         kube=None)  # type: ignore[arg-type]
        self.engine = engine

    async def engine_for(self, namespace: str, connection: ConnectionSpec | None
                         ) -> QdrantEngine:
        return self.engine


def ref(name: str = "album-2019", uid: str = "uid-1",
        created: str = "2026-01-01T00:00:00Z") -> ResourceRef:
    return ResourceRef(KIND, "photos", name, uid, 1, created, {})


def reconcile(services: Services, status: dict[str, Any], who: ResourceRef | None = None,
              claimants: list[Claimant] | None = None) -> AlbumReconcileResult:
    return asyncio.run(reconcile_album_collection(who or ref(), SPEC, status, services,
                                                  claimants or []))


def test_the_first_successful_create_after_an_outage_is_not_a_recreation() -> None:
    engine = FlakyEngine()
    services = OneEngineServices(engine)
    engine.failures = 1
    failed = reconcile(services, {})
    assert failed.outcome == "QdrantUnavailable"
    status = album_status(failed, {}, 1, "2026-01-01T00:00:00Z")
    created = reconcile(services, status)
    assert created.outcome == "Created"
    assert not created.recreated


def test_a_collection_that_vanishes_after_creation_is_recreated() -> None:
    engine = FlakyEngine()
    services = OneEngineServices(engine)
    first = reconcile(services, {})
    status = album_status(first, {}, 1, "2026-01-01T00:00:00Z")
    engine.call(lambda c: c.delete_collection("album_2019"))
    again = reconcile(services, status)
    assert again.outcome == "Recreated"
    assert again.recreated


def test_a_younger_claimant_is_refused_before_anything_is_written() -> None:
    engine = FlakyEngine()
    services = OneEngineServices(engine)
    older = Claimant("2025-12-01T00:00:00Z", "uid-old", "photos", "older")
    result = reconcile(services, {}, claimants=[older])
    assert result.outcome == "Conflict"
    assert "photos/older" in result.message
    assert not engine.call(lambda c: c.collection_exists("album_2019"))


def test_an_unchanged_collection_is_reported_in_sync_without_writes() -> None:
    engine = FlakyEngine()
    services = OneEngineServices(engine)
    reconcile(services, {})
    again = reconcile(services, {"qdrantStatus": "green"})
    assert again.outcome == "InSync"
    assert again.plan is not None
    assert again.plan.actions == ()
