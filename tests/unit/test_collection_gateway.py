"""The async collection gateway, the same calls on the embedded engine and on a server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from album_operator.adapters.qdrant import collections as qdrant_collections
from album_operator.adapters.qdrant.connection import (
    REQUESTS_IN_FLIGHT,
    QdrantEngine,
    QdrantError,
    open_engine,
)
from album_operator.core.collection_plan import plan_collection
from album_operator.core.collections import Owner, desired_from_spec
from album_operator.models.album_collection import AlbumCollectionSpec
from tests.conftest import ENGINES, ServerTarget, engine_under_test

T = TypeVar("T")
PREFIX = "gateway_"
OWNER = Owner("AlbumCollection", "photos", "album", "uid-1")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[QdrantEngine]:
    with engine_under_test(request, lambda name: name.startswith(PREFIX)) as engine:
        yield engine


class NoDefaultPool(ThreadPoolExecutor):
    """Stands in for the event loop's default thread pool and refuses every job."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        raise AssertionError("a gateway call waited on the loop's default thread pool")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    async def main() -> T:
        asyncio.get_running_loop().set_default_executor(NoDefaultPool())
        return await coroutine
    return asyncio.run(main())


def spec(name: str) -> AlbumCollectionSpec:
    return AlbumCollectionSpec.model_validate({
        "year": 2021, "collectionName": name,
        "vectors": {"size": 8, "distance": "Dot"},
        "sparseVectors": {"keywords": {"modifier": "idf"}},
        "quantization": {"scalar": {"quantile": 0.95}},
        "payloadIndexes": [{"field": "taken_at", "type": "datetime"}]})


def test_a_collection_made_through_the_gateway_is_observed_exactly_as_planned(
        engine: QdrantEngine) -> None:
    name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    desired = desired_from_spec(spec(name), OWNER)

    async def scenario() -> list[str]:
        assert await qdrant_collections.describe(engine, name) is None
        plan = plan_collection(desired, None, engine.capabilities, frozenset(), repair=True)
        await asyncio.gather(*(qdrant_collections.describe(engine, name) for _ in range(8)))
        for action in plan.actions:
            await qdrant_collections.apply(engine, action)
        observed = await qdrant_collections.describe(engine, name)
        assert observed is not None
        assert observed.points_count == 0
        assert observed.owner_uid() == "uid-1"
        again = plan_collection(desired, observed, engine.capabilities, frozenset(["taken_at"]),
                                repair=True)
        assert await qdrant_collections.delete(engine, name)
        assert await qdrant_collections.describe(engine, name) is None
        return [*again.drift, *(type(a).__name__ for a in again.actions)]

    assert run(scenario()) == []


def test_a_failed_call_is_a_qdrant_error_on_either_engine(engine: QdrantEngine) -> None:
    desired = desired_from_spec(spec(f"{PREFIX}{uuid.uuid4().hex[:8]}"), OWNER)
    plan = plan_collection(desired, None, engine.capabilities, frozenset(), repair=True)

    async def twice() -> None:
        await qdrant_collections.apply(engine, plan.actions[0])
        await qdrant_collections.apply(engine, plan.actions[0])  # already exists

    with pytest.raises(QdrantError):
        run(twice())


def test_a_server_engine_keeps_one_async_client_per_event_loop(
        qdrant_server: ServerTarget) -> None:
    engine = open_engine(qdrant_server.settings())

    async def clients() -> tuple[object, object]:
        first = await engine.request(lambda client: asyncio.sleep(0, client))
        second = await engine.request(lambda client: asyncio.sleep(0, client))
        return first, second

    try:
        first, second = run(clients())
        assert first is second
        assert run(clients())[0] is not first  # a new loop gets its own connections
    finally:
        engine.close()


def test_a_server_engine_has_a_bounded_number_of_requests_in_flight(
        qdrant_server: ServerTarget) -> None:
    """A fleet reconciled at once queues in order behind a few requests, on a real server."""
    engine = open_engine(qdrant_server.settings())
    in_flight, peak = 0, 0

    async def one(_: int) -> None:
        async def observe(client: Any) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await client.get_collections()
            finally:
                in_flight -= 1
        await engine.request(observe)

    async def fleet() -> None:
        await asyncio.gather(*(one(i) for i in range(50)))

    try:
        run(fleet())
    finally:
        engine.close()
    assert peak == REQUESTS_IN_FLIGHT
