"""A second ``album-operator run`` on the embedded path another operator holds: the embedded
engine (qdrant-client local mode) allows one process per data path, so the second one exits
with one line naming the path, instead of retrying every handler on the lock error; the first
keeps running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from album_operator_dev.localcluster.cluster import free_port
from tests.helpers import Kubectl, wait_for

pytestmark = pytest.mark.cluster
COMMAND = Path(sys.executable).parent / "album-operator"


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_a_second_operator_on_the_same_embedded_path_exits_with_one_line(
        kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": kubectl.kubeconfig}
    embedded = tmp_path / "qdrant"

    first_port = free_port()
    first_log = tmp_path / "first.log"
    with first_log.open("w") as out:
        first = subprocess.Popen(
            [str(COMMAND), "run", "-n", namespace, "--health-port", str(first_port),
             "--embedded-path", str(embedded)],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: _healthy(first_port) or first.poll() is not None, timeout=120,
                 what="the first operator's /healthz")
        assert first.poll() is None, first_log.read_text()

        second = subprocess.run(
            [str(COMMAND), "run", "-n", namespace, "--health-port", str(free_port()),
             "--embedded-path", str(embedded)],
            capture_output=True, text=True, env=env, timeout=120, check=False)
        assert second.returncode == 1, second.stderr
        assert second.stderr.splitlines() == [
            f"album-operator: the embedded Qdrant data at {embedded} is in use by another "
            "process (another operator?); stop it, or give this one its own --embedded-path"
        ], second.stderr

        assert first.poll() is None, "the first operator keeps running"
        assert _healthy(first_port)
    finally:
        first.terminate()
        first.wait(timeout=60)
