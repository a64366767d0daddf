"""An idle operator with 200 resources, some failing: writes, log lines, memory and CPU.

Issue #14's criterion: over a 5-minute idle period with 200 resources, some of them failing,
0 writes for the healthy ones, a backoff-bounded number for the failing ones, and fewer than
one log line per resource per minute at the default log level.

A fresh local control plane (cluster ``bench-idle``), the CRDs, and a real
``album-operator run`` process on the embedded engine with the defaults users run (log
level, ``--resync-seconds``). In one namespace, about 85% healthy resources: AlbumCollections,
a few MasterMerges over some of them, a couple of EdgeSnapshotPolicies with a device token
Secret and a schedule far in the future; about 15% failing the way they do in real clusters:
AlbumCollections whose ``connection.secretRef`` points at a closed loopback port,
MasterMerges of a collection that does not exist, EdgeSnapshotPolicies of a missing
collection. The collections and Secrets are applied first, the merges and policies once the
collections are Ready (as a sync wave would). When every healthy one is Ready=True and every
failing one Ready=False with a reason, a watch of the three kinds counts MODIFIED events per
object (status and metadata writes alike) over a short settle time and then the idle period,
while the operator's stderr lines, resident memory, CPU time and the Warning events of the
namespace are counted over the idle period alone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import kubernetes

from album_operator.adapters.crdinstall import install_crds
from album_operator.adapters.kube import load_api_client
from album_operator.core.retry import BASE_SECONDS, CAP_SECONDS
from album_operator_dev.localcluster import cluster
from album_operator_dev.localcluster.cluster import free_port

NAMESPACE = "bench-idle"
CLUSTER = "bench-idle"  # never the tests' (pytest) nor the developer's (default)
QDRANT_ENV = ("QDRANT_URL", "QDRANT_API_KEY", "ALBUMOPS_QDRANT_SECRET")
GROUP, VERSION = "albumops.io", "v1alpha1"
PLURALS = {"AlbumCollection": "albumcollections", "MasterMerge": "mastermerges",
           "EdgeSnapshotPolicy": "edgesnapshotpolicies"}
FAR_SCHEDULE = "0 0 1 1 *"  # once a year, on 1 January: no scheduled run during the bench
DEVICE_TOKEN = "bench-idle-device-token-0123456789"  # >= 16 characters, as the operator asks
# what every write changes and says nothing about what was written
IGNORED_PATHS = ("metadata.resourceVersion", "metadata.managedFields")

Key = tuple[str, str]  # (kind, name)


@dataclass(frozen=True)
class Settings:
    count: int
    idle_seconds: float
    settle_seconds: float = 15.0
    ready_timeout_seconds: float = 900.0


@dataclass(frozen=True)
class Resource:
    kind: str
    name: str
    healthy: bool
    body: dict[str, Any]

    @property
    def key(self) -> Key:
        return (self.kind, self.name)


# --- pure counting (tests/unit/test_bench_idle.py) -----------------------------------------

def changes(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted path, old, new) of the leaves that differ between two objects (list items as
    [i]), without the fields every write changes."""
    if prefix in IGNORED_PATHS:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[tuple[str, Any, Any]] = []
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{prefix}.{k}" if prefix else str(k)
            found += changes(old.get(k), new.get(k), sub)
        return found
    if isinstance(old, list) and isinstance(new, list):
        found = []
        for i in range(max(len(old), len(new))):
            found += changes(old[i] if i < len(old) else None,
                             new[i] if i < len(new) else None, f"{prefix}[{i}]")
        return found
    return [] if old == new else [(prefix or "<root>", old, new)]


def changed_paths(old: Any, new: Any) -> list[str]:
    return [path for path, _, _ in changes(old, new)]


def backoff_attempt_bound(window_seconds: float, base: float = BASE_SECONDS,
                          cap: float = CAP_SECONDS) -> int:
    """The most attempts a failing object can make in any window of this length under the
    operator's backoff (base doubling up to cap, jitter shortening a delay by at most a
    quarter), counting from a first failure inside the window: one write per attempt is the
    bound a failing object's writes must stay under."""
    attempts, elapsed, retry = 1, 0.0, 1
    while True:
        delay = min(cap, base * 2 ** min(retry - 1, 30)) * 0.75
        if elapsed + delay > window_seconds:
            return attempts
        elapsed += delay
        attempts += 1
        retry += 1


@dataclass
class WriteLog:
    """MODIFIED events per object, and which fields each changed."""

    last: dict[Key, dict[str, Any]] = field(default_factory=dict)
    writes: Counter[Key] = field(default_factory=Counter)
    paths: dict[Key, Counter[str]] = field(default_factory=dict)
    other: Counter[str] = field(default_factory=Counter)  # ADDED / DELETED events
    stamps: list[tuple[float, Key]] = field(default_factory=list)  # (seconds in, object)
    examples: dict[Key, list[list[str]]] = field(default_factory=dict)  # each write's changes

    def seed(self, key: Key, obj: dict[str, Any]) -> None:
        self.last[key] = obj

    def record(self, event_type: str, key: Key, obj: dict[str, Any], at: float = 0.0) -> None:
        if event_type != "MODIFIED":
            self.other[event_type] += 1
        else:
            self.writes[key] += 1
            self.stamps.append((at, key))
            changed = changes(self.last.get(key, {}), obj)
            self.paths.setdefault(key, Counter()).update(_generalise(p) for p, _, _ in changed)
            self.examples.setdefault(key, []).append(
                [f"{p}: {_short(a)} -> {_short(b)}" for p, a, b in changed])
        self.last[key] = obj

    def per_minute(self, keys: Iterable[Key], minutes: int) -> list[int]:
        """Writes to these objects in each minute of the period."""
        wanted, counts = set(keys), [0] * max(minutes, 1)
        for at, key in self.stamps:
            if key in wanted:
                counts[min(int(at // 60), len(counts) - 1)] += 1
        return counts


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 90 else text[:87] + "..."


def _generalise(path: str) -> str:
    """conditions[3].lastTransitionTime -> conditions[].lastTransitionTime"""
    return re.sub(r"\[\d+\]", "[]", path)


def summarize(writes: Mapping[Key, int], healthy: Iterable[Key], failing: Iterable[Key]
              ) -> dict[str, float]:
    healthy, failing = list(healthy), list(failing)
    failing_counts = [writes.get(k, 0) for k in failing]
    return {
        "healthy_writes": sum(writes.get(k, 0) for k in healthy),
        "healthy_objects_written": sum(1 for k in healthy if writes.get(k, 0)),
        "failing_writes": sum(failing_counts),
        "failing_max_per_resource": max(failing_counts, default=0),
        "failing_mean_per_resource": round(sum(failing_counts) / len(failing_counts), 2)
        if failing_counts else 0.0,
    }


def log_digest(lines: Iterable[str]) -> Counter[str]:
    """Log lines by level, logger, kind and message with names and numbers blanked."""
    digest: Counter[str] = Counter()
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            digest[f"(not JSON) {_blank(line.strip())[:120]}"] += 1
            continue
        if not isinstance(entry, dict):
            digest[f"(not an object) {_blank(line.strip())[:120]}"] += 1
            continue
        message = _blank(str(entry.get("message", "")))[:160]
        digest[f"{entry.get('level')} {entry.get('logger')} {entry.get('kind') or '-'}: "
               f"{message}"] += 1
    return digest


def _blank(text: str) -> str:
    return re.sub(r"\d+", "N", text)


# --- the resources --------------------------------------------------------------------------

def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE}


def _collection(name: str, year: int, secret: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"year": year, "collectionName": name.replace("-", "_"),
                            "vectors": {"size": 64, "distance": "Cosine"}}
    if secret:
        spec["connection"] = {"secretRef": {"name": secret}}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AlbumCollection",
            "metadata": _meta(name), "spec": spec}


def _merge(name: str, sources: list[str]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MasterMerge", "metadata": _meta(name),
            "spec": {"alias": f"{name.replace('-', '_')}_master", "sources": sources,
                     "verify": {"samplePoints": 16, "sampleQueries": 2}}}


def _policy(name: str, collection: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "EdgeSnapshotPolicy",
            "metadata": _meta(name),
            "spec": {"collection": collection, "source": "Build", "schedule": FAR_SCHEDULE,
                     "devices": [{"name": "kiosk", "tokenSecretRef": "bench-idle-device"}]}}


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(name), "type": "Opaque",
            "stringData": data}


def plan(count: int, unreachable_url: str) -> tuple[list[dict[str, Any]], list[Resource],
                                                    list[Resource]]:
    """Secrets, the first wave (AlbumCollections) and the second (merges, policies): about
    15% failing, each kind of failure at least once."""
    failing = max(3, count * 15 // 100)
    bad_merges, bad_policies = max(1, failing // 5), max(1, failing // 7)
    bad_collections = failing - bad_merges - bad_policies
    healthy = count - failing
    merges, policies = max(1, healthy // 50), max(1, min(healthy // 80, 3))
    collections = healthy - merges - policies
    secrets = [_secret("bench-idle-unreachable", {"url": unreachable_url}),
               _secret("bench-idle-device", {"token": DEVICE_TOKEN})]
    first: list[Resource] = []
    for i in range(collections):
        body = _collection(f"ok-{i:04d}", 1900 + i)
        first.append(Resource("AlbumCollection", f"ok-{i:04d}", True, body))
    for i in range(bad_collections):
        body = _collection(f"unreachable-{i:04d}", 1900 + i, secret="bench-idle-unreachable")
        first.append(Resource("AlbumCollection", f"unreachable-{i:04d}", False, body))
    ok_names = [str(r.body["spec"]["collectionName"]) for r in first if r.healthy]
    second: list[Resource] = []
    for i in range(merges):  # each over three healthy collections
        sources = [ok_names[(3 * i + j) % len(ok_names)] for j in range(3)]
        second.append(Resource("MasterMerge", f"merge-{i:02d}", True,
                               _merge(f"merge-{i:02d}", sources)))
    for i in range(bad_merges):
        sources = [ok_names[i % len(ok_names)], f"missing_{i:02d}"]
        second.append(Resource("MasterMerge", f"merge-missing-{i:02d}", False,
                               _merge(f"merge-missing-{i:02d}", sources)))
    for i in range(policies):
        second.append(Resource("EdgeSnapshotPolicy", f"edge-{i:02d}", True,
                               _policy(f"edge-{i:02d}", ok_names[-1 - i % len(ok_names)])))
    for i in range(bad_policies):
        second.append(Resource("EdgeSnapshotPolicy", f"edge-missing-{i:02d}", False,
                               _policy(f"edge-missing-{i:02d}", f"missing_{i:02d}")))
    return secrets, first, second


def ready_state(obj: Mapping[str, Any]) -> tuple[str, str]:
    """The Ready condition's status and reason ("", "" when there is none)."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status", "")), str(condition.get("reason") or "")
    return "", ""


def settled(resource: Resource, obj: Mapping[str, Any] | None) -> bool:
    if obj is None:
        return False
    status, reason = ready_state(obj)
    return status == "True" if resource.healthy else (status == "False" and bool(reason))


# --- the run --------------------------------------------------------------------------------

class Kube:
    def __init__(self) -> None:
        self.client = load_api_client()
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.core = kubernetes.client.CoreV1Api(self.client)

    def apply(self, bodies: Iterable[dict[str, Any]]) -> None:
        for body in bodies:
            if body["kind"] == "Secret":
                self.core.create_namespaced_secret(NAMESPACE, kubernetes.client.V1Secret(
                    metadata=kubernetes.client.V1ObjectMeta(name=body["metadata"]["name"]),
                    type=body["type"], string_data=body["stringData"]))
            else:
                self.custom.create_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, PLURALS[body["kind"]], body)

    def list(self, kind: str) -> tuple[dict[Key, dict[str, Any]], str]:
        listed = cast(dict[str, Any], self.custom.list_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURALS[kind]))
        objects = {(kind, o["metadata"]["name"]): o for o in listed["items"]}
        return objects, str(listed["metadata"]["resourceVersion"])

    def warnings(self) -> dict[str, tuple[int, str]]:
        """Warning events of the namespace: name -> (count, "kind/name: reason")."""
        events = self.core.list_namespaced_event(NAMESPACE, field_selector="type=Warning")
        return {str(e.metadata.name): (e.count or 1, f"{e.involved_object.kind}/"
                                  f"{e.involved_object.name}: {e.reason}: {e.message}")
                for e in events.items}


def wait_settled(kube: Kube, resources: list[Resource], timeout_s: float) -> float:
    started = time.monotonic()
    last_print = 0.0
    while True:
        objects: dict[Key, dict[str, Any]] = {}
        for kind in PLURALS:
            objects |= kube.list(kind)[0]
        waiting = [r for r in resources if not settled(r, objects.get(r.key))]
        elapsed = time.monotonic() - started
        if not waiting:
            return elapsed
        if elapsed - last_print >= 30:
            last_print = elapsed
            print(f"  {elapsed:4.0f}s: {len(resources) - len(waiting)}/{len(resources)} "
                  f"settled; waiting for e.g. {waiting[0].kind}/{waiting[0].name} "
                  f"{ready_state(objects.get(waiting[0].key) or {})}", flush=True)
        if elapsed > timeout_s:
            detail = "; ".join(f"{r.kind}/{r.name} (healthy={r.healthy}) Ready="
                               f"{ready_state(objects.get(r.key) or {})}" for r in waiting[:10])
            raise RuntimeError(f"{len(waiting)} resources not settled after "
                               f"{timeout_s:.0f}s: {detail}")
        time.sleep(3)


class Watcher:
    """Watches the three kinds from the given lists; events stamped with monotonic time."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.events: list[tuple[float, str, Key, dict[str, Any]]] = []
        self.seed: dict[Key, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for kind in PLURALS:
            objects, version = self.kube.list(kind)
            self.seed |= objects
            thread = threading.Thread(target=self._watch, args=(kind, version), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _watch(self, kind: str, version: str) -> None:
        while not self.stopping.is_set():
            watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in watch.stream(  # type: ignore[no-untyped-call]
                        self.kube.custom.list_namespaced_custom_object, GROUP, VERSION,
                        NAMESPACE, PLURALS[kind], resource_version=version,
                        timeout_seconds=20, allow_watch_bookmarks=False):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch error: {obj}")
                    version = obj["metadata"]["resourceVersion"]
                    with self.lock:
                        self.events.append((time.monotonic(), event["type"],
                                            (kind, obj["metadata"]["name"]), obj))
            except Exception as exc:  # a lost watch loses writes: reported, not hidden
                if not self.stopping.is_set():
                    self.errors.append(f"{kind}: {exc!r}")
                return

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def writes_between(self, start: float, end: float) -> WriteLog:
        log = WriteLog()
        for key, obj in self.seed.items():
            log.seed(key, obj)
        with self.lock:
            events = list(self.events)
        for stamp, event_type, key, obj in events:
            if stamp < start:
                log.seed(key, obj)  # the settle time's writes: the idle period diffs from here
            elif stamp < end:
                log.record(event_type, key, obj, at=stamp - start)
        return log


@dataclass
class ProcessSampler:
    """Resident memory of a process, sampled every second while it runs."""

    pid: int
    peak_kb: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.peak_kb = max(self.peak_kb, _status_kb(self.pid, "VmRSS"))
            self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


def _status_kb(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    """User + system time of the process and its reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def run(settings: Settings) -> dict[str, object]:
    print(f"== idle: {settings.count} resources (some failing) on the embedded engine, "
          f"idle {settings.idle_seconds:.0f}s, operator defaults (log level, resync)",
          flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    env = {k: v for k, v in os.environ.items() if k not in QDRANT_ENV}
    cluster.down(CLUSTER, quiet=True)  # one an interrupted run left still holds its objects
    state = cluster.up(CLUSTER)
    env["KUBECONFIG"] = os.environ["KUBECONFIG"] = state.kubeconfig
    try:
        install_crds(load_api_client())
        kube = Kube()
        kube.core.create_namespace(kubernetes.client.V1Namespace(
            metadata=kubernetes.client.V1ObjectMeta(name=NAMESPACE)))
        metrics_port = free_port()
        log_path = work / "operator.log"
        with log_path.open("w") as log_file:
            operator = subprocess.Popen(
                [sys.executable, "-m", "album_operator.cli", "run", "-n", NAMESPACE,
                 "--embedded-path", str(work / "qdrant"), "--metrics-port", str(metrics_port),
                 "--health-port", str(free_port())],
                stdout=subprocess.DEVNULL, stderr=log_file, env=env)
        try:
            result = _measure(settings, kube, operator, log_path)
        finally:
            operator.terminate()
            try:
                operator.wait(timeout=60)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait(timeout=30)
    finally:
        cluster.down(CLUSTER)
    result["operator_log"] = str(log_path)
    return result


def _measure(settings: Settings, kube: Kube, operator: subprocess.Popen[bytes],
             log_path: Path) -> dict[str, object]:
    secrets, first, second = plan(settings.count, f"http://127.0.0.1:{free_port()}")
    resources = first + second
    healthy = [r.key for r in resources if r.healthy]
    failing = [r.key for r in resources if not r.healthy]
    print(f"applying {len(resources)} resources: {len(healthy)} healthy, {len(failing)} "
          f"failing ({_by_kind(resources)})", flush=True)
    started = time.monotonic()
    kube.apply(secrets)
    kube.apply(r.body for r in first)
    wait_settled(kube, first, settings.ready_timeout_seconds)
    kube.apply(r.body for r in second)
    wait_settled(kube, resources, settings.ready_timeout_seconds)
    settled_s = time.monotonic() - started
    print(f"all {len(resources)} settled (healthy Ready=True, failing Ready=False with a "
          f"reason) in {settled_s:.1f}s; settling {settings.settle_seconds:.0f}s more",
          flush=True)

    watcher = Watcher(kube)
    watcher.start()
    time.sleep(settings.settle_seconds)
    warnings_before = kube.warnings()
    log_offset = log_path.stat().st_size
    cpu_before = _cpu_seconds(operator.pid)
    sampler = ProcessSampler(operator.pid)
    sampler.start()
    idle_start = time.monotonic()
    while (elapsed := time.monotonic() - idle_start) < settings.idle_seconds:
        time.sleep(min(60.0, settings.idle_seconds - elapsed))
        if operator.poll() is not None:
            raise RuntimeError(f"the operator exited with {operator.returncode}; see {log_path}")
        with watcher.lock:
            seen = sum(1 for stamp, *_ in watcher.events if stamp >= idle_start)
        print(f"  idle {time.monotonic() - idle_start:4.0f}s: {seen} watch events, "
              f"{log_path.stat().st_size - log_offset} log bytes", flush=True)
    idle_end = time.monotonic()
    cpu_s = _cpu_seconds(operator.pid) - cpu_before
    sampler.stop()
    with log_path.open("rb") as f:
        f.seek(log_offset)
        idle_log = f.read().decode(errors="replace").splitlines()
    warnings_after = kube.warnings()
    time.sleep(1)  # events stamped before idle_end but still in flight
    watcher.stop()
    if watcher.errors:
        raise RuntimeError(f"a watch failed, writes may be missing: {watcher.errors}")
    writes = watcher.writes_between(idle_start, idle_end)
    settle_writes = sum(watcher.writes_between(float("-inf"), idle_start).writes.values())
    (log_path.parent / "idle.log").write_text("\n".join(idle_log) + "\n")
    return _report(settings, resources, healthy, failing, writes, settle_writes, idle_log,
                   warnings_before, warnings_after, cpu_s, sampler.peak_kb, operator.pid,
                   idle_end - idle_start, settled_s)


def _by_kind(resources: list[Resource]) -> str:
    counts = Counter((r.kind, r.healthy) for r in resources)
    return ", ".join(f"{n} {kind} {'healthy' if ok else 'failing'}"
                     for (kind, ok), n in sorted(counts.items()))


def _report(settings: Settings, resources: list[Resource], healthy: list[Key],
            failing: list[Key], writes: WriteLog, settle_writes: int, idle_log: list[str],
            warnings_before: dict[str, tuple[int, str]],
            warnings_after: dict[str, tuple[int, str]], cpu_s: float, peak_kb: int, pid: int,
            idle_s: float, settled_s: float) -> dict[str, object]:
    figures = summarize(writes.writes, healthy, failing)
    bound = backoff_attempt_bound(idle_s)
    minutes = idle_s / 60.0
    per_resource_minute = len(idle_log) / len(resources) / minutes
    new_warnings = {name: (count - warnings_before.get(name, (0, ""))[0], what)
                    for name, (count, what) in warnings_after.items()
                    if count > warnings_before.get(name, (0, ""))[0]}
    warning_count = sum(n for n, _ in new_warnings.values())
    criteria = [
        ("0 writes for healthy resources", figures["healthy_writes"] == 0,
         f"{figures['healthy_writes']:.0f} writes on {figures['healthy_objects_written']:.0f} "
         f"of {len(healthy)}"),
        (f"failing resources: <= {bound} writes each (one per backoff attempt)",
         figures["failing_max_per_resource"] <= bound,
         f"max {figures['failing_max_per_resource']:.0f}, mean "
         f"{figures['failing_mean_per_resource']}"),
        ("< 1 log line per resource per minute", per_resource_minute < 1.0,
         f"{per_resource_minute:.3f} ({len(idle_log)} lines)"),
    ]
    rows = [
        ("resources (healthy / failing)", f"{len(resources)} ({len(healthy)} / {len(failing)})"),
        ("time until all settled", f"{settled_s:.1f} s"),
        ("idle period", f"{idle_s:.0f} s (after {settings.settle_seconds:.0f} s settle time, "
                        f"{settle_writes} writes in it)"),
        ("writes, healthy (total)", f"{figures['healthy_writes']:.0f}"),
        ("writes, failing (max / mean per resource)",
         f"{figures['failing_max_per_resource']:.0f} / {figures['failing_mean_per_resource']}"),
        ("writes by minute, healthy", _minutes(writes.per_minute(healthy, round(minutes)))),
        ("writes by minute, failing", _minutes(writes.per_minute(failing, round(minutes)))),
        ("ADDED/DELETED events", dict(writes.other) or "none"),
        ("operator log lines (default level)",
         f"{len(idle_log)} = {per_resource_minute:.3f} per resource per minute"),
        ("operator peak RSS during the period", f"{peak_kb / 1024:.1f} MB (lifetime peak "
                                                f"{_status_kb(pid, 'VmHWM') / 1024:.1f} MB)"),
        ("operator CPU during the period", f"{cpu_s:.1f} s ({100 * cpu_s / idle_s:.2f}% of a "
                                           "core)"),
        ("Warning events created during the period", str(warning_count)),
    ]
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"  {name:<{width}}  {value}" for name, value in rows), flush=True)
    for name, ok, detail in criteria:
        print(f"{'PASS' if ok else 'FAIL'}: {name}: {detail}", flush=True)
    _diagnose(writes, healthy, failing, idle_log, new_warnings)
    return {
        "count": len(resources), "healthy": len(healthy), "failing": len(failing),
        "settled_seconds": round(settled_s, 1), "settle_seconds": settings.settle_seconds,
        "settle_writes": settle_writes, "idle_seconds": round(idle_s, 1), **figures,
        "failing_writes_bound": bound, "log_lines": len(idle_log),
        "healthy_writes_by_minute": writes.per_minute(healthy, round(minutes)),
        "failing_writes_by_minute": writes.per_minute(failing, round(minutes)),
        "log_lines_per_resource_minute": round(per_resource_minute, 4),
        "operator_peak_rss_mb": round(peak_kb / 1024, 1),
        "operator_cpu_seconds": round(cpu_s, 2), "warning_events": warning_count,
        "criteria": {name: ok for name, ok, _ in criteria},
    }


def _minutes(counts: list[int]) -> str:
    return ", ".join(str(n) for n in counts)


def _diagnose(writes: WriteLog, healthy: list[Key], failing: list[Key], idle_log: list[str],
              new_warnings: Mapping[str, tuple[int, str]]) -> None:
    """What was written and logged, for whoever looks into a FAIL."""
    healthy_set = set(healthy)
    written = sorted(writes.writes.items(), key=lambda kv: -kv[1])
    for label, keys in (("healthy", healthy_set), ("failing", set(failing))):
        mine = [(k, n) for k, n in written if k in keys]
        if mine:
            print(f"writes to {label} resources (top 10 of {len(mine)}):", flush=True)
        for (kind, name), n in mine[:10]:
            fields = ", ".join(f"{p} x{c}" for p, c in writes.paths.get((kind, name),
                                                                       Counter()).most_common(6))
            print(f"  {kind}/{name}: {n} writes; fields changed: {fields}", flush=True)
        for (kind, name), _ in mine[:2]:
            for i, changed in enumerate(writes.examples.get((kind, name), [])[:4], start=1):
                print(f"    write {i} of {kind}/{name}: {'; '.join(changed)}", flush=True)
    digest = log_digest(idle_log)
    if digest:
        print(f"log lines during the period by message (top 12 of {len(digest)}):", flush=True)
        for message, n in digest.most_common(12):
            print(f"  {n:5d}  {message}", flush=True)
    if new_warnings:
        print("Warning events during the period (first 10):", flush=True)
        for n, what in list(new_warnings.values())[:10]:
            print(f"  {n:3d}x {what[:200]}", flush=True)

