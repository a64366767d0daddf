"""Per-resource metrics: the readiness gauge, and every series of a deleted resource removed;
the build information on the metrics endpoint."""

from __future__ import annotations

import platform
import tomllib
import uuid
from importlib import metadata
from pathlib import Path

import pytest
import requests
from prometheus_client import REGISTRY

from album_operator.adapters import metrics
from album_operator.adapters.metrics import (
    EDGE_BYTES_SAVED,
    EDGE_NEXT_RUN,
    EDGE_PARTIALS,
    EDGE_PUBLISHED_BYTES,
    EDGE_SNAPSHOT_CREATED,
    EDGE_UPLOAD_BATCHES,
    EDGE_UPLOADS,
    MERGE_BUILD_PHASE,
    MERGE_FAILED_BUILDS,
    MERGE_LAST_SWAP,
    MERGE_NEXT_SCHEDULED,
    MERGE_POINTS_COPIED,
    MERGE_VERIFICATIONS,
    RESOURCE_METRICS,
    forget_resource,
    publish_build_info,
    serve,
    set_resource_ready,
    set_state,
    set_timestamp,
)
from album_operator_dev.localcluster.cluster import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ns() -> str:
    """A namespace of this test's own: the registry is the process's, shared with others."""
    return f"metrics-{uuid.uuid4().hex[:8]}"


def value(metric: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


def series_of(namespace: str) -> list[tuple[str, dict[str, str]]]:
    """Every sample in the registry labelled with this namespace."""
    return [(sample.name, sample.labels) for family in REGISTRY.collect()
            for sample in family.samples if sample.labels.get("namespace") == namespace]


def fill_master_merge(namespace: str, name: str) -> None:
    MERGE_POINTS_COPIED.labels(namespace, name).inc(10)
    MERGE_VERIFICATIONS.labels(namespace, name, "passed").inc()
    MERGE_VERIFICATIONS.labels(namespace, name, "failed").inc()
    MERGE_LAST_SWAP.labels(namespace, name).set(1_700_000_000)
    set_state(MERGE_BUILD_PHASE, (namespace, name), ("Copying", "Failed"), "Copying")
    MERGE_FAILED_BUILDS.labels(namespace, name).set(1)
    MERGE_NEXT_SCHEDULED.labels(namespace, name).set(1_700_000_600)


def fill_edge_policy(namespace: str, name: str) -> None:
    EDGE_SNAPSHOT_CREATED.labels(namespace, name).set(1_700_000_000)
    EDGE_PUBLISHED_BYTES.labels(namespace, name).set(4096)
    EDGE_NEXT_RUN.labels(namespace, name).set(1_700_000_600)
    EDGE_PARTIALS.labels(namespace, name).inc()
    EDGE_BYTES_SAVED.labels(namespace, name).inc(100)
    EDGE_UPLOAD_BATCHES.labels(namespace, name, "accepted").inc()
    EDGE_UPLOAD_BATCHES.labels(namespace, name, "refused").inc()
    EDGE_UPLOADS.labels(namespace, name, "accepted").inc(3)
    EDGE_UPLOADS.labels(namespace, name, "rejected").inc(1)


def test_the_ready_gauge_is_one_or_zero_per_resource(ns: str) -> None:
    set_resource_ready("AlbumCollection", ns, "a", True)
    set_resource_ready("AlbumCollection", ns, "b", False)
    set_resource_ready("MasterMerge", ns, "a", False)
    ready = "albumops_resource_ready"
    assert value(ready, kind="AlbumCollection", namespace=ns, name="a") == 1
    assert value(ready, kind="AlbumCollection", namespace=ns, name="b") == 0
    assert value(ready, kind="MasterMerge", namespace=ns, name="a") == 0
    set_resource_ready("AlbumCollection", ns, "b", True)
    assert value(ready, kind="AlbumCollection", namespace=ns, name="b") == 1


def test_forgetting_a_master_merge_removes_all_its_series_and_only_its(ns: str) -> None:
    fill_master_merge(ns, "gone")
    fill_master_merge(ns, "kept")
    fill_edge_policy(ns, "gone")  # another kind's resource of the same name
    set_resource_ready("MasterMerge", ns, "gone", True)
    set_resource_ready("MasterMerge", ns, "kept", True)
    set_resource_ready("EdgeSnapshotPolicy", ns, "gone", True)

    forget_resource("MasterMerge", ns, "gone")

    left = series_of(ns)
    assert not [(n, labels) for n, labels in left if labels["name"] == "gone"
                and (n.startswith("albumops_merge_") or labels.get("kind") == "MasterMerge")]
    assert value("albumops_merge_last_swap_timestamp_seconds", namespace=ns,
                 name="kept") == 1_700_000_000
    assert value("albumops_merge_verifications_total", namespace=ns, name="kept",
                 result="failed") == 1
    assert value("albumops_resource_ready", kind="MasterMerge", namespace=ns,
                 name="kept") == 1
    assert value("albumops_edge_published_bytes", namespace=ns, name="gone") == 4096
    assert value("albumops_resource_ready", kind="EdgeSnapshotPolicy", namespace=ns,
                 name="gone") == 1


def test_forgetting_an_edge_policy_removes_series_with_a_result_label_too(ns: str) -> None:
    fill_edge_policy(ns, "policy")
    set_resource_ready("EdgeSnapshotPolicy", ns, "policy", False)
    assert len(series_of(ns)) > 8

    forget_resource("EdgeSnapshotPolicy", ns, "policy")

    assert series_of(ns) == []


def test_forgetting_an_album_collection_removes_its_ready_series(ns: str) -> None:
    set_resource_ready("AlbumCollection", ns, "photos", True)
    forget_resource("AlbumCollection", ns, "photos")
    assert series_of(ns) == []


def test_forgetting_twice_or_a_resource_never_seen_is_harmless(ns: str) -> None:
    fill_master_merge(ns, "m")
    forget_resource("MasterMerge", ns, "m")
    forget_resource("MasterMerge", ns, "m")
    forget_resource("EdgeSnapshotPolicy", ns, "never")
    forget_resource("SomeOtherKind", ns, "never")
    assert series_of(ns) == []


def test_a_series_written_again_after_forgetting_can_be_forgotten_again(ns: str) -> None:
    MERGE_VERIFICATIONS.labels(ns, "m", "passed").inc()
    forget_resource("MasterMerge", ns, "m")
    MERGE_VERIFICATIONS.labels(ns, "m", "passed").inc()
    assert value("albumops_merge_verifications_total", namespace=ns, name="m",
                 result="passed") == 1  # counted from zero again
    forget_resource("MasterMerge", ns, "m")
    assert series_of(ns) == []


def test_a_name_that_is_a_prefix_of_another_is_not_confused(ns: str) -> None:
    fill_master_merge(ns, "m")
    fill_master_merge(ns, "m2")
    forget_resource("MasterMerge", ns, "m")
    assert {labels["name"] for _, labels in series_of(ns)} == {"m2"}


def test_every_metric_labelled_by_namespace_and_name_is_forgotten_with_its_kind() -> None:
    """A new per-resource metric must be listed under its kind, or it would outlive the
    resource."""
    listed = {metric for kind_metrics in RESOURCE_METRICS.values() for metric in kind_metrics}
    labelled = {metric for metric in vars(metrics).values()
                if isinstance(metric, metrics.ResourceCounter | metrics.ResourceGauge)
                and metric is not metrics.RESOURCE_READY}
    assert labelled == listed
    forgotten = {family.name for metric in {*listed, metrics.RESOURCE_READY}
                 for family in metric.describe()}
    fill_master_merge("metrics-all", "m")
    fill_edge_policy("metrics-all", "p")
    set_resource_ready("AlbumCollection", "metrics-all", "c", True)
    for family in REGISTRY.collect():
        if any({"namespace", "name"} <= set(sample.labels) for sample in family.samples):
            assert family.name in forgotten, family.name


def test_label_values_by_name_are_refused(ns: str) -> None:
    with pytest.raises(TypeError, match="by position"):
        MERGE_LAST_SWAP.labels(namespace=ns, name="m")


def test_the_build_phase_is_a_state_set_with_one_phase_at_one(ns: str) -> None:
    phases = ("Pending", "Copying", "Succeeded", "Failed")
    set_state(MERGE_BUILD_PHASE, (ns, "m"), phases, "Copying")
    set_state(MERGE_BUILD_PHASE, (ns, "m"), phases, "Failed")
    assert {phase: value("albumops_merge_build_phase", namespace=ns, name="m", phase=phase)
            for phase in phases} == {"Pending": 0, "Copying": 0, "Succeeded": 0, "Failed": 1}
    set_state(MERGE_BUILD_PHASE, (ns, "m"), phases, None)  # no build yet
    assert {value("albumops_merge_build_phase", namespace=ns, name="m", phase=phase)
            for phase in phases} == {0}


def test_a_timestamp_gauge_follows_its_status_field_and_goes_when_it_is_unset(ns: str) -> None:
    set_timestamp(MERGE_NEXT_SCHEDULED, (ns, "m"), "2023-11-14T22:13:20Z")
    assert value("albumops_merge_next_scheduled_timestamp_seconds", namespace=ns,
                 name="m") == 1_700_000_000
    set_timestamp(MERGE_NEXT_SCHEDULED, (ns, "m"), None)  # suspended, or no schedule
    assert series_of(ns) == []
    set_timestamp(MERGE_NEXT_SCHEDULED, (ns, "m"), None)  # already gone: harmless
    set_timestamp(EDGE_NEXT_RUN, (ns, "p"), "2023-11-14T22:13:20+00:00")
    forget_resource("EdgeSnapshotPolicy", ns, "p")
    assert series_of(ns) == []


def test_the_renamed_and_removed_metrics_are_gone() -> None:
    names = {family.name for family in REGISTRY.collect()}
    assert "albumops_edge_published_bytes" in names
    assert not {"albumops_edge_bytes_published", "albumops_merge_points_per_second"} & names


def merge_status(phase: str, copied: int, **fields: object) -> dict[str, object]:
    return {"currentBuild": {"name": "m_v2", "phase": phase, "copiedPoints": copied}, **fields}


def test_a_merge_step_records_its_phase_failures_copy_and_times_from_the_whole_status(
        ns: str) -> None:
    from album_operator.handlers.master_merge import _record_metrics
    from album_operator.reconcilers.resource import ResourceRef

    ref = ResourceRef("MasterMerge", ns, "m", "uid", 1, "", {})
    copying = merge_status("Copying", 0, failedBuildsInARow=2,
                           lastSwapTime="2023-11-14T22:13:20Z",
                           nextScheduledTime="2023-11-15T00:00:00Z")
    _record_metrics(ref, copying, copying)  # as after an operator restart: nothing changed
    assert value("albumops_merge_points_copied_total", namespace=ns, name="m") == 0
    assert value("albumops_merge_build_phase", namespace=ns, name="m", phase="Copying") == 1
    assert value("albumops_merge_failed_builds_in_a_row", namespace=ns, name="m") == 2
    assert value("albumops_merge_last_swap_timestamp_seconds", namespace=ns,
                 name="m") == 1_700_000_000
    assert value("albumops_merge_next_scheduled_timestamp_seconds", namespace=ns,
                 name="m") == 1_700_006_400

    done = merge_status("Succeeded", 40, lastSwapTime="2023-11-14T22:13:30Z")
    _record_metrics(ref, copying, done)
    assert value("albumops_merge_points_copied_total", namespace=ns, name="m") == 40
    assert value("albumops_merge_build_phase", namespace=ns, name="m", phase="Copying") == 0
    assert value("albumops_merge_build_phase", namespace=ns, name="m", phase="Succeeded") == 1
    assert value("albumops_merge_failed_builds_in_a_row", namespace=ns, name="m") == 0
    assert value("albumops_merge_last_swap_timestamp_seconds", namespace=ns,
                 name="m") == 1_700_000_010
    assert value("albumops_merge_next_scheduled_timestamp_seconds", namespace=ns,
                 name="m") is None


def build_info(revision: str) -> float | None:
    """The value of the one ``albumops_build_info`` series this process should show."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return value("albumops_build_info", version=project["version"], revision=revision,
                 python_version=platform.python_version(),
                 kopf_version=metadata.version("kopf"),
                 qdrant_client_version=metadata.version("qdrant-client"))


def test_the_build_info_names_the_version_the_image_revision_and_the_libraries() -> None:
    publish_build_info({"ALBUMOPS_REVISION": "0123abc"})
    assert build_info("0123abc") == 1
    samples = [sample for family in REGISTRY.collect() if family.name == "albumops_build"
               for sample in family.samples]
    assert len(samples) == 1, "one series: a new revision replaces the old one"


@pytest.mark.parametrize("environ", [{}, {"ALBUMOPS_REVISION": ""}])
def test_the_build_info_revision_is_unknown_outside_an_image(environ: dict[str, str]) -> None:
    publish_build_info(environ)
    assert build_info("unknown") == 1


def test_the_metrics_endpoint_serves_the_build_info_with_the_revision_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALBUMOPS_REVISION", "fedcba9")
    port = free_port()
    server = serve(port)
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        server.shutdown()
        server.server_close()
    lines = [line for line in text.splitlines() if line.startswith("albumops_build_info{")]
    assert len(lines) == 1, text
    assert 'revision="fedcba9"' in lines[0]
    assert f'kopf_version="{metadata.version("kopf")}"' in lines[0]
    assert lines[0].endswith(" 1.0")
