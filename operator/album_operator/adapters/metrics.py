"""Prometheus metrics, served on ``/metrics`` when ``--metrics-port`` is given.

Metrics about one resource carry its ``namespace`` and ``name`` (and maybe more labels, such as
``result``); they are :class:`ResourceCounter` and :class:`ResourceGauge`, which remember every
label tuple a series was created with, so that ``forget_resource`` can remove all of a deleted
resource's series (an alert on "time since last swap" must not fire for a merge that is gone).

``albumops_build_info`` (always 1) names what is running: the operator's version and source
revision, and the versions of Python, kopf and qdrant-client; ``serve`` sets it.
"""

from __future__ import annotations

import os
import platform
import threading
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Self
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.metrics import MetricWrapperBase

from album_operator import installed_version
from album_operator.core.timeutil import parse_rfc3339

# set by the image from its REVISION build argument (Dockerfile)
REVISION_ENV = "ALBUMOPS_REVISION"

_SERIES_LOCK = threading.Lock()
# per-resource metric -> the label tuples of its series
_SERIES: dict[MetricWrapperBase, set[tuple[str, ...]]] = {}


def _remember(metric: MetricWrapperBase, values: tuple[object, ...],
              named: Mapping[str, object]) -> None:
    if named:
        raise TypeError(f"{metric!r}: give label values by position")
    with _SERIES_LOCK:
        _SERIES.setdefault(metric, set()).add(tuple(str(value) for value in values))


class ResourceCounter(Counter):
    """A Counter labelled by resource (``namespace``, ``name``, maybe more) whose series
    ``forget_resource`` can find."""

    def labels(self, *labelvalues: object, **labelkwargs: object) -> Self:
        child = super().labels(*labelvalues, **labelkwargs)
        _remember(self, labelvalues, labelkwargs)
        return child


class ResourceGauge(Gauge):
    """A Gauge labelled by resource (``namespace``, ``name``, maybe more) whose series
    ``forget_resource`` can find."""

    def labels(self, *labelvalues: object, **labelkwargs: object) -> Self:
        child = super().labels(*labelvalues, **labelkwargs)
        _remember(self, labelvalues, labelkwargs)
        return child

RECONCILES = Counter(
    "albumops_reconciles_total", "Reconciles by kind and outcome.", ["kind", "outcome"])
RECONCILE_SECONDS = Histogram(
    "albumops_reconcile_duration_seconds", "Time spent in one reconcile.", ["kind"])
QDRANT_WRITES = Counter(
    "albumops_qdrant_writes_total", "Write calls made to Qdrant, by action.", ["action"])
QDRANT_COLLECTION_WRITES = Counter(
    "albumops_qdrant_collection_writes_total",
    "Writes to one collection's existence, settings or payload indexes, by collection and "
    "action.", ["collection", "action"])
STATUS_PATCHES = Counter(
    "albumops_status_patches_total", "Status patches written, by kind.", ["kind"])
DRIFT_REPAIRS = Counter(
    "albumops_drift_repairs_total", "Collections repaired after drift, by kind.", ["kind"])

MERGE_POINTS_COPIED = ResourceCounter(
    "albumops_merge_points_copied_total", "Points copied into masters.", ["namespace", "name"])
MERGE_VERIFICATIONS = ResourceCounter(
    "albumops_merge_verifications_total", "Master verifications by result.",
    ["namespace", "name", "result"])
MERGE_LAST_SWAP = ResourceGauge(
    "albumops_merge_last_swap_timestamp_seconds",
    "Unix time of the last successful alias swap (time since = now - this).",
    ["namespace", "name"])
MERGE_BUILD_PHASE = ResourceGauge(
    "albumops_merge_build_phase",
    "1 for the phase of the current (or last) build, 0 for every other phase; all 0 before "
    "the first build.", ["namespace", "name", "phase"])
MERGE_FAILED_BUILDS = ResourceGauge(
    "albumops_merge_failed_builds_in_a_row", "Builds that failed since the last success.",
    ["namespace", "name"])
MERGE_NEXT_SCHEDULED = ResourceGauge(
    "albumops_merge_next_scheduled_timestamp_seconds",
    "Unix time of the next scheduled rebuild; no series without a schedule or while suspended.",
    ["namespace", "name"])
EDGE_SNAPSHOT_CREATED = ResourceGauge(
    "albumops_edge_snapshot_created_timestamp_seconds",
    "Unix time the newest snapshot was published (its age = now - this).",
    ["namespace", "name"])
EDGE_PUBLISHED_BYTES = ResourceGauge(
    "albumops_edge_published_bytes", "Bytes of the snapshots a policy keeps.",
    ["namespace", "name"])
EDGE_NEXT_RUN = ResourceGauge(
    "albumops_edge_next_run_timestamp_seconds",
    "Unix time of the next scheduled snapshot run; no series while suspended.",
    ["namespace", "name"])
EDGE_PARTIALS = ResourceCounter(
    "albumops_edge_partial_requests_total", "Partial snapshots served.", ["namespace", "name"])
EDGE_BYTES_SAVED = ResourceCounter(
    "albumops_edge_partial_bytes_saved_total",
    "Bytes partial snapshots saved against full ones.", ["namespace", "name"])
EDGE_UPLOAD_BATCHES = ResourceCounter(
    "albumops_edge_upload_batches_total",
    "Device upload requests: accepted (upserted, maybe with some points rejected) or refused "
    "whole (bad body, too large, no upload target, Qdrant unavailable).",
    ["namespace", "name", "result"])
EDGE_UPLOADS = ResourceCounter(
    "albumops_edge_upload_points_total", "Points devices uploaded, by result.",
    ["namespace", "name", "result"])

EDGE_HTTP_REQUESTS = Counter(
    "albumops_edge_http_requests_total",
    "Requests the snapshot endpoint answered, by route (list, full, partial, points, none "
    "when no route matched) and status.", ["route", "status"])
EDGE_HTTP_SECONDS = Histogram(
    "albumops_edge_http_request_duration_seconds",
    "Time from a request's head to the end of its answer (a download included), by route.",
    ["route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
EDGE_HTTP_BYTES_SENT = Counter(
    "albumops_edge_http_sent_bytes_total", "Bytes the snapshot endpoint sent, by route.",
    ["route"])
EDGE_HTTP_BYTES_RECEIVED = Counter(
    "albumops_edge_http_received_bytes_total",
    "Request body bytes the snapshot endpoint read, by route.", ["route"])
EDGE_HTTP_IN_FLIGHT = Gauge(
    "albumops_edge_http_requests_in_flight", "Requests the snapshot endpoint is handling.")
EDGE_HTTP_CONNECTIONS = Gauge(
    "albumops_edge_http_connections", "Open connections to the snapshot endpoint.")

BUILD_INFO = Info(
    "albumops_build",
    "What is running: the operator's version and revision, and its Python, kopf and "
    "qdrant-client versions; always 1.")

RESOURCE_READY = ResourceGauge(
    "albumops_resource_ready",
    "1 while the resource's Ready condition is True, else 0; by kind, namespace and name.",
    ["kind", "namespace", "name"])

# the metrics about one resource of each kind, labelled (namespace, name, ...)
RESOURCE_METRICS: Mapping[str, tuple[ResourceCounter | ResourceGauge, ...]] = {
    "AlbumCollection": (),
    "MasterMerge": (MERGE_POINTS_COPIED, MERGE_VERIFICATIONS, MERGE_LAST_SWAP,
                    MERGE_BUILD_PHASE, MERGE_FAILED_BUILDS, MERGE_NEXT_SCHEDULED),
    "EdgeSnapshotPolicy": (EDGE_SNAPSHOT_CREATED, EDGE_PUBLISHED_BYTES, EDGE_NEXT_RUN,
                           EDGE_PARTIALS, EDGE_BYTES_SAVED, EDGE_UPLOAD_BATCHES, EDGE_UPLOADS),
}


def set_state(gauge: ResourceGauge, labels: tuple[str, ...], states: Iterable[str],
              current: str | None) -> None:
    """A state set: the series of ``current`` is 1 and every other state's is 0."""
    for state in states:
        gauge.labels(*labels, state).set(1 if state == current else 0)


def set_timestamp(gauge: ResourceGauge, labels: tuple[str, ...], moment: object) -> None:
    """Sets the series to the Unix time of ``moment``, an RFC 3339 status field, or removes
    the series when the field is unset."""
    if isinstance(moment, str) and moment:
        gauge.labels(*labels).set(parse_rfc3339(moment).timestamp())
    else:
        gauge.remove(*labels)


def set_resource_ready(kind: str, namespace: str, name: str, ready: bool) -> None:
    """Sets ``albumops_resource_ready`` of one resource (Ready True: 1, anything else: 0)."""
    RESOURCE_READY.labels(kind, namespace, name).set(1 if ready else 0)


def forget_resource(kind: str, namespace: str, name: str) -> None:
    """Removes every series of one resource, of every metric about its kind (and its
    ``albumops_resource_ready``), including series with more labels (``result``). Call it
    once the resource is deleted; a series of another kind's resource of the same name is
    left alone."""
    _forget(RESOURCE_READY, (kind, namespace, name))
    for metric in RESOURCE_METRICS.get(kind, ()):
        _forget(metric, (namespace, name))


def forget_gauges() -> None:
    """Removes every series of every per-resource gauge (``albumops_resource_ready``
    included), of every resource. For a replica that stops working: its gauges would
    otherwise freeze at their last values (an old publication time, Ready 0) and fire
    alerts for resources another replica now handles. Counters stay: they only grow."""
    gauges = {RESOURCE_READY, *(metric for metrics in RESOURCE_METRICS.values()
                                for metric in metrics if isinstance(metric, ResourceGauge))}
    for gauge in gauges:
        _forget(gauge, ())


def _forget(metric: ResourceCounter | ResourceGauge, prefix: tuple[str, ...]) -> None:
    with _SERIES_LOCK:
        series = _SERIES.get(metric, set())
        gone = {labels for labels in series if labels[:len(prefix)] == prefix}
        series -= gone
    for labels in gone:
        metric.remove(*labels)


def build_labels(environ: Mapping[str, str]) -> dict[str, str]:
    """The labels of ``albumops_build_info``; the revision from ``ALBUMOPS_REVISION``."""
    return {
        "version": installed_version(),
        "revision": environ.get(REVISION_ENV) or "unknown",
        "python_version": platform.python_version(),
        "kopf_version": _distribution_version("kopf"),
        "qdrant_client_version": _distribution_version("qdrant-client"),
    }


def _distribution_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def publish_build_info(environ: Mapping[str, str]) -> None:
    BUILD_INFO.info(build_labels(environ))


def serve(port: int) -> WSGIServer:
    """Serves every metric on ``port`` from a daemon thread; the server, to shut it down."""
    publish_build_info(os.environ)
    server, _ = start_http_server(port)
    return server
