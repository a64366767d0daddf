"""The README's first command, ``album-operator demo``, run as a new user runs it, twice: each
run brings up its own control plane and shows collections, the master behind its alias, a
search and an edge device restoring a snapshot published by that run, not a leftover."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from album_operator_dev.demo import CLUSTER
from album_operator_dev.localcluster import cluster
from album_operator_dev.localcluster.qdrant_server import ENABLE_HINT, find_binary

pytestmark = pytest.mark.cluster
YEARS = range(2017, 2026)
POLICY_ROW = re.compile(r"edgesnapshotpolicy\.albumops\.io/album-2025-edge\s+album_2025\s+True"
                        r"\s+(?P<snapshots>\d+)\s+(?P<last_run>\d+[smhd]\S*)"
                        r"\s+(?P<next_run>\S+Z)\s")
RESTORED = re.compile(r"/shards/0/snapshot -> album-2025-edge-shard0-(?P<made>\d{8}T\d{6}Z)\.tar")


def run_demo(*args: str) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KUBECONFIG", "ALBUMOPS_USE_EXISTING_CLUSTER")}
    result = subprocess.run([sys.executable, "-m", "album_operator.cli", "demo", *args],
                            capture_output=True, text=True, timeout=600, env=env, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def snapshot_time(output: str) -> dt.datetime:
    restored = RESTORED.search(output)
    assert restored, output[-3000:]
    return dt.datetime.strptime(restored["made"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)


def assert_shows_everything(output: str) -> None:
    for year in YEARS:
        assert re.search(rf"^album_{year}\s+200\s+album-demo/album-{year}$", output, re.M), year
    assert re.search(r"^album_master_v1\s+1800\s+album-demo/album-master$", output, re.M)
    assert "aliases: album_master -> album_master_v1" in output
    first_hit = output.split("tagged 'city':\n", 1)[1].splitlines()[0]
    assert first_hit.strip().startswith("id=202100005 "), first_hit
    row = POLICY_ROW.search(output)
    assert row, "the EdgeSnapshotPolicy row lacks its last run"
    assert row["snapshots"] == "1"
    assert "the device holds 200 points" in output
    assert "control plane stopped" in output


def skip_if_a_demo_cluster_is_kept() -> None:
    if cluster.read_state(CLUSTER) is not None:
        pytest.skip("a demo control plane is running (album-operator demo --keep); "
                    f"stop it with: album-operator local-cluster down --name {CLUSTER}")


def test_the_demo_runs_twice_and_each_run_publishes_its_own_snapshot() -> None:
    skip_if_a_demo_cluster_is_kept()
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    first = run_demo()
    assert_shows_everything(first)
    first_made = snapshot_time(first)
    assert first_made >= started

    second = run_demo()
    assert_shows_everything(second)
    assert snapshot_time(second) > first_made, "the second run served the first run's snapshot"


@pytest.mark.qdrant_server
def test_the_demo_tells_the_same_story_on_a_qdrant_server_and_shows_its_settings() -> None:
    skip_if_a_demo_cluster_is_kept()
    binary = find_binary()
    if binary is None:
        pytest.skip(f"needs a Qdrant server binary: {ENABLE_HINT}")
    output = run_demo("--qdrant-bin", str(binary))
    assert_shows_everything(output)
    assert f"operator (Qdrant server started from {binary})" in output
    applied = output.split("settings the server applied to album_2017", 1)[1]
    for shown in ("512-d Cosine, on_disk=True", "m=16 ef_construct=128",
                  "scalar int8 quantile=0.99 always_ram=True", "indexing_threshold=20000",
                  "album_id (keyword)", "taken_at (datetime)", "tags (keyword)"):
        assert shown in applied, shown


def test_the_demo_refuses_a_server_binary_that_is_not_one(tmp_path: Path) -> None:
    missing = tmp_path / "no-qdrant-here"
    result = subprocess.run([sys.executable, "-m", "album_operator.cli", "demo",
                             "--qdrant-bin", str(missing)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert f"--qdrant-bin {missing} is not an executable file" in result.stderr
