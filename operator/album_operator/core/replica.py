"""Whether this replica works or stands by, and whether it is Ready. Pure.

kopf pauses a replica that sees, in a peering object, a live peer of higher priority, and
every replica when priorities tie (``kopf._core.engines.peering.process_peering_event``); a
replica whose mandatory peering object does not exist stays paused. kopf keeps that state
to itself (a toggle inside ``kopf.spawn_tasks``, handed to no handler and not in
``settings.peering``), so the operator reads the same peering objects and applies the same
rule here. A peer is alive until ``lastseen + lifetime``, as kopf counts it.

Readiness (``/readyz``) is the role plus start-up: a working replica (or one running
standalone) is Ready once it has registered every policy with the snapshot endpoint, so a
Service routes devices only to the replica that serves them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from album_operator.core.timeutil import parse_rfc3339

DEFAULT_PEER_LIFETIME_S = 60


@dataclass(frozen=True)
class Peer:
    identity: str
    priority: int
    deadline: dt.datetime | None
    """When it counts as dead without another keep-alive (None: its record has no time)."""

    def alive(self, now: dt.datetime) -> bool:
        return self.deadline is None or self.deadline > now


@dataclass(frozen=True)
class Role:
    active: bool
    reason: str


STANDALONE = Role(True, "running standalone (no peering)")


def peers_of(status: Mapping[str, Any]) -> list[Peer]:
    """The peers a kopf peering object's status announces: ``{identity: {priority,
    lifetime, lastseen}}``; entries kopf is removing (null) are left out."""
    found = []
    for identity, record in status.items():
        if not isinstance(record, Mapping):
            continue
        lastseen = record.get("lastseen")
        lifetime = dt.timedelta(seconds=int(record.get("lifetime", DEFAULT_PEER_LIFETIME_S)))
        deadline = parse_rfc3339(str(lastseen)) + lifetime if lastseen else None
        found.append(Peer(str(identity), int(record.get("priority", 0)), deadline))
    return found


def role_in(peering: str, status: Mapping[str, Any] | None, identity: str, priority: int,
            now: dt.datetime) -> Role:
    """This replica's role as one peering object decides it (None: the object is missing)."""
    if status is None:
        return Role(False, f"the peering object {peering} does not exist")
    others = [p for p in peers_of(status) if p.identity != identity and p.alive(now)]
    higher = sorted(p.identity for p in others if p.priority > priority)
    if higher:
        return Role(False, f"standing by: {', '.join(higher)} has a higher priority in "
                    f"{peering}")
    same = sorted(p.identity for p in others if p.priority == priority)
    if same:
        return Role(False, f"paused: {', '.join(same)} has the same priority ({priority}) in "
                    f"{peering}, so kopf pauses every replica")
    return Role(True, f"active: no live peer of higher or equal priority in {peering}")


def combined_role(roles: Sequence[Role]) -> Role:
    """Paused when any peering object pauses it (kopf pauses on any), active otherwise."""
    paused = [role for role in roles if not role.active]
    if paused:
        return Role(False, "; ".join(role.reason for role in paused))
    if not roles:
        return Role(False, "no peering object observed yet")
    return roles[0] if len(roles) == 1 else Role(True, "active in every peering object")


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str


def readiness(role: Role, registered: bool) -> Readiness:
    """Ready: working (or standalone) and every policy registered with the endpoint."""
    if not role.active:
        return Readiness(False, role.reason)
    if not registered:
        return Readiness(False, f"{role.reason}; registering the snapshot policies")
    return Readiness(True, role.reason)
