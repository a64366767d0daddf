"""Prometheus metrics, served on ``/metrics`` when ``--metrics-port`` is given."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

RECONCILES = Counter(
    "albumops_reconciles_total", "Reconciles by kind and outcome.", ["kind", "outcome"])
RECONCILE_SECONDS = Histogram(
    "albumops_reconcile_duration_seconds", "Time spent in one reconcile.", ["kind"])
QDRANT_WRITES = Counter(
    "albumops_qdrant_writes_total", "Write calls made to Qdrant, by action.", ["action"])
STATUS_PATCHES = Counter(
    "albumops_status_patches_total", "Status patches written, by kind.", ["kind"])
DRIFT_REPAIRS = Counter(
    "albumops_drift_repairs_total", "Collections repaired after drift, by kind.", ["kind"])


def serve(port: int) -> None:
    start_http_server(port)
