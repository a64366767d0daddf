"""AlbumCollections applied at once (``--count``, 200 by default): time to Ready, memory,
and writes while idle.

Baseline (same run): the same collections created directly with qdrant-client on the
same engine, with no Kubernetes or operator in between. The operator runs as a real
``album-operator run`` process so its memory and ``/metrics`` are its own.

Two halves, each on a fresh local control plane of its own (cluster ``bench-collections``):
the embedded engine, then a Qdrant server when one is available (``bench/server.py``), where
the operator gets ``QDRANT_URL`` and every setting of the spec is applied for real, so the
idle period also shows whether the planner finds drift the server keeps reporting. On the
server the baseline creates the payload index too, as the operator does there (the embedded
engine ignores payload indexes, so neither creates it there).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import yaml
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from album_operator.adapters.crdinstall import install_crds
from album_operator.adapters.kube import load_api_client
from album_operator.models.common import GROUP, VERSION
from album_operator_dev.localcluster import cluster
from album_operator_dev.localcluster.cluster import free_port
from bench import server as bench_server

NAMESPACE = "bench-collections"
CLUSTER = "bench-collections"  # never the tests' (pytest) nor the developer's (default)
QDRANT_ENV = ("QDRANT_URL", "QDRANT_API_KEY", "ALBUMOPS_QDRANT_SECRET")


@dataclass(frozen=True)
class Settings:
    count: int
    idle_seconds: float
    resync_seconds: float
    server_storage: str = "memory"



def _manifest(i: int) -> dict[str, object]:
    return {"apiVersion": "albumops.io/v1alpha1", "kind": "AlbumCollection",
            "metadata": {"name": f"bench-{i:04d}"},
            "spec": {"year": 2000 + i % 100, "collectionName": f"bench_{i:04d}",
                     "vectors": {"size": 512, "distance": "Cosine"},
                     "quantization": {"scalar": {"quantile": 0.99}},
                     "payloadIndexes": [{"field": "taken_at", "type": "datetime"}]}}


def _create_all(client: QdrantClient, count: int, payload_index: bool) -> float:
    started = time.perf_counter()
    for i in range(count):
        client.create_collection(f"bench_{i:04d}", vectors_config=qm.VectorParams(
            size=512, distance=qm.Distance.COSINE), quantization_config=qm.ScalarQuantization(
            scalar=qm.ScalarQuantizationConfig(type=qm.ScalarType.INT8, quantile=0.99)))
        if payload_index:
            client.create_payload_index(f"bench_{i:04d}", "taken_at",
                                        qm.PayloadSchemaType.DATETIME)
    return time.perf_counter() - started


def _baseline(count: int, path: str) -> float:
    client = QdrantClient(path=path)
    elapsed = _create_all(client, count, payload_index=False)
    client.close()
    return elapsed


def _drop_all(client: QdrantClient, count: int) -> None:
    for i in range(count):
        client.delete_collection(f"bench_{i:04d}")


def _server_baseline(count: int, server: bench_server.Server) -> float:
    """The same collections made directly on the server, then removed again so that the
    operator creates its own."""
    client = server.client()
    try:
        _drop_all(client, count)  # leftovers on an external server
        elapsed = _create_all(client, count, payload_index=True)
        _drop_all(client, count)
    finally:
        client.close()
    return elapsed


def _metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    totals: dict[str, float] = {}
    for line in text.decode().splitlines():
        if line.startswith("#") or not line.startswith("albumops_"):
            continue
        name, value = line.rsplit(" ", 1)
        family = name.split("{", 1)[0]
        if family.endswith("_total"):
            totals[family] = totals.get(family, 0.0) + float(value)
    return totals


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _versions(kubectl: list[str]) -> dict[str, str]:
    out = subprocess.run([*kubectl, "get", "albumcollections", "-o", "json"],
                         capture_output=True, text=True, check=True).stdout
    return {item["metadata"]["name"]: item["metadata"]["resourceVersion"]
            for item in json.loads(out)["items"]}


def run(settings: Settings, engines: tuple[str, ...] = bench_server.ENGINES
        ) -> list[dict[str, object]]:
    results = []
    if "embedded" in engines:
        print(f"== collections on the embedded engine: {settings.count} AlbumCollections, "
              f"idle {settings.idle_seconds:.0f}s, resync every {settings.resync_seconds:.0f}s",
              flush=True)
        work = Path(tempfile.mkdtemp(prefix="bench-collections-"))
        baseline_s = _baseline(settings.count, str(work / "baseline"))
        env = {k: v for k, v in os.environ.items() if k not in QDRANT_ENV}
        results.append(_with_operator(settings, "embedded engine (on disk)", baseline_s,
                                      ["--embedded-path", str(work / "operator")], env, work))
    if "server" not in engines:
        return results
    with bench_server.qdrant("collections", settings.server_storage) as server:
        if server is None:
            bench_server.skipped("collections")
            return results
        print(f"== collections on {server.describe(settings.server_storage)}: "
              f"{settings.count} AlbumCollections, "
              f"idle {settings.idle_seconds:.0f}s, resync every {settings.resync_seconds:.0f}s",
              flush=True)
        work = Path(tempfile.mkdtemp(prefix="bench-collections-server-"))
        baseline_s = _server_baseline(settings.count, server)
        env = {k: v for k, v in os.environ.items() if k not in QDRANT_ENV}
        env |= {"QDRANT_URL": server.url, **({"QDRANT_API_KEY": server.api_key}
                                             if server.api_key else {})}
        client = server.client()
        try:
            result = _with_operator(settings, "Qdrant server", baseline_s, [], env, work)
            made = {c.name for c in client.get_collections().collections}
            missing = [f"bench_{i:04d}" for i in range(settings.count)
                       if f"bench_{i:04d}" not in made]
            assert not missing, f"Ready, but not on the server: {missing[:5]}"
        finally:
            _drop_all(client, settings.count)
            client.close()
        results.append(result | server.memory_mb() | {
            "server_storage": bench_server.storage_root(settings.server_storage)[1]})
    return results


def _with_operator(settings: Settings, label: str, baseline_s: float, engine_args: list[str],
                   env: dict[str, str], work: Path) -> dict[str, object]:
    """A fresh control plane, the CRDs and an operator process on the given engine."""
    print(f"baseline: qdrant-client created {settings.count} collections in {baseline_s:.2f}s",
          flush=True)
    cluster.down(CLUSTER, quiet=True)  # one an interrupted run left still holds its objects
    state = cluster.up(CLUSTER)
    env = {**env, "KUBECONFIG": state.kubeconfig}
    os.environ["KUBECONFIG"] = state.kubeconfig
    try:
        install_crds(load_api_client())
        kubectl = [state.kubectl, f"--kubeconfig={state.kubeconfig}",
                   f"--namespace={NAMESPACE}"]
        subprocess.run([*kubectl, "create", "namespace", NAMESPACE], capture_output=True,
                       check=False)
        metrics_port = free_port()
        operator = subprocess.Popen(
            [sys.executable, "-m", "album_operator.cli", "run", "-n", NAMESPACE, *engine_args,
             "--resync-seconds", str(settings.resync_seconds), "--metrics-port",
             str(metrics_port), "--health-port", str(free_port())],
            stdout=subprocess.DEVNULL, stderr=(work / "operator.log").open("w"), env=env)
        try:
            result = _measure(settings, kubectl, operator, metrics_port, work, baseline_s)
        finally:
            operator.terminate()
            operator.wait(timeout=60)
    finally:
        cluster.down(CLUSTER)
    result = {"engine": label, **result}
    print(f"{label}: {settings.count} AlbumCollections Ready in {result['ready_seconds']}s, "
          f"direct baseline {baseline_s:.2f}s ({result['ratio_vs_baseline']}x); operator "
          f"peak RSS {result['operator_peak_rss_mb']} MB; idle {settings.idle_seconds:.0f}s: "
          f"{result['idle_reconciles']:.0f} reconciles, {result['idle_qdrant_writes']:.0f} "
          f"Qdrant writes, {result['idle_status_patches']:.0f} status patches, "
          f"{result['idle_objects_changed']} objects changed", flush=True)
    return result


class ReadyWatch:
    """When each AlbumCollection first turned Ready, from a watch opened before the apply
    (kubectl wait checks one object after another, which at a thousand takes a minute
    itself, and polling the list costs the machine the CPU the operator needs)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.ready_at: dict[str, float] = {}
        self.write_lag: list[float] = []
        """Per object: seconds from the reconcile deciding Ready to the watch seeing it."""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> ReadyWatch:
        self._thread.start()
        return self

    def _watch(self) -> None:
        api = kubernetes.client.CustomObjectsApi(load_api_client())
        watcher = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        stream = watcher.stream(  # type: ignore[no-untyped-call]
            api.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, "albumcollections",
            timeout_seconds=900)
        for event in stream:
            item = event["object"]
            ready = [c for c in item.get("status", {}).get("conditions", [])
                     if c["type"] == "Ready" and c["status"] == "True"]
            name = item["metadata"]["name"]
            if ready and name not in self.ready_at:
                self.ready_at[name] = time.perf_counter()
                decided = dt.datetime.fromisoformat(ready[0]["lastTransitionTime"])
                self.write_lag.append(time.time() - decided.timestamp())
            if len(self.ready_at) == self.count:
                self._done.set()
                return

    def wait(self, started: float, timeout_s: float = 900.0) -> float:
        """Seconds from ``started`` until every object was Ready, showing progress."""
        while not self._done.wait(5.0):
            elapsed = time.perf_counter() - started
            print(f"  {elapsed:5.1f}s: {len(self.ready_at)}/{self.count} Ready", flush=True)
            if not self._thread.is_alive():
                raise RuntimeError(f"the watch ended with {len(self.ready_at)} of "
                                   f"{self.count} Ready")
            if elapsed > timeout_s:
                raise TimeoutError(f"not every AlbumCollection was Ready in {timeout_s:.0f}s")
        return max(self.ready_at.values()) - started

    def ready_after(self, started: float, fraction: float) -> float:
        """Seconds from ``started`` until ``fraction`` of the objects were Ready."""
        return _quantile([t - started for t in self.ready_at.values()], fraction)


def _quantile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _measure(settings: Settings, kubectl: list[str], operator: subprocess.Popen[bytes],
             metrics_port: int, work: Path, baseline_s: float) -> dict[str, object]:
    time.sleep(2)
    manifests = "---\n".join(yaml.safe_dump(_manifest(i)) for i in range(settings.count))
    watch = ReadyWatch(settings.count).start()
    time.sleep(1)  # the watch is open before the first object exists
    started = time.perf_counter()
    # server-side apply, as Flux and Argo CD (ServerSideApply) do: one request per object
    subprocess.run([*kubectl, "apply", "--server-side", "--field-manager=bench", "-f", "-"],
                   input=manifests, text=True, capture_output=True, check=True)
    applied_s = time.perf_counter() - started  # kubectl applies one object at a time
    ready_s = watch.wait(started)
    cpu_s = _cpu_seconds(operator.pid)
    print(f"Ready: half after {watch.ready_after(started, 0.5):.1f}s, 90% after "
          f"{watch.ready_after(started, 0.9):.1f}s, all after {ready_s:.1f}s; from a "
          f"reconcile deciding Ready to the watch seeing it: median "
          f"{_quantile(watch.write_lag, 0.5):.1f}s, max {max(watch.write_lag):.1f}s",
          flush=True)
    print(f"operator: {settings.count} AlbumCollections Ready in {ready_s:.2f}s "
          f"({ready_s / baseline_s:.1f}x the direct baseline; kubectl apply itself took "
          f"{applied_s:.2f}s)", flush=True)

    time.sleep(settings.resync_seconds + 1)  # let the first resync of each object finish
    before, versions = _metrics(metrics_port), _versions(kubectl)
    idle_started = time.monotonic()
    while (elapsed := time.monotonic() - idle_started) < settings.idle_seconds:
        time.sleep(min(30.0, settings.idle_seconds - elapsed))
        now = _metrics(metrics_port)
        print(f"idle {time.monotonic() - idle_started:4.0f}s: reconciles "
              f"{now.get('albumops_reconciles_total', 0) - before.get('albumops_reconciles_total', 0):.0f}, "  # noqa: E501
              f"Qdrant writes {now.get('albumops_qdrant_writes_total', 0) - before.get('albumops_qdrant_writes_total', 0):.0f}, "  # noqa: E501
              f"status patches {now.get('albumops_status_patches_total', 0) - before.get('albumops_status_patches_total', 0):.0f}",  # noqa: E501
              flush=True)
    after, versions_after = _metrics(metrics_port), _versions(kubectl)
    changed = sum(1 for name, v in versions_after.items() if versions.get(name) != v)
    result = {
        "count": settings.count,
        "baseline_seconds": round(baseline_s, 2),
        "ready_seconds": round(ready_s, 2),
        "kubectl_apply_seconds": round(applied_s, 2),
        "ratio_vs_baseline": round(ready_s / baseline_s, 2),
        "operator_cpu_seconds_until_ready": round(cpu_s, 1),
        "operator_peak_rss_mb": round(_rss_kb(operator.pid, "VmHWM") / 1024, 1),
        "idle_seconds": settings.idle_seconds,
        "idle_reconciles": after.get("albumops_reconciles_total", 0)
        - before.get("albumops_reconciles_total", 0),
        "idle_qdrant_writes": after.get("albumops_qdrant_writes_total", 0)
        - before.get("albumops_qdrant_writes_total", 0),
        "idle_status_patches": after.get("albumops_status_patches_total", 0)
        - before.get("albumops_status_patches_total", 0),
        "idle_objects_changed": changed,
        "operator_log": str(work / "operator.log"),
    }
    print(json.dumps(result, indent=2), flush=True)
    return result
