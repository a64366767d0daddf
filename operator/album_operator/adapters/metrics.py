"""Prometheus metrics, served on ``/metrics`` when ``--metrics-port`` is given."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

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

MERGE_POINTS_COPIED = Counter(
    "albumops_merge_points_copied_total", "Points copied into masters.", ["namespace", "name"])
MERGE_POINTS_PER_SECOND = Gauge(
    "albumops_merge_points_per_second", "Copy rate of the current build.",
    ["namespace", "name"])
MERGE_VERIFICATIONS = Counter(
    "albumops_merge_verifications_total", "Master verifications by result.",
    ["namespace", "name", "result"])
MERGE_LAST_SWAP = Gauge(
    "albumops_merge_last_swap_timestamp_seconds",
    "Unix time of the last successful alias swap (time since = now - this).",
    ["namespace", "name"])
EDGE_SNAPSHOT_CREATED = Gauge(
    "albumops_edge_snapshot_created_timestamp_seconds",
    "Unix time the newest snapshot was published (its age = now - this).",
    ["namespace", "name"])
EDGE_BYTES_PUBLISHED = Gauge(
    "albumops_edge_bytes_published", "Bytes of the snapshots a policy keeps.",
    ["namespace", "name"])
EDGE_PARTIALS = Counter(
    "albumops_edge_partial_requests_total", "Partial snapshots served.", ["namespace", "name"])
EDGE_BYTES_SAVED = Counter(
    "albumops_edge_partial_bytes_saved_total",
    "Bytes partial snapshots saved against full ones.", ["namespace", "name"])
EDGE_UPLOAD_BATCHES = Counter(
    "albumops_edge_upload_batches_total",
    "Device upload requests: accepted (upserted, maybe with some points rejected) or refused "
    "whole (bad body, too large, no upload target, Qdrant unavailable).",
    ["namespace", "name", "result"])
EDGE_UPLOADS = Counter(
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


def serve(port: int) -> None:
    start_http_server(port)
