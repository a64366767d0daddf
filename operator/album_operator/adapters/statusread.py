"""The Kubernetes reads behind ``album-operator status``: the resources, their events, and the
Qdrant connection each one uses. Synchronous: a CLI does one thing at a time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from album_operator.adapters.kube import KubeApi
from album_operator.adapters.qdrant.connection import ConnectionSettings
from album_operator.core.statusview import EventLine
from album_operator.models.common import GROUP, VERSION
from album_operator.models.kinds import ALL_KINDS, KindInfo


class StatusReadError(Exception):
    """A read the status screen needs failed: one line that says what to do."""


def _names_an_object(exc: ApiException) -> bool:
    """A 404 about one object (a Status naming it), not about a resource type the API server
    does not serve (its body is then ``404 page not found``)."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return False
    return isinstance(body, dict) and bool((body.get("details") or {}).get("name"))


def _explain(exc: ApiException, what: str) -> StatusReadError:
    if exc.status == 404 and not _names_an_object(exc):
        return StatusReadError(f"{what}: the albumops.io CRDs are not installed; install them "
                               "with: album-operator crds install")
    if exc.status == 403:
        return StatusReadError(f"{what}: forbidden (your credentials may not read it)")
    return StatusReadError(f"{what}: HTTP {exc.status} {exc.reason}")


def read_resource(api_client: kubernetes.client.ApiClient, info: KindInfo, namespace: str,
                  name: str) -> dict[str, Any]:
    custom = kubernetes.client.CustomObjectsApi(api_client)
    what = f"{info.singular} {namespace}/{name}"
    try:
        found: Any = custom.get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                         info.plural, name)
    except ApiException as exc:
        if exc.status == 404 and _names_an_object(exc):
            raise StatusReadError(f"{what} not found") from None
        raise _explain(exc, what) from None
    return dict(found)


def list_resources(api_client: kubernetes.client.ApiClient, namespace: str | None
                   ) -> list[tuple[KindInfo, dict[str, Any]]]:
    """Every resource of the three kinds in ``namespace`` (None: all namespaces)."""
    custom = kubernetes.client.CustomObjectsApi(api_client)
    rows: list[tuple[KindInfo, dict[str, Any]]] = []
    for info in ALL_KINDS:
        try:
            found: Any = (
                custom.list_namespaced_custom_object(GROUP, VERSION, namespace, info.plural)
                if namespace else
                custom.list_cluster_custom_object(GROUP, VERSION, info.plural))
        except ApiException as exc:
            raise _explain(exc, f"listing {info.plural}") from None
        rows.extend((info, dict(item)) for item in found.get("items", []))
    return rows


def read_events(api_client: kubernetes.client.ApiClient, info: KindInfo, namespace: str,
                name: str) -> list[EventLine]:
    """The resource's events; none (not an error) when they may not be read."""
    core = kubernetes.client.CoreV1Api(api_client)
    selector = f"involvedObject.kind={info.kind},involvedObject.name={name}"
    try:
        found = core.list_namespaced_event(namespace, field_selector=selector)
    except ApiException:
        return []
    return [EventLine(type=event.type or "", reason=event.reason or "",
                      message=event.message or "", time=_event_time(event),
                      count=event.count or 1)
            for event in found.items]


def _event_time(event: Any) -> str | None:
    moment = event.last_timestamp or event.event_time or (
        event.metadata.creation_timestamp if event.metadata else None)
    return moment.isoformat() if moment is not None else None


def connection_for(api_client: kubernetes.client.ApiClient, body: Mapping[str, Any],
                   default: ConnectionSettings) -> ConnectionSettings:
    """The resource's own Qdrant (its spec.connection Secret), else ``default``."""
    reference = ((body.get("spec") or {}).get("connection") or {}).get("secretRef") or {}
    if not reference.get("name"):
        return default
    namespace = (body.get("metadata") or {}).get("namespace", "")
    return asyncio.run(KubeApi(api_client).connection_from_secret(namespace,
                                                                  reference["name"]))
