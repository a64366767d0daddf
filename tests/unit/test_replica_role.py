"""Which replica works, as kopf decides it from its peering object, and when a replica is
Ready (core/replica.py); what a replica does when it stops and starts working (replica.py,
against fakes of the API server and of the registration reconciler)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from album_operator import replica as replica_module
from album_operator.adapters import metrics
from album_operator.adapters.edge.endpoint import EdgeRegistry, PolicyAccess
from album_operator.adapters.edge.store import PolicyStore
from album_operator.adapters.qdrant.connection import QdrantEngine
from album_operator.config import OperatorConfig
from album_operator.core.replica import (
    STANDALONE,
    Role,
    combined_role,
    readiness,
    role_in,
)
from album_operator.replica import Replica
from album_operator.services import KeyedLocks, Services

NOW = dt.datetime(2026, 5, 4, 12, 0, 0, tzinfo=dt.UTC)
ME, PRIORITY = "pod-b", 500


def peer(priority: int, seconds_ago: int = 5, lifetime: int = 60) -> dict[str, Any]:
    seen = NOW - dt.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime,
            "lastseen": seen.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")}


@pytest.mark.parametrize(("status", "active", "said"), [
    ({ME: peer(PRIORITY)}, True, "no live peer"),
    ({ME: peer(PRIORITY), "pod-a": peer(100)}, True, "no live peer"),
    ({ME: peer(PRIORITY), "pod-c": peer(900)}, False, "pod-c has a higher priority"),
    # kopf pauses every replica when priorities tie
    ({ME: peer(PRIORITY), "pod-c": peer(PRIORITY)}, False, "the same priority"),
    # a crashed peer counts until its lifetime since the last keep-alive has passed
    ({ME: peer(PRIORITY), "pod-c": peer(900, seconds_ago=59)}, False, "higher priority"),
    ({ME: peer(PRIORITY), "pod-c": peer(900, seconds_ago=60)}, True, "no live peer"),
    ({ME: peer(PRIORITY), "pod-c": peer(900, seconds_ago=100, lifetime=120)}, False,
     "higher priority"),
    # a record without a time is alive (kopf reads it as seen now); null: being removed
    ({ME: peer(PRIORITY), "pod-c": {"priority": 900}}, False, "higher priority"),
    ({ME: peer(PRIORITY), "pod-c": None}, True, "no live peer"),
    # `kopf freeze` announces a peer of its own priority: the operator pauses for it
    ({"freezer@laptop": peer(1000)}, False, "freezer@laptop has a higher priority"),
    ({}, True, "no live peer"),
    (None, False, "does not exist"),
])
def test_a_replica_works_unless_a_live_peer_outranks_or_ties_with_it(
        status: dict[str, Any] | None, active: bool, said: str) -> None:
    role = role_in("album-operator", status, ME, PRIORITY, NOW)
    assert role.active is active
    assert said in role.reason


def test_a_replica_paused_by_any_of_its_peering_objects_is_paused() -> None:
    working, paused = Role(True, "active in a"), Role(False, "standing by in b")
    assert combined_role([working, working]).active
    assert combined_role([working, paused]) == Role(False, "standing by in b")
    assert not combined_role([]).active


@pytest.mark.parametrize(("role", "registered", "ready"), [
    (STANDALONE, False, False),
    (STANDALONE, True, True),
    (Role(True, "active"), True, True),
    (Role(True, "active"), False, False),
    (Role(False, "standing by"), True, False),
])
def test_only_a_working_replica_that_registered_its_policies_is_ready(
        role: Role, registered: bool, ready: bool) -> None:
    assert readiness(role, registered).ready is ready


class FakeKube:
    """The API server: the peering object's status and the policies listed."""

    def __init__(self) -> None:
        self.peering: dict[str, Any] | None = {ME: peer(PRIORITY)}
        self.policies = [{"metadata": {"namespace": "ns", "name": "kiosks", "uid": "u1"}}]
        self.lists = 0

    async def kopf_peerings(self, name: str, namespace: str | None) -> list[dict[str, Any]]:
        if self.peering is None:
            return []
        return [{"metadata": {"name": name, "namespace": namespace},
                 "status": self.peering}]

    async def list_custom(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        self.lists += 1
        return [p for p in self.policies if p["metadata"]["namespace"] == namespace]


class RunningCopies:
    """The MasterMerge copies this replica runs (CopyRegistry's stop_all)."""

    stopped = False

    def stop_all(self) -> None:
        self.stopped = True


def access(namespace: str, name: str, tmp: Path) -> PolicyAccess:
    return PolicyAccess(namespace, name, frozenset({"digest"}), PolicyStore(tmp),
                        cast(QdrantEngine, None), "album_2025", {}, None, frozenset())


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Replica, FakeKube]:
    kube = FakeKube()
    config = OperatorConfig(namespaces=("ns",), peering="album-operator", priority=PRIORITY)
    services = cast(Services, SimpleNamespace(
        config=config, kube=kube, edge=EdgeRegistry(), edge_facts={}, locks=KeyedLocks(),
        copies=RunningCopies(), clock=lambda: NOW))

    async def register(body: dict[str, Any], memo: Services) -> str | None:
        meta = body["metadata"]
        memo.edge.put(access(meta["namespace"], meta["name"], tmp_path))
        return None
    monkeypatch.setattr(replica_module, "register_listed", register)
    replica = Replica(config, services, ME)
    replica.start()
    return replica, kube


def test_a_replica_serves_nothing_until_it_works_and_has_registered(
        world: tuple[Replica, FakeKube]) -> None:
    replica, _ = world
    edge = replica.services.edge
    assert not edge.serving
    assert not replica.readiness().ready
    asyncio.run(replica.step())
    assert edge.serving
    assert edge.get("ns", "kiosks") is not None
    assert replica.readiness().ready
    assert replica.ready_event.is_set()


def test_a_paused_replica_drops_its_policies_and_gauges_and_registers_afresh_on_resuming(
        world: tuple[Replica, FakeKube]) -> None:
    replica, kube = world
    edge = replica.services.edge
    asyncio.run(replica.step())
    metrics.EDGE_PUBLISHED_BYTES.labels("ns", "kiosks").set(1234)
    metrics.set_resource_ready("EdgeSnapshotPolicy", "ns", "kiosks", True)
    replica.services.edge_facts["u1"] = object()
    assert gauge_series("albumops_edge_published_bytes", "kiosks")
    copies = cast(RunningCopies, replica.services.copies)

    assert kube.peering is not None
    kube.peering["pod-c"] = peer(900)  # a replica of higher priority appears
    asyncio.run(replica.step())
    assert not edge.serving
    assert edge.get("ns", "kiosks") is None
    assert replica.services.edge_facts == {}
    assert not replica.readiness().ready
    assert "pod-c has a higher priority" in replica.readiness().reason
    assert not gauge_series("albumops_edge_published_bytes", "kiosks")
    assert not gauge_series("albumops_resource_ready", "kiosks")
    assert copies.stopped, "the working replica resumes each build's copy from status"

    # while paused the device was removed: what it registers afresh is what the API says now
    kube.policies = [{"metadata": {"namespace": "ns", "name": "lobby", "uid": "u2"}}]
    del kube.peering["pod-c"]
    asyncio.run(replica.step())
    assert edge.serving
    assert replica.readiness().ready
    assert edge.get("ns", "kiosks") is None
    assert edge.get("ns", "lobby") is not None


def test_a_replica_whose_peering_object_is_missing_stands_by(
        world: tuple[Replica, FakeKube]) -> None:
    replica, kube = world
    kube.peering = None
    asyncio.run(replica.step())
    assert not replica.services.edge.serving
    assert "does not exist" in replica.readiness().reason
    assert kube.lists == 0


def gauge_series(metric: str, name: str) -> list[Any]:
    from prometheus_client import REGISTRY
    return [sample for family in REGISTRY.collect() if family.name == metric
            for sample in family.samples if sample.labels.get("name") == name]


def test_a_policy_whose_registration_fails_is_left_out_and_the_others_are_served(
        world: tuple[Replica, FakeKube], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
        ) -> None:
    replica, kube = world
    kube.policies.append({"metadata": {"namespace": "ns", "name": "broken", "uid": "u3"}})

    async def register(body: dict[str, Any], memo: Services) -> str | None:
        meta = body["metadata"]
        if meta["name"] == "broken":
            raise RuntimeError("an API error nobody expected")
        memo.edge.put(access(meta["namespace"], meta["name"], tmp_path))
        return None
    monkeypatch.setattr(replica_module, "register_listed", register)
    asyncio.run(replica.step())
    assert replica.readiness().ready
    assert replica.services.edge.get("ns", "kiosks") is not None
    assert replica.services.edge.get("ns", "broken") is None
