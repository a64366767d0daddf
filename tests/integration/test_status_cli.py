"""``album-operator status`` and ``kubectl albumops status`` against the real API server, the
real operator and Qdrant; and the one-line errors of ``run`` for the common set-up mistakes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from album_operator.adapters.qdrant.connection import QdrantPool
from album_operator.runner import OperatorThread
from tests.helpers import Kubectl, condition
from tests.integration.test_master_merge import merge, wait_phase, year_collections

pytestmark = pytest.mark.cluster
BIN = Path(sys.executable).parent
SOURCES = 9
PER_SOURCE = 40


def command(kubeconfig: str, *args: str, extra_env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PATH": f"{BIN}{os.pathsep}"
           f"{os.environ.get('PATH', '')}", **(extra_env or {})}
    for variable in ("QDRANT_URL", "QDRANT_API_KEY", "ALBUMOPS_QDRANT_SECRET"):
        if variable not in (extra_env or {}):
            env.pop(variable, None)
    return subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def qdrant_env(pool: QdrantPool) -> dict[str, str]:
    settings = pool.default
    if settings.is_embedded:
        return {}
    return {"QDRANT_URL": str(settings.url), "QDRANT_API_KEY": settings.api_key or ""}


def section(lines: list[str], title: str) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i]), len(lines))
    return lines[start:end]


@pytest.fixture
def built_master(kubectl: Kubectl, namespace: str, qdrant: Callable[..., Any],
                 operator: OperatorThread) -> dict[str, Any]:
    year_collections(kubectl, namespace, qdrant)
    kubectl.apply(merge("master", "status_master_" + namespace.replace("-", "_")), namespace)
    return wait_phase(kubectl, namespace, "Succeeded")


def test_status_and_the_kubectl_plugin_tell_the_story_of_the_real_objects(
        kubectl: Kubectl, namespace: str, built_master: dict[str, Any],
        qdrant_pool: QdrantPool) -> None:
    result = command(kubectl.kubeconfig, str(BIN / "album-operator"), "status", "-n", namespace,
                     "mastermerge/master", extra_env=qdrant_env(qdrant_pool))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    status = built_master["status"]
    assert lines[0] == f"MasterMerge {namespace}/master"
    ready = condition(built_master, "Ready")
    assert ready is not None
    rows = {line.split()[0]: line.split() for line in section(lines, "Conditions")[2:]}
    assert rows["Ready"][1:3] == [ready["status"], ready["reason"]]
    alias = built_master["spec"]["alias"]
    assert any(line.startswith(f"Alias {alias} -> {status['aliasTarget']}") for line in lines)
    real_reasons = {event["reason"] for event in kubectl.events("master", namespace)}
    shown_reasons = {line.split()[2] for line in section(lines, "Events")[2:]}
    assert shown_reasons
    assert shown_reasons <= real_reasons
    qdrant_lines = section(lines, "Qdrant")
    if qdrant_pool.default.is_embedded:
        assert qdrant_lines[0] == "Qdrant (the embedded engine)"
    else:
        assert qdrant_lines[0] == f"Qdrant ({qdrant_pool.default.url})"
        assert f"  alias {alias} -> {status['aliasTarget']}" in qdrant_lines
        target = next(line.split() for line in qdrant_lines
                      if line.split()[0] == status["aliasTarget"])
        assert target[1:3] == ["yes", str(SOURCES * PER_SOURCE)]
        assert str(qdrant_pool.default.api_key) not in result.stdout

    table = command(kubectl.kubeconfig, kubectl.binary, "albumops", "status", "-n", namespace)
    assert table.returncode == 0, table.stderr
    listed = [line.split() for line in table.stdout.splitlines()]
    assert listed[0] == ["KIND", "NAME", "READY", "REASON", "AGE", "NOW"]
    kinds = [row[0] for row in listed[1:]]
    assert kinds.count("AlbumCollection") == SOURCES
    assert kinds.count("MasterMerge") == 1
    assert all(row[2] == "True" for row in listed[1:]), table.stdout


def test_status_of_what_is_not_there_is_one_line(kubectl: Kubectl, namespace: str) -> None:
    missing = command(kubectl.kubeconfig, str(BIN / "album-operator"), "status", "-n",
                      namespace, "ac/nothing")
    assert (missing.returncode, missing.stderr.splitlines()) == (
        1, [f"album-operator: albumcollection {namespace}/nothing not found"])
    unknown = command(kubectl.kubeconfig, str(BIN / "album-operator"), "status", "pods/x")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("album-operator: unknown kind 'pods'")


def test_run_with_an_unreadable_qdrant_secret_is_one_line_with_the_fix(
        kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    result = command(kubectl.kubeconfig, str(BIN / "album-operator"), "run",
                     "--health-port", "0", "--qdrant-secret", f"{namespace}/absent")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"album-operator: Secret {namespace}/absent not found; "
                               "the Secret must be in the named namespace with key url")


@pytest.fixture
def cluster_without_crds() -> Iterator[str]:
    from album_operator_dev.localcluster import cluster

    if cluster.use_existing_cluster():
        pytest.skip("needs a control plane of its own: the shared cluster has the CRDs")
    name = f"nocrds-{uuid.uuid4().hex[:6]}"
    state = cluster.up(name)
    try:
        yield state.kubeconfig
    finally:
        cluster.down(name, quiet=True)


def test_without_the_crds_run_and_status_say_how_to_install_them(
        cluster_without_crds: str, tmp_path: Path) -> None:
    run = command(cluster_without_crds, str(BIN / "album-operator"), "run", "--health-port",
                  "0", "--embedded-path", str(tmp_path / "qdrant"))
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines() == [
        "album-operator: the API server has no CRD albumcollections.albumops.io, "
        "mastermerges.albumops.io, edgesnapshotpolicies.albumops.io: install them with "
        "'album-operator crds install' (or 'kubectl apply -f crds/', or the Helm chart)"]
    status = command(cluster_without_crds, str(BIN / "album-operator"), "status")
    assert status.returncode == 1
    assert status.stderr.splitlines() == [
        "album-operator: listing albumcollections: the albumops.io CRDs are not installed; "
        "install them with: album-operator crds install"]
    assert not (tmp_path / "qdrant").exists(), "the check comes before anything is opened"
