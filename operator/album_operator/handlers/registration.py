"""Builds the kopf registry and settings from the operator's config.

Handlers are registered here, explicitly, instead of by decorators at import time, so that
intervals come from configuration and importing a module never changes global state.
"""

from __future__ import annotations

import logging
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


def _register_album_collections(registry: kopf.OperatorRegistry,
                                config: OperatorConfig) -> None:
    kopf.index(*ALBUM_COLLECTIONS, id="album_claims", registry=registry)(
        album_collection.index_claims)
    reconcile = album_collection.reconcile
    kopf.on.resume(*ALBUM_COLLECTIONS, id="resume", registry=registry)(reconcile)
    kopf.on.create(*ALBUM_COLLECTIONS, id="create", registry=registry)(reconcile)
    kopf.on.update(*ALBUM_COLLECTIONS, id="update", registry=registry)(reconcile)
    kopf.timer(*ALBUM_COLLECTIONS, id="resync", registry=registry,
               interval=config.resync_seconds, initial_delay=config.resync_seconds)(reconcile)
    kopf.on.delete(*ALBUM_COLLECTIONS, id="delete", registry=registry)(
        album_collection.delete)


def _register_master_merges(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    step = master_merge.step
    kopf.on.resume(*MASTER_MERGES, id="resume", registry=registry)(step)
    kopf.on.create(*MASTER_MERGES, id="create", registry=registry)(step)
    kopf.on.update(*MASTER_MERGES, id="update", registry=registry)(step)
    kopf.timer(*MASTER_MERGES, id="step", registry=registry,
               interval=config.merge_step_seconds)(step)
    kopf.on.delete(*MASTER_MERGES, id="delete", registry=registry)(master_merge.delete)


def _register_edge_policies(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    step = edge_snapshot_policy.step
    kopf.on.resume(*EDGE_POLICIES, id="resume", registry=registry)(step)
    kopf.on.create(*EDGE_POLICIES, id="create", registry=registry)(step)
    kopf.on.update(*EDGE_POLICIES, id="update", registry=registry)(step)
    kopf.timer(*EDGE_POLICIES, id="step", registry=registry,
               interval=config.edge_step_seconds)(step)
    kopf.on.delete(*EDGE_POLICIES, id="delete", registry=registry)(edge_snapshot_policy.delete)


async def _probe_qdrant(*, memo: Services, **_: Any) -> str:
    return memo.pool.default.describe()


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    kopf.on.login(id="login", registry=registry)(kopf_login)
    _register_album_collections(registry, config)
    _register_master_merges(registry, config)
    _register_edge_policies(registry, config)
    kopf.on.probe(id="qdrant", registry=registry)(_probe_qdrant)
    return registry


def build_settings(config: OperatorConfig) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration")
    settings.execution.default_backoff = config.retry_backoff_seconds
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "album-operator"
    settings.peering.standalone = config.peering is None
    if config.peering:
        settings.peering.name = config.peering
        settings.peering.clusterwide = config.all_namespaces
        settings.peering.priority = config.priority
        # Without its peering object a replica must wait, not run unsupervised beside others.
        settings.peering.mandatory = True
    return settings
