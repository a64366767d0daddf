"""Runs a real Qdrant server on loopback: one node, or a cluster of peers (one process each).

A test dependency like kube-apiserver, used by the tests, the demo and the benchmarks. The
binary is never vendored: ``QDRANT_BIN`` names it, else ``qdrant`` on the PATH. Every peer gets
free loopback ports, its own storage and snapshot directories and the same API key.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from album_operator_dev.localcluster.cluster import free_port

BIN_ENV = "QDRANT_BIN"
READY_TIMEOUT_S = 60.0
ENABLE_HINT = ("set QDRANT_BIN to a Qdrant server binary (or put `qdrant` on the PATH), "
               "or QDRANT_URL (+ QDRANT_API_KEY) to an external server")


def find_binary() -> Path | None:
    """The Qdrant server binary named by ``QDRANT_BIN``, else ``qdrant`` on the PATH."""
    named = os.environ.get(BIN_ENV)
    if named:
        path = Path(named).expanduser()
        return path if path.is_file() and os.access(path, os.X_OK) else None
    found = shutil.which("qdrant")
    return Path(found) if found else None


@dataclass
class QdrantPeer:
    """One server process. Its ports and directories stay the same across restarts."""

    binary: Path
    home: Path
    api_key: str
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    p2p_port: int | None = None
    bootstrap: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def uri(self) -> str | None:
        """The peer's cluster URI (what ``GET /cluster`` reports for it)."""
        return None if self.p2p_port is None else f"http://127.0.0.1:{self.p2p_port}/"

    def _env(self) -> dict[str, str]:
        env = {**os.environ,
               "QDRANT__SERVICE__HOST": "127.0.0.1",
               "QDRANT__SERVICE__HTTP_PORT": str(self.http_port),
               "QDRANT__SERVICE__GRPC_PORT": str(self.grpc_port),
               "QDRANT__SERVICE__API_KEY": self.api_key,
               "QDRANT__STORAGE__STORAGE_PATH": str(self.home / "storage"),
               "QDRANT__STORAGE__SNAPSHOTS_PATH": str(self.home / "snapshots"),
               "QDRANT__TELEMETRY_DISABLED": "true",
               "QDRANT__LOG_LEVEL": "WARN"}
        if self.p2p_port is not None:
            env["QDRANT__CLUSTER__ENABLED"] = "true"
            env["QDRANT__CLUSTER__P2P__PORT"] = str(self.p2p_port)
        return env

    def _args(self) -> list[str]:
        args = [str(self.binary)]
        if self.uri is not None:
            args += ["--uri", self.uri.rstrip("/")]
            # A restarted peer already knows its cluster from its storage.
            if self.bootstrap and not (self.home / "storage" / "raft_state.json").exists():
                args += ["--bootstrap", self.bootstrap]
        return args

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / "qdrant.log").open("ab") as log:
            self.process = subprocess.Popen(self._args(), env=self._env(), cwd=self.home,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.url}{path}", headers={"api-key": self.api_key}, timeout=5)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"qdrant exited with {self.process.returncode}: "
                                   f"{self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if self.get("/readyz").status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"qdrant not ready after {timeout_s:.0f}s: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.home / "qdrant.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: signal.Signals = signal.SIGTERM, grace_s: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.stop(signal.SIGKILL)


@dataclass
class LocalQdrant:
    """A running server: one peer, or several forming a cluster."""

    peers: list[QdrantPeer]
    api_key: str

    @property
    def url(self) -> str:
        return self.peers[0].url

    @property
    def grpc_port(self) -> int:
        return self.peers[0].grpc_port

    def peer_urls(self) -> dict[str, str]:
        """Each peer's cluster URI -> its HTTP URL (the Secret's ``peerUrls``)."""
        return {peer.uri: peer.url for peer in self.peers if peer.uri is not None}

    def version(self) -> str:
        version: str = self.peers[0].get("/").json()["version"]
        return version

    def stop(self) -> None:
        for peer in reversed(self.peers):
            peer.stop()


def start_single(binary: Path, home: Path, api_key: str) -> LocalQdrant:
    peer = QdrantPeer(binary, home, api_key)
    peer.start()
    try:
        peer.wait_ready()
    except RuntimeError:
        peer.stop()
        raise
    return LocalQdrant([peer], api_key)


def _joined(peer: QdrantPeer, expected: int) -> bool:
    with contextlib.suppress(requests.RequestException, ValueError, KeyError):
        result = peer.get("/cluster").json()["result"]
        return len(result["peers"]) == expected and result["raft_info"]["leader"] is not None
    return False


def wait_joined(cluster: LocalQdrant, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until every peer answers and sees all of them in the cluster."""
    deadline = time.monotonic() + timeout_s
    for peer in cluster.peers:
        peer.wait_ready(max(1.0, deadline - time.monotonic()))
    while time.monotonic() < deadline:
        if all(_joined(peer, len(cluster.peers)) for peer in cluster.peers):
            return
        time.sleep(0.25)
    raise RuntimeError(f"the Qdrant peers did not join within {timeout_s:.0f}s")


def start_cluster(binary: Path, home: Path, api_key: str, peers: int = 3) -> LocalQdrant:
    """``peers`` processes on loopback: the first names itself, the others bootstrap from it.

    Peers join one at a time; Raft rejects a second join while the first is in flight.
    """
    first = QdrantPeer(binary, home / "peer-0", api_key, p2p_port=free_port())
    members = [first]
    cluster = LocalQdrant(members, api_key)
    try:
        first.start()
        wait_joined(cluster)
        for index in range(1, peers):
            peer = QdrantPeer(binary, home / f"peer-{index}", api_key, p2p_port=free_port(),
                              bootstrap=first.uri)
            members.append(peer)
            peer.start()
            wait_joined(cluster)
    except RuntimeError:
        cluster.stop()
        raise
    return cluster
