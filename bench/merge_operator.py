"""MasterMerge as users run it: a real ``album-operator run`` process on a fresh local control
plane, the seeded sources adopted by AlbumCollections, a MasterMerge applied, and every phase
timed from a watch on the object (so the pause between steps, the status writes and the phase
changes all count). The copy rate is the points copied over the time from the first status
in ``Copying`` to the first one past it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from album_operator.adapters.crdinstall import install_crds
from album_operator.adapters.kube import load_api_client
from album_operator.models.common import GROUP, VERSION
from album_operator_dev.localcluster import cluster
from album_operator_dev.localcluster.cluster import free_port
from bench import server as bench_server
from bench.collections import _cpu_seconds, _rss_kb

CLUSTER = "bench-merge"
NAMESPACE = "bench-merge"
ALIAS = "bench_master"
TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class OperatorRun:
    points_per_s: float
    fields: dict[str, object]


class PhaseWatch:
    """When the MasterMerge's build first showed each phase, and its copy progress."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.status: dict[str, Any] = {}
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> PhaseWatch:
        self._thread.start()
        return self

    def _watch(self) -> None:
        api = kubernetes.client.CustomObjectsApi(load_api_client())
        watcher = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        for event in watcher.stream(  # type: ignore[no-untyped-call]
                api.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, "mastermerges",
                timeout_seconds=int(TIMEOUT_S)):
            self.status = event["object"].get("status") or {}
            phase = self.status.get("phase")
            if phase and phase not in self.seen:
                self.seen[phase] = time.perf_counter()
            if phase in ("Succeeded", "Failed"):
                self._ended.set()
                return

    def wait(self, started: float) -> str:
        while not self._ended.wait(5.0):
            build = self.status.get("currentBuild") or {}
            print(f"  {time.perf_counter() - started:6.1f}s: {self.status.get('phase')} "
                  f"{build.get('copiedPoints', 0):,}/{build.get('pointsToCopy', 0):,} points",
                  flush=True)
            if not self._thread.is_alive() or time.perf_counter() - started > TIMEOUT_S:
                raise RuntimeError(f"the build did not end: {self.status.get('phase')}")
        return str(self.status.get("phase"))


def _album_collection(source: str, size: int, shards: int | None) -> dict[str, Any]:
    """The AlbumCollection that adopts a seeded source: its spec must match the collection
    (a cluster's sources have several shards), or the operator refuses to adopt it."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AlbumCollection",
            "metadata": {"name": source.replace("_", "-")},
            "spec": {"year": int(source[-4:]), "collectionName": source,
                     "vectors": {"size": size, "distance": "Cosine"},
                     "shardNumber": shards or 1, "deletionPolicy": "Retain"}}


def _master_merge(sources: list[str], batch_size: int, parallelism: int) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MasterMerge",
            "metadata": {"name": "bench-master"},
            "spec": {"alias": ALIAS, "sources": sources, "deletionPolicy": "Retain",
                     "copy": {"batchSize": batch_size, "parallelism": parallelism}}}


def _apply(kubectl: list[str], *manifests: dict[str, Any]) -> None:
    subprocess.run([*kubectl, "apply", "-f", "-"], check=True, capture_output=True, text=True,
                   input="---\n".join(yaml.safe_dump(m) for m in manifests))


def measure(server: bench_server.Server, sources: list[str], points: int, size: int,
            batch_size: int, parallelism: int) -> OperatorRun:
    """Builds a master of ``sources`` with the operator; returns its phase times, copy rate
    and the operator's memory. The master is dropped afterwards; the sources stay."""
    work = Path(tempfile.mkdtemp(prefix="bench-merge-operator-"))
    cluster.down(CLUSTER, quiet=True)
    state = cluster.up(CLUSTER)
    os.environ["KUBECONFIG"] = state.kubeconfig
    kubectl = [state.kubectl, f"--kubeconfig={state.kubeconfig}", f"--namespace={NAMESPACE}"]
    env = {**os.environ, "KUBECONFIG": state.kubeconfig, "QDRANT_URL": server.url,
           **({"QDRANT_API_KEY": server.api_key} if server.api_key else {}),
           **({"QDRANT_GRPC_PORT": str(server.grpc_port)} if server.grpc_port else {})}
    try:
        install_crds(load_api_client())
        subprocess.run([*kubectl, "create", "namespace", NAMESPACE], capture_output=True,
                       check=False)
        operator = subprocess.Popen(
            [sys.executable, "-m", "album_operator.cli", "run", "-n", NAMESPACE,
             "--health-port", str(free_port()), "--metrics-port", str(free_port())],
            stdout=subprocess.DEVNULL, stderr=(work / "operator.log").open("w"), env=env)
        try:
            run = _build(kubectl, operator, sources, points, size, batch_size, parallelism,
                         server.shard_number)
            return OperatorRun(run.points_per_s, run.fields | {
                "operator_log": str(work / "operator.log")})
        finally:
            operator.terminate()
            operator.wait(timeout=60)
    finally:
        cluster.down(CLUSTER)
        _drop_masters(server)


def _build(kubectl: list[str], operator: subprocess.Popen[bytes], sources: list[str],
           points: int, size: int, batch_size: int, parallelism: int, shards: int | None
           ) -> OperatorRun:
    _apply(kubectl, *(_album_collection(s, size, shards) for s in sources))
    subprocess.run([*kubectl, "wait", "--for=condition=Ready", "albumcollections", "--all",
                    "--timeout=300s"], check=True, capture_output=True)
    watch = PhaseWatch().start()
    time.sleep(1)  # the watch is open before the MasterMerge exists
    started = time.perf_counter()
    _apply(kubectl, _master_merge(sources, batch_size, parallelism))
    ended = watch.wait(started)
    if ended != "Succeeded":
        raise RuntimeError(f"the build ended {ended}: {json.dumps(watch.status)[:2000]}")
    seen = {phase: at - started for phase, at in watch.seen.items()}
    after_copy = min(at for phase, at in seen.items() if phase not in ("Planning", "Copying"))
    copy_s = after_copy - seen["Copying"]
    rate = points / copy_s
    return OperatorRun(rate, {
        "operator_points": points,
        "operator_copy_seconds": round(copy_s, 2),
        "operator_points_per_s": round(rate),
        "operator_seconds_to_succeeded": round(seen["Succeeded"], 2),
        "operator_catch_up_seconds": round(seen["Verifying"] - seen["CatchingUp"], 2)
        if "CatchingUp" in seen and "Verifying" in seen else None,
        "operator_phase_started_at_s": {k: round(v, 2) for k, v in seen.items()},
        "operator_peak_rss_mb": round(_rss_kb(operator.pid, "VmHWM") / 1024, 1),
        "operator_cpu_seconds": round(_cpu_seconds(operator.pid), 1)})


def _drop_masters(server: bench_server.Server) -> None:
    client = server.client()
    try:
        for collection in client.get_collections().collections:
            if collection.name.startswith(f"{ALIAS}_v"):
                client.delete_collection(collection.name)
    finally:
        client.close()
