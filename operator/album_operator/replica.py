"""This replica's role among its peers, and what changes with it.

Every few seconds the replica reads its kopf peering object(s) and decides, as kopf does
(``core/replica.py``), whether it works or stands by. A replica that starts working (or
starts standalone) registers every EdgeSnapshotPolicy from the API with the snapshot
endpoint and only then serves and is Ready; one that kopf pauses stops serving (503 with
Retry-After), forgets its policies and its per-resource gauges, stops its MasterMerge copies,
and is not Ready.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import secrets
import socket
import threading
from typing import Any

from album_operator.adapters.metrics import forget_gauges
from album_operator.config import OperatorConfig
from album_operator.core.replica import (
    STANDALONE,
    Readiness,
    Role,
    combined_role,
    readiness,
    role_in,
)
from album_operator.reconcilers.edge_snapshot_policy import register_listed
from album_operator.services import Services

log = logging.getLogger(__name__)
POLL_SECONDS = 2.0
POLICIES = "edgesnapshotpolicies"
GLOB = frozenset("*?[")


def replica_identity() -> str:
    """kopf's identity for this process in the peering object: the Pod's name where the
    chart sets POD_ID (as kopf itself reads it), otherwise host, process and a nonce."""
    return os.environ.get("POD_ID") or (
        f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}")


def _is_pattern(namespace: str) -> bool:
    return bool(GLOB & set(namespace))


class Replica:
    """The role, registration and readiness of this replica; ``step`` is one look."""

    def __init__(self, config: OperatorConfig, services: Services, identity: str) -> None:
        self.config = config
        self.services = services
        self.identity = identity
        self.role = (STANDALONE if config.peering is None
                     else Role(False, "waiting for the first look at the peering object"))
        self.registered = False
        self.ready_event = threading.Event()
        """Set once this replica is Ready for the first time (tests wait for it)."""

    def readiness(self) -> Readiness:
        return readiness(self.role, self.registered)

    def start(self) -> None:
        """Nothing is served until the first registration."""
        self.services.edge.stand_by()

    async def run(self, poll_seconds: float = POLL_SECONDS) -> None:
        while True:
            try:
                await self.step()
            except Exception:  # never end the watch: the role would freeze where it was
                log.exception("looking at this replica's role failed; looking again")
            await asyncio.sleep(poll_seconds)

    async def step(self) -> None:
        role = await self._observe()
        if role.active != self.role.active:
            log.info("this replica %s: %s", "works" if role.active else "stands by",
                     role.reason)
        was_active, self.role = self.role.active, role
        if not role.active:
            if was_active or self.registered:
                self._stand_by()
            return
        if not self.registered:
            await self._register_all()

    def _stand_by(self) -> None:
        self.registered = False
        self.services.edge.stand_by()
        self.services.edge_facts.clear()
        forget_gauges()
        # kopf stops the timers, not these threads; the working replica resumes each build's
        # copy from its checkpoint in status, as after a stop
        self.services.copies.stop_all()

    async def _register_all(self) -> None:
        self.services.edge.stand_by()  # policies of an earlier term may be stale or gone
        try:
            policies = await self._list_policies()
        except Exception as exc:  # the API server: tried again at the next step
            log.warning("cannot list EdgeSnapshotPolicies to serve them (%s: %s); retrying",
                        type(exc).__name__, exc)
            return
        problems = [problem for body in policies
                    if (problem := await self._register(body)) is not None]
        for problem in problems:
            log.warning("EdgeSnapshotPolicy %s; not served until a step succeeds", problem)
        self.services.edge.serve()
        self.registered = True
        self.ready_event.set()
        log.info("serving %d EdgeSnapshotPolicies (%d not registered)",
                 len(policies) - len(problems), len(problems))

    async def _register(self, body: dict[str, Any]) -> str | None:
        try:
            return await register_listed(body, self.services)
        except Exception as exc:  # one policy's surprise must not keep the others unserved
            meta = body.get("metadata") or {}
            log.exception("registering EdgeSnapshotPolicy %s/%s failed", meta.get("namespace"),
                          meta.get("name"))
            self.services.edge.withdraw(str(meta.get("namespace")), str(meta.get("name")))
            return f"{meta.get('namespace')}/{meta.get('name')}: {type(exc).__name__}"

    async def _list_policies(self) -> list[dict[str, Any]]:
        kube = self.services.kube
        namespaces = self.config.namespaces
        if not namespaces or any(_is_pattern(n) for n in namespaces):
            return [item for item in await kube.list_custom_everywhere(POLICIES)
                    if self._watched(item["metadata"]["namespace"])]
        return [item for namespace in namespaces
                for item in await kube.list_custom(POLICIES, namespace)]

    def _watched(self, namespace: str) -> bool:
        return not self.config.namespaces or any(
            fnmatch.fnmatchcase(namespace, pattern) for pattern in self.config.namespaces)

    async def _observe(self) -> Role:
        if self.config.peering is None:
            return STANDALONE
        try:
            roles = [role for scope in self._peering_scopes()
                     for role in await self._roles_in(scope)]
        except Exception as exc:  # keep the role kopf last had too; look again next step
            log.warning("cannot read the peering object %s (%s: %s)", self.config.peering,
                        type(exc).__name__, exc)
            return self.role
        return combined_role(roles)

    def _peering_scopes(self) -> list[str | None]:
        """Where kopf keeps its peering: one ClusterKopfPeering (None) cluster-wide, a
        KopfPeering in each watched namespace otherwise."""
        if self.config.all_namespaces:
            return [None]
        return list(self.config.namespaces)

    async def _roles_in(self, scope: str | None) -> list[Role]:
        assert self.config.peering is not None
        name = self.config.peering
        pattern = scope is not None and _is_pattern(scope)
        found = await self.services.kube.kopf_peerings(name, "*" if pattern else scope)
        if pattern:
            found = [item for item in found
                     if fnmatch.fnmatchcase(item["metadata"]["namespace"], str(scope))]
        where = f"{name} in {scope}" if scope else name
        now = self.services.clock()
        if not found:
            return [role_in(where, None, self.identity, self.config.priority, now)]
        return [role_in(f"{name} in {item['metadata'].get('namespace')}" if scope else name,
                        item.get("status") or {}, self.identity, self.config.priority, now)
                for item in found]

