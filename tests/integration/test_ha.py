"""Two replicas on a real API server: with kopf peering and distinct priorities one works and
the other stands by; when the working one stops, or is killed, the standby takes over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from album_operator_dev.localcluster.cluster import free_port
from tests.helpers import Kubectl, condition, wait_for

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
PEERING = "album-operator"
# Short, so that a killed replica is presumed dead within the test's patience.
LIFETIME_SECONDS = 15
TOKEN = "ha-device-token-0123456789abcdef"


class Replica:
    def __init__(self, kubectl: Kubectl, namespace: str, priority: int, workdir: Path) -> None:
        self.log = workdir / f"replica-{priority}.log"
        self.health_port, self.snapshot_port, self.metrics_port = (
            free_port(), free_port(), free_port())
        env = {**os.environ, "KUBECONFIG": kubectl.kubeconfig}
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "album_operator.cli", "run", "-n", namespace,
                 "--peering", PEERING, "--priority", str(priority),
                 "--peering-lifetime", str(LIFETIME_SECONDS), "--resync-seconds", "2",
                 "--health-port", str(self.health_port),
                 "--snapshot-port", str(self.snapshot_port),
                 "--metrics-port", str(self.metrics_port),
                 "--embedded-path", str(workdir / f"qdrant-{priority}")],
                stdout=log, stderr=subprocess.STDOUT, env=env)

    def readyz(self) -> tuple[int, dict[str, Any]] | None:
        try:
            answer = requests.get(f"http://127.0.0.1:{self.health_port}/readyz", timeout=5)
        except requests.ConnectionError:
            return None  # not listening yet
        json_body = answer.headers.get("Content-Type", "").startswith("application/json")
        return answer.status_code, answer.json() if json_body else {"reason": answer.text}

    def ready(self) -> bool:
        answer = self.readyz()
        return answer is not None and answer[0] == 200

    def not_ready_because(self, fragment: str) -> bool:
        answer = self.readyz()
        return answer is not None and answer[0] == 503 and fragment in answer[1]["reason"]

    def list_snapshots(self, namespace: str, policy: str) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{self.snapshot_port}/v1/namespaces/"
                            f"{namespace}/policies/{policy}/snapshots",
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text

    def messages(self) -> list[str]:
        found = []
        for line in self.log.read_text().splitlines():
            try:
                found.append(str(json.loads(line).get("message", "")))
            except ValueError:
                found.append(line)
        return found

    def said(self, fragment: str) -> bool:
        return self.count(fragment) > 0

    def count(self, fragment: str) -> int:
        return sum(fragment in message for message in self.messages())

    def stop(self) -> None:
        self.end(signal.SIGTERM)

    def end(self, how: signal.Signals) -> None:
        if self.process.poll() is None:
            self.process.send_signal(how)
            self.process.wait(timeout=60)


def peers(kubectl: Kubectl, namespace: str) -> list[int]:
    """Priorities of the replicas announced in the peering object."""
    peering = kubectl.get("kopfpeering", PEERING, namespace)
    return sorted(int(peer.get("priority", 0))
                  for peer in (peering.get("status") or {}).values()
                  if isinstance(peer, dict))


@pytest.fixture
def peering_namespace(kubectl: Kubectl) -> Iterator[str]:
    namespace = f"ha-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", namespace)
    kubectl.run("apply", "-f", str(REPO / "crds" / "kopf.dev-peerings.yaml"))
    kubectl.run("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev",
                "--timeout=30s")
    kubectl.apply({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                   "metadata": {"name": PEERING}}, namespace)
    yield namespace
    kubectl.run("delete", "namespace", namespace, "--wait=false")


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_one_replica_works_and_the_standby_takes_over(
        kubectl: Kubectl, peering_namespace: str, tmp_path: Path, how: signal.Signals) -> None:
    namespace = peering_namespace
    high = Replica(kubectl, namespace, 200, tmp_path)
    low: Replica | None = None
    try:
        # The working replica first announces itself in the peering object; a replica that
        # starts later sees it at once (two started together may miss each other until
        # their next keep-alive).
        wait_for(lambda: peers(kubectl, namespace) == [200], 60,
                 what="the high-priority replica in the peering object")
        low = Replica(kubectl, namespace, 100, tmp_path)
        wait_for(lambda: peers(kubectl, namespace) == [100, 200], 60,
                 what="both replicas in the peering object")
        kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
                       "metadata": {"name": "album-2024"},
                       "spec": {"year": 2024, "vectors": {"size": 8}}}, namespace)
        kubectl.run("wait", "--for=condition=Ready", "albumcollection/album-2024",
                    "--timeout=60s", namespace=namespace)
        assert high.said(f"AlbumCollection {namespace}/album-2024: Created")
        assert not [m for m in low.messages() if "album-2024" in m]

        resumed_before = low.count("Resuming operations")
        high.end(how)
        # A clean stop withdraws from the peering at once; a killed replica says nothing and
        # is presumed dead once its lifetime since the last keep-alive has passed.
        wait_for(lambda: low.count("Resuming operations") > resumed_before,
                 LIFETIME_SECONDS + 60, what=f"the standby to resume after {how.name}")
        wait_for(lambda: peers(kubectl, namespace) == [100], LIFETIME_SECONDS + 30,
                 what="only the standby left in the peering object")
        kubectl.run("patch", "albumcollection/album-2024", "--type=merge", "-p",
                    json.dumps({"spec": {"hnsw": {"m": 24}}}), namespace=namespace)
        generation = kubectl.get("albumcollection", "album-2024", namespace)["metadata"][
            "generation"]

        def reconciled_by_the_standby() -> bool:
            obj = kubectl.get("albumcollection", "album-2024", namespace)
            ready = condition(obj, "Ready")
            return bool(ready and ready["status"] == "True"
                        and obj["status"].get("observedGeneration") == generation)
        wait_for(reconciled_by_the_standby, 60, what="the new generation reconciled")
        assert [m for m in low.messages() if "album-2024" in m]
    finally:
        high.stop()
        if low is not None:
            low.stop()


def published_bytes_series(replica: Replica, policy: str) -> bool:
    return any(line.startswith("albumops_edge_published_bytes{") and f'name="{policy}"' in line
               for line in replica.metrics().splitlines())


def apply_published_policy(kubectl: Kubectl, namespace: str) -> None:
    """An AlbumCollection and a Build policy over it, with a device token, Ready."""
    kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
                   "metadata": {"name": "album-2024"},
                   "spec": {"year": 2024, "vectors": {"size": 8}}}, namespace)
    kubectl.run("wait", "--for=condition=Ready", "albumcollection/album-2024",
                "--timeout=60s", namespace=namespace)
    kubectl.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kiosk-token"},
                   "stringData": {"token": TOKEN}}, namespace)
    kubectl.apply({"apiVersion": "albumops.io/v1alpha1", "kind": "EdgeSnapshotPolicy",
                   "metadata": {"name": "kiosks"},
                   "spec": {"collection": "album_2024", "source": "Build",
                            "schedule": "0 0 1 1 *",
                            "devices": [{"name": "kiosk", "tokenSecretRef": "kiosk-token"}]}},
                  namespace)
    kubectl.run("wait", "--for=condition=Ready", "edgesnapshotpolicy/kiosks",
                "--timeout=90s", namespace=namespace)


def test_only_the_working_replica_is_ready_and_serves_and_a_paused_one_stops_until_it_resumes(
        kubectl: Kubectl, peering_namespace: str, tmp_path: Path) -> None:
    namespace = peering_namespace
    high = Replica(kubectl, namespace, 200, tmp_path)
    started: list[Replica] = [high]
    try:
        wait_for(lambda: peers(kubectl, namespace) == [200], 60,
                 what="the high-priority replica in the peering object")
        low = Replica(kubectl, namespace, 100, tmp_path)
        started.append(low)
        wait_for(lambda: peers(kubectl, namespace) == [100, 200], 60,
                 what="both replicas in the peering object")
        apply_published_policy(kubectl, namespace)

        # the standby is not Ready and tells devices to come back, never 401
        wait_for(high.ready, 30, what="the working replica Ready")
        wait_for(lambda: low.not_ready_because("higher priority"), 30,
                 what="the standby not Ready")
        refused = low.list_snapshots(namespace, "kiosks")
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["Retry-After"]) > 0
        served = high.list_snapshots(namespace, "kiosks")
        assert served.status_code == 200, served.text
        assert len(served.json()["snapshots"]) == 1
        wait_for(lambda: published_bytes_series(high, "kiosks"), 30,
                 what="the working replica's gauge of the policy")

        # a replica of higher priority pauses it: it stops serving and drops its gauges
        top = Replica(kubectl, namespace, 300, tmp_path)
        started.append(top)
        wait_for(lambda: high.not_ready_because("higher priority"), 60,
                 what="the paused replica not Ready")
        paused = high.list_snapshots(namespace, "kiosks")
        assert paused.status_code == 503, paused.text
        assert not published_bytes_series(high, "kiosks")

        # the top one leaves cleanly: the paused one works again, registered afresh
        top.stop()
        wait_for(high.ready, 60, what="the resumed replica Ready")
        resumed = high.list_snapshots(namespace, "kiosks")
        assert resumed.status_code == 200, resumed.text
        assert low.list_snapshots(namespace, "kiosks").status_code == 503
    finally:
        for replica in started:
            replica.stop()
