"""The machine and the Qdrant server the benchmarks' server halves run on.

A server half runs when a server is available: ``QDRANT_URL`` (+ ``QDRANT_API_KEY``) names an
external one, else a binary from ``QDRANT_BIN`` (or ``qdrant`` on the PATH) is started on
loopback for that benchmark alone, with its own data directory and API key, and stopped
afterwards. Without either, the server halves are skipped and the header says how to enable
them.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from album_operator.adapters.qdrant.connection import ConnectionSettings
from album_operator_dev.localcluster import qdrant_server
from album_operator_dev.localcluster.qdrant_server import LocalQdrant

# qdrant-client warns on every client made with an API key over http; loopback is fine here.
warnings.filterwarnings("ignore", message="Api key is used with an insecure connection")

ENGINES = ("embedded", "server")


@dataclass(frozen=True)
class Server:
    url: str
    api_key: str | None
    local: LocalQdrant | None

    @property
    def shard_number(self) -> int | None:
        """Collections on a cluster get two shards per peer; a single server keeps one."""
        return 2 * len(self.local.peers) if self.local and len(self.local.peers) > 1 else None

    @property
    def grpc_port(self) -> int | None:
        return self.local.grpc_port if self.local is not None else None

    def settings(self, grpc: bool = True) -> ConnectionSettings:
        return ConnectionSettings(url=self.url, api_key=self.api_key,
                                  grpc_port=self.grpc_port if grpc else None)

    def client(self) -> QdrantClient:
        return QdrantClient(url=self.url, api_key=self.api_key, timeout=600,
                            check_compatibility=False)

    def describe(self, storage: str = "disk") -> str:
        version = _version(self.client())
        where = (f"started here, {storage_root(storage)[1]}" if self.local
                 else "external (QDRANT_URL)")
        return f"Qdrant server {version} at {self.url}, {where}"

    def memory_mb(self) -> dict[str, float]:
        """The local server process's resident memory now and at its peak, in MB."""
        if self.local is None or self.local.peers[0].process is None:
            return {}
        status = Path(f"/proc/{self.local.peers[0].process.pid}/status")
        fields = {"VmRSS": "server_rss_mb", "VmHWM": "server_peak_rss_mb"}
        found = {}
        for line in status.read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in fields:
                found[fields[key]] = round(int(line.split()[1]) / 1024, 1)
        return found


def _version(client: QdrantClient) -> str:
    try:
        return str(client.info().version)
    finally:
        client.close()


def available() -> str | None:
    """What a server half would run on, or None when no server is available."""
    if os.environ.get("QDRANT_URL"):
        return f"external server at QDRANT_URL={os.environ['QDRANT_URL']}"
    binary = qdrant_server.find_binary()
    if binary is None:
        return None
    try:
        version = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                                 timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        version = "version unknown"
    return f"{binary} ({version}), started per benchmark on loopback"


STORAGES = ("disk", "memory")
MEMORY_ROOT = Path("/dev/shm")
MEMORY_NEEDED_BYTES = 4 * 2**30


def storage_root(storage: str) -> tuple[Path | None, str]:
    """Where a started server keeps its data, and how to say so. ``memory`` is a RAM-backed
    directory: on a VM disk each collection creation waits for fsyncs whose latency varies
    threefold from run to run, which would swamp what a benchmark means to measure (the
    local control plane's etcd runs without fsync for the same reason)."""
    if storage == "memory":
        try:
            room = shutil.disk_usage(MEMORY_ROOT).free
        except OSError:
            room = 0
        if room >= MEMORY_NEEDED_BYTES and os.access(MEMORY_ROOT, os.W_OK):
            return MEMORY_ROOT, f"storage in memory ({MEMORY_ROOT})"
        return None, f"storage on disk ({MEMORY_ROOT} missing or under 4 GB free)"
    return None, "storage on disk"


@contextmanager
def qdrant(what: str, storage: str = "disk", peers: int = 1) -> Iterator[Server | None]:
    """The server for one benchmark's server half, or None (the half is then skipped)."""
    url = os.environ.get("QDRANT_URL")
    if url:
        yield Server(url.rstrip("/"), os.environ.get("QDRANT_API_KEY") or None, None)
        return
    binary = qdrant_server.find_binary()
    if binary is None:
        yield None
        return
    root, _ = storage_root(storage)
    home = Path(tempfile.mkdtemp(prefix=f"bench-qdrant-{what}-", dir=root))
    api_key = f"bench-{uuid.uuid4().hex}"
    local = (qdrant_server.start_cluster(binary, home, api_key, peers) if peers > 1
             else qdrant_server.start_single(binary, home, api_key))
    try:
        yield Server(local.url, local.api_key, local)
    finally:
        local.stop()
        shutil.rmtree(home, ignore_errors=True)


def skipped(what: str) -> None:
    print(f"== {what} on a Qdrant server: skipped, no server (see the header)", flush=True)


def wait_green(client: QdrantClient, names: list[str], timeout_s: float = 900.0) -> float:
    """Until every collection is green (its optimizers idle); the seconds waited."""
    started = time.monotonic()
    for name in names:
        while client.get_collection(name).status != qm.CollectionStatus.GREEN:
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"{name} not green after {timeout_s:.0f}s")
            time.sleep(0.25)
    return time.monotonic() - started


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gb() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GB RAM"
    except OSError:
        pass
    return "RAM unknown"


def header(engines: list[str]) -> dict[str, object]:
    """Prints the hardware and the server the halves run on; returns them for --json."""
    cores = len(os.sched_getaffinity(0))
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"hardware: {cores} cores (nproc), {_cpu_model()}, {_memory_gb()}; "
          f"load average at start {load}", flush=True)
    server = available() if "server" in engines else None
    if "server" not in engines:
        print("qdrant server: not asked for (--engines)", flush=True)
    elif server is None:
        print(f"qdrant server: none, server halves skipped; to run them, "
              f"{qdrant_server.ENABLE_HINT}", flush=True)
    else:
        print(f"qdrant server: {server}", flush=True)
    return {"nproc": cores, "cpu": _cpu_model(), "load_average_at_start": load,
            "qdrant_server": server}
