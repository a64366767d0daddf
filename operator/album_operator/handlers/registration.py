"""Builds the kopf registry and settings from the operator's config.

Handlers are registered here, explicitly, instead of by decorators at import time, so that
intervals come from configuration and importing a module never changes global state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf

from album_operator.adapters.kube import kopf_login
from album_operator.config import OperatorConfig
from album_operator.handlers import album_collection, edge_snapshot_policy, master_merge
from album_operator.models.common import GROUP, VERSION
from album_operator.services import Services

PREFIX = "albumops.io"
ALBUM_COLLECTIONS = (GROUP, VERSION, "albumcollections")
MASTER_MERGES = (GROUP, VERSION, "mastermerges")
EDGE_POLICIES = (GROUP, VERSION, "edgesnapshotpolicies")
ALBUM_TICK_SECONDS = 10.0


def _register_kind(registry: kopf.OperatorRegistry, resource: tuple[str, str, str],
                   on_change: Callable[..., Any], on_tick: Callable[..., Any],
                   delete: Callable[..., Any], timer_id: str, interval: float) -> None:
    """The same reconcile on every change and on a timer (so drift made outside Kubernetes
    is seen, multi-step work advances and failures are retried), and deletion behind the
    finalizer. The timer's handler skips objects that are backing off or resting."""
    kopf.on.resume(*resource, id="resume", registry=registry)(on_change)
    kopf.on.create(*resource, id="create", registry=registry)(on_change)
    kopf.on.update(*resource, id="update", registry=registry)(on_change)
    kopf.timer(*resource, id=timer_id, registry=registry, interval=interval,
               initial_delay=interval)(on_tick)
    kopf.on.delete(*resource, id="delete", registry=registry)(delete)


def _register_handlers(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    kopf.index(*ALBUM_COLLECTIONS, id="album_claims", registry=registry)(
        album_collection.index_claims)
    # A collection is compared with Qdrant every resync_seconds; the timer ticks more often
    # so that a failing one is retried with its backoff, not only at the next resync, and a
    # resync is late by at most half of one.
    _register_kind(registry, ALBUM_COLLECTIONS, album_collection.on_change,
                   album_collection.on_tick, album_collection.delete, "resync",
                   min(config.resync_seconds / 2, ALBUM_TICK_SECONDS))
    _register_kind(registry, MASTER_MERGES, master_merge.on_change, master_merge.on_tick,
                   master_merge.delete, "step", config.merge_step_seconds)
    _register_kind(registry, EDGE_POLICIES, edge_snapshot_policy.on_change,
                   edge_snapshot_policy.on_tick, edge_snapshot_policy.delete, "step",
                   config.edge_step_seconds)


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    kopf.on.login(id="login", registry=registry)(kopf_login)
    _register_handlers(registry, config)
    kopf.on.cleanup(id="copies", registry=registry)(_stop_copies)
    return registry


async def _stop_copies(*, memo: Services, **_: Any) -> None:
    """A stopping operator leaves no copy running: the next one resumes from status."""
    memo.copies.stop_all()


def build_settings(config: OperatorConfig) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration")
    settings.execution.default_backoff = config.retry_backoff_seconds
    # A watch that stays silent (seen once on a fresh API server: the objects applied right
    # after the operator started never arrived) is closed and resumed from its last version
    # within a minute, so the missed events still come in time for a `kubectl wait`.
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 75
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    # A timer tick running when its object is deleted must end before the finalizer goes;
    # kopf re-checks that every cancellation_polling seconds (60 by default), which made
    # deletion during a tick wait a minute.
    settings.background.cancellation_polling = 0.5
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "album-operator"
    settings.peering.standalone = config.peering is None
    if config.peering:
        settings.peering.name = config.peering
        settings.peering.clusterwide = config.all_namespaces
        settings.peering.priority = config.priority
        settings.peering.lifetime = config.peering_lifetime_seconds
        # Without its peering object a replica must wait, not run unsupervised beside others.
        settings.peering.mandatory = True
    return settings
