"""Edge endpoint under load: many devices and attackers at once, for a fixed time.

The operator's snapshot endpoint (``EdgeEndpoint``, its default ``HttpLimits``) runs in a
process of its own on 127.0.0.1, serving one Build policy from the embedded engine (a
published full snapshot, a newer one so that old devices get partials, uploads on), with
the operator's JSON logging (access lines included, written to /dev/null). ``clients``
concurrent clients in this process send, for ``seconds``, a mix of well-formed requests
(list, full download checked against its sha256, partial for an old manifest (200, sha256
checked) or the current one (304), an upload of 10 points) and attacks (a request head never
finished, a body above the route's limit, malformed JSON, a bad Content-Length). Every
answer is checked; a request answered 503 + Retry-After (the endpoint shedding load) is
counted apart, not as correct and not as a failure. Reported: answers per second,
failures per kind, when slow heads were cut off, and the endpoint process's peak RSS
against the chart's memory limit (``resources.limits.memory``). Only loopback traffic; it
stops by itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import multiprocessing
import os
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import yaml

TOKEN = "bench-load-token-0123456789"
DIM = 256
POINTS = 2000
PATH = "/v1/namespaces/bench/policies/edge"
CHART_VALUES = Path(__file__).resolve().parent.parent / "charts/album-operator/values.yaml"
WEIGHTS = {"list": 30, "full": 8, "partial_old": 4, "partial_current": 8, "points": 15,
           "slow_head": 10, "oversized": 10, "malformed_json": 8, "bad_length": 7}
WELL_FORMED = ("list", "full", "partial_old", "partial_current", "points")


# -- the endpoint's process -----------------------------------------------------------------

def _serve(workdir: str, conn: Connection) -> None:
    """Publishes two snapshots, serves them until told to stop, reports its peak RSS."""
    import numpy as np
    import qdrant_edge as qe
    from qdrant_client import models as qm

    from album_operator.adapters.edge import shardbuild
    from album_operator.adapters.edge.endpoint import EdgeRegistry, PolicyAccess, token_digest
    from album_operator.adapters.edge.http import EdgeEndpoint
    from album_operator.adapters.edge.store import PolicyStore
    from album_operator.adapters.logs import configure_logging
    from album_operator.adapters.qdrant.connection import ConnectionSettings, open_engine
    from album_operator.models.edge_snapshot_policy import UploadSpec

    configure_logging(stream=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as we do
    work = Path(workdir)
    engine = open_engine(ConnectionSettings(embedded_path=str(work / "engine")))
    rng = np.random.default_rng(7)
    params = qm.VectorParams(size=DIM, distance=qm.Distance.COSINE)
    engine.call(lambda c: c.create_collection("album_2025", vectors_config=params))
    engine.call(lambda c: c.create_collection("uploads", vectors_config=params))
    vectors = rng.normal(size=(POINTS, DIM)).astype(np.float32)
    engine.call(lambda c: c.upsert("album_2025", [
        qm.PointStruct(id=i, vector=vectors[i].tolist(), payload={"i": i})
        for i in range(POINTS)]))
    store = PolicyStore(work / "policy")
    layout = {"": shardbuild.VectorLayout(DIM, "Cosine")}

    def publish(name: str) -> None:
        shardbuild.sync_shard(engine, "album_2025", store.work, layout, None, None)
        store.publish(0, name, "album_2025", shardbuild.manifest(store.work), name, None)

    publish("a-first.tar")
    device = work / "device"
    qe.EdgeShard.unpack_snapshot(str(store.path("a-first.tar")), str(device))
    shard = qe.EdgeShard.load(str(device))
    old_manifest = shard.snapshot_manifest()
    shard.close()
    engine.call(lambda c: c.upsert("album_2025", [
        qm.PointStruct(id=POINTS + i, vector=rng.normal(size=DIM).tolist(), payload={})
        for i in range(POINTS // 20)]))
    publish("b-second.tar")
    latest = store.latest(0)
    assert latest is not None
    shutil.rmtree(device)
    qe.EdgeShard.unpack_snapshot(str(store.path(latest.name)), str(device))
    shard = qe.EdgeShard.load(str(device))
    current_manifest = shard.snapshot_manifest()
    shard.close()

    registry = EdgeRegistry()
    registry.put(PolicyAccess(
        namespace="bench", name="edge", token_digests=frozenset({token_digest(TOKEN)}),
        store=store, engine=engine, collection="album_2025",
        vectors={"": {"size": DIM, "distance": "Cosine"}},
        upload=UploadSpec(collection="uploads", max_batch_size=1000),
        allowed_targets=frozenset({"uploads"})))
    endpoint = EdgeEndpoint(registry, 0, host="127.0.0.1").start()
    conn.send({"port": endpoint.port, "sha256": latest.sha256, "size": latest.size_bytes,
               "old_manifest": old_manifest, "current_manifest": current_manifest,
               "limits": endpoint.limits.__dict__, "pid": os.getpid()})
    conn.recv()  # stop
    endpoint.stop()
    engine.close()
    conn.send(_memory())


def _memory() -> dict[str, float]:
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmHWM", "VmRSS"):
            found[key] = int(line.split()[1]) / 1024
    return found


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _chart_memory_limit_mb() -> float:
    values = yaml.safe_load(CHART_VALUES.read_text())
    text = str(values["resources"]["limits"]["memory"])
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20,
             "G": 1e9 / 2**20}
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text[:-len(unit)]) * factor
    return float(text) / 2**20


# -- the clients ----------------------------------------------------------------------------

@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    correct: Counter[str] = field(default_factory=Counter)
    shed: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    head_cut_s: list[float] = field(default_factory=list)

    def fail(self, kind: str, why: str) -> None:
        self.failed[kind] += 1
        if len(self.failures) < 20:
            self.failures.append(f"{kind}: {why}"[:300])


@dataclass(frozen=True)
class Target:
    port: int
    sha256: str
    size: int
    old_manifest: dict[str, Any]
    current_manifest: dict[str, Any]
    header_timeout_s: float

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"


def _points_body(rng: random.Random) -> dict[str, Any]:
    return {"points": [{"id": rng.randrange(1, 10**9), "payload": {"bench": True},
                        "vector": [rng.uniform(-1, 1) for _ in range(DIM)]}
                       for _ in range(10)]}


async def _well_formed(kind: str, session: aiohttp.ClientSession, target: Target,
                       rng: random.Random, tally: Tally) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    if kind == "list":
        request = session.get(f"{target.base}/snapshots", headers=auth)
    elif kind == "full":
        request = session.get(f"{target.base}/shards/0/snapshot", headers=auth)
    elif kind in ("partial_old", "partial_current"):
        manifest = target.old_manifest if kind == "partial_old" else target.current_manifest
        request = session.post(f"{target.base}/shards/0/partial", json=manifest, headers=auth)
    else:
        request = session.post(f"{target.base}/points", json=_points_body(rng), headers=auth)
    async with request as response:
        status = response.status
        if status == 503 and "Retry-After" in response.headers:
            await response.read()
            tally.shed[kind] += 1
            return
        if kind == "full":
            digest, size = hashlib.sha256(), 0
            async for chunk in response.content.iter_chunked(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            ok = (status == 200 and size == target.size
                  and digest.hexdigest() == target.sha256)
            why = f"{status}, {size} bytes"
        elif kind == "partial_old":
            body = await response.read()
            ok = (status == 200 and hashlib.sha256(body).hexdigest()
                  == response.headers.get("X-Snapshot-Sha256"))
            why = f"{status} {body[:100]!r}"
        elif kind == "partial_current":
            body = await response.read()
            ok, why = status == 304, f"{status} {body[:100]!r}"
        else:
            body = await response.read()
            answer = json.loads(body) if status == 200 else {}
            ok = kind != "points" or (status == 200 and len(answer.get("accepted", [])) == 10)
            ok = ok and status == 200
            why = f"{status} {body[:100]!r}"
    if ok:
        tally.correct[kind] += 1
    else:
        tally.fail(kind, why)


async def _raw(target: Target, data: bytes, timeout: float) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read(1 << 16)
    finally:
        writer.close()


async def _attack(kind: str, target: Target, tally: Tally) -> None:
    auth = f"Authorization: Bearer {TOKEN}\r\n"
    head = f"POST {PATH}/shards/0/partial HTTP/1.1\r\nHost: bench\r\n{auth}"
    if kind == "slow_head":
        started = time.monotonic()
        answer = await _raw(target, f"GET {PATH}/snapshots HTTP/1.1\r\nHost: b\r\n".encode(),
                            target.header_timeout_s + 10)
        elapsed = time.monotonic() - started
        tally.head_cut_s.append(elapsed)
        ok, why = answer == b"", f"{answer[:80]!r} after {elapsed:.1f}s"
        ok = ok and elapsed < target.header_timeout_s + 5
    elif kind == "oversized":
        answer = await _raw(target, (head + "Content-Type: application/json\r\n"
                                     "Content-Length: 1073741824\r\n\r\n").encode(), 30)
        ok, why = answer.startswith(b"HTTP/1.1 413") and b'"error"' in answer, f"{answer[:80]!r}"
    elif kind == "malformed_json":
        body = b'{"segments": [1, 2'
        answer = await _raw(target, (head + "Content-Type: application/json\r\n"
                                     f"Content-Length: {len(body)}\r\n\r\n").encode() + body,
                            30)
        ok = answer.startswith(b"HTTP/1.1 400") and b'"error"' in answer
        why = f"{answer[:80]!r}"
    else:
        answer = await _raw(target, (head + "Content-Length: abc\r\n\r\n").encode(), 30)
        ok, why = b" 400 " in answer[:20] and b'"error"' in answer, f"{answer[:80]!r}"
    if not ok and answer.startswith(b"HTTP/1.1 503") and b"Retry-After" in answer:
        tally.shed[kind] += 1  # at capacity: refused as safely, just earlier
        return
    if ok:
        tally.correct[kind] += 1
    else:
        tally.fail(kind, why)


async def _client(number: int, session: aiohttp.ClientSession, target: Target, until: float,
                  tally: Tally) -> None:
    rng = random.Random(number)
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        kind = rng.choices(kinds, weights)[0]
        tally.sent[kind] += 1
        started = loop.time()
        try:
            if kind in WELL_FORMED:
                await _well_formed(kind, session, target, rng, tally)
            else:
                await _attack(kind, target, tally)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            tally.fail(kind, f"{type(exc).__name__}: {exc}")
        tally.latency_ms.setdefault(kind, []).append((loop.time() - started) * 1000)


async def _load(target: Target, clients: int, seconds: float, pid: int
                ) -> tuple[Tally, float, float]:
    tally = Tally()
    loop = asyncio.get_running_loop()
    started = loop.time()
    until = started + seconds
    peak = 0.0

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, _rss_mb(pid))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    timeout = aiohttp.ClientTimeout(total=120, sock_connect=10)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        tasks = [asyncio.create_task(_client(n, session, target, until, tally))
                 for n in range(clients)]
        # The last requests started before ``until`` get a bounded time to finish.
        _, pending = await asyncio.wait(tasks, timeout=seconds + 60)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    sampler.cancel()
    return tally, loop.time() - started, peak


def run(clients: int = 200, seconds: float = 30.0) -> dict[str, object]:
    """Prints and returns the figures."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-edge-load-"))
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=_serve, args=(str(workdir), theirs), daemon=True)
    server.start()
    try:
        if not ours.poll(300):
            raise RuntimeError("the endpoint process did not start")
        info = ours.recv()
        limits = info["limits"]
        target = Target(info["port"], info["sha256"], info["size"], info["old_manifest"],
                        info["current_manifest"], float(limits["header_timeout_s"]))
        logging.getLogger("aiohttp").setLevel(logging.ERROR)
        tally, elapsed, sampled_peak = asyncio.run(_load(target, clients, seconds,
                                                         info["pid"]))
        ours.send("stop")
        memory = ours.recv() if ours.poll(60) else {}
    finally:
        server.join(30)
        if server.is_alive():
            server.terminate()
            server.join(10)
        shutil.rmtree(workdir, ignore_errors=True)
    return _report(tally, elapsed, clients, seconds, target, limits, memory, sampled_peak)


def _report(tally: Tally, elapsed: float, clients: int, seconds: float, target: Target,
            limits: dict[str, Any], memory: dict[str, float], sampled_peak: float
            ) -> dict[str, object]:
    answered = sum(tally.correct.values()) + sum(tally.shed.values()) \
        + sum(tally.failed.values())
    good = sum(tally.correct[k] for k in WELL_FORMED)
    well_failed = sum(tally.failed[k] for k in WELL_FORMED)
    peak = max(memory.get("VmHWM", 0.0), sampled_peak)
    limit = _chart_memory_limit_mb()
    kinds = {kind: {"sent": tally.sent[kind], "correct": tally.correct[kind],
                    "shed_503": tally.shed[kind], "failed": tally.failed[kind],
                    "median_ms": round(statistics.median(tally.latency_ms[kind]), 1)
                    if tally.latency_ms.get(kind) else None}
             for kind in WEIGHTS}
    result: dict[str, object] = {
        "clients": clients, "seconds": seconds, "elapsed_s": round(elapsed, 1),
        "snapshot_bytes": target.size, "limits": limits,
        "answers_per_s": round(answered / elapsed, 1),
        "well_formed_correct_per_s": round(good / elapsed, 1),
        "well_formed_failed": well_failed,
        "attacks_failed": sum(tally.failed[k] for k in WEIGHTS if k not in WELL_FORMED),
        "kinds": kinds,
        "slow_head_cut_after_s": {
            "median": round(statistics.median(tally.head_cut_s), 1),
            "max": round(max(tally.head_cut_s), 1)} if tally.head_cut_s else None,
        "endpoint_peak_rss_mb": round(peak, 1),
        "chart_memory_limit_mb": round(limit, 1),
        "peak_rss_of_limit": round(peak / limit, 3) if limit else None,
        "failures": tally.failures,
    }
    print(f"edge_load: {clients} clients for {seconds:.0f}s on 127.0.0.1 "
          f"(snapshot {target.size / 2**20:.1f} MiB; in flight <= {limits['max_in_flight']}, "
          f"bodies in memory <= {limits['body_budget_bytes'] >> 20} MiB)", flush=True)
    print(f"  answers: {answered} in {elapsed:.1f}s = {answered / elapsed:.0f}/s; "
          f"well-formed answered correctly: {good} ({good / elapsed:.0f}/s), "
          f"failed: {well_failed}; attacks answered wrongly: {result['attacks_failed']}",
          flush=True)
    for kind, figures in kinds.items():
        print(f"  {kind:16} sent {figures['sent']:6}  correct {figures['correct']:6}  "
              f"503 {figures['shed_503']:5}  failed {figures['failed']:4}  "
              f"median {figures['median_ms']} ms", flush=True)
    if tally.head_cut_s:
        print(f"  slow heads cut off after {statistics.median(tally.head_cut_s):.1f}s "
              f"(max {max(tally.head_cut_s):.1f}s; header timeout "
              f"{target.header_timeout_s:.0f}s)", flush=True)
    print(f"  endpoint process peak RSS {peak:.0f} MB of the chart's {limit:.0f} MB memory "
          f"limit ({peak / limit:.0%})", flush=True)
    for failure in tally.failures[:10]:
        print(f"  failure: {failure}", flush=True)
    return result


if __name__ == "__main__":
    run()
