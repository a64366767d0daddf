"""A replica that does not serve answers devices 503 with Retry-After, never 401 or 404 (which
album-edge takes as final); the probe endpoints say whether it is alive and whether it is
Ready. Real HTTP servers on loopback; the registry and the readiness are set by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import requests

from album_operator.adapters.edge.endpoint import EdgeRegistry, PolicyAccess, token_digest
from album_operator.adapters.edge.http import EdgeEndpoint
from album_operator.adapters.edge.store import PolicyStore
from album_operator.adapters.probes import Liveness, ProbeServer
from album_operator.adapters.qdrant.connection import QdrantEngine
from album_operator.core.replica import Readiness
from album_operator.edge.protocol import LIST

TOKEN = "kiosk-token-0123456789abcdef"


@pytest.fixture
def endpoint() -> Iterator[EdgeEndpoint]:
    running = EdgeEndpoint(EdgeRegistry(serving=False), 0, "127.0.0.1").start()
    yield running
    running.stop()


def list_snapshots(endpoint: EdgeEndpoint, token: str = TOKEN) -> requests.Response:
    url = f"http://127.0.0.1:{endpoint.port}{LIST.path('ns', 'kiosks')}"
    return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def register(registry: EdgeRegistry, tmp: Path) -> None:
    registry.put(PolicyAccess("ns", "kiosks", frozenset({token_digest(TOKEN)}),
                              PolicyStore(tmp), cast(QdrantEngine, None), "album_2025", {},
                              None, frozenset()))


def test_a_standby_answers_a_device_503_with_retry_after_not_401(
        endpoint: EdgeEndpoint) -> None:
    answer = list_snapshots(endpoint)
    assert answer.status_code == 503
    assert int(answer.headers["Retry-After"]) > 0
    assert "retry" in answer.json()["error"]


def test_a_replica_that_serves_answers_its_policy_and_stops_when_it_stands_by(
        endpoint: EdgeEndpoint, tmp_path: Path) -> None:
    registry = endpoint.registry
    register(registry, tmp_path)
    registry.serve()
    assert list_snapshots(endpoint).status_code == 200
    assert list_snapshots(endpoint, "another-token-0123456789").status_code == 401
    registry.stand_by()
    assert list_snapshots(endpoint).status_code == 503
    assert registry.get("ns", "kiosks") is None


def probe(answers: list[Readiness], alive: list[bool]) -> tuple[int, int, dict[str, object]]:
    async def ask() -> tuple[int, int, dict[str, object]]:
        server = await ProbeServer(0, lambda: Liveness(alive[0], {"qdrant": "embedded"}),
                                   lambda: answers[0], host="127.0.0.1").start()
        try:
            base = f"http://127.0.0.1:{server.port}"
            health = await asyncio.to_thread(requests.get, f"{base}/healthz", timeout=10)
            ready = await asyncio.to_thread(requests.get, f"{base}/readyz", timeout=10)
            return health.status_code, ready.status_code, ready.json()
        finally:
            await server.stop()
    return asyncio.run(ask())


def test_readyz_is_503_with_the_reason_while_standing_by_and_healthz_stays_200() -> None:
    health, ready, said = probe([Readiness(False, "standing by: pod-c has a higher priority")],
                                [True])
    assert (health, ready) == (200, 503)
    assert said == {"ready": False, "reason": "standing by: pod-c has a higher priority"}


def test_readyz_is_200_on_the_working_replica() -> None:
    assert probe([Readiness(True, "active")], [True])[:2] == (200, 200)


def test_healthz_is_503_when_the_snapshot_endpoint_stopped() -> None:
    assert probe([Readiness(True, "active")], [False])[0] == 503
