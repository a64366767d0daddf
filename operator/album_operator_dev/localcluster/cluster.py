"""Runs etcd and kube-apiserver on loopback ports, the way controller-runtime's envtest does.

``up`` is idempotent: a cluster whose processes still answer is reused. Processes run in their
own session so they outlive the command that started them; ``down`` stops them and removes
their data. State lives in ``<cache>/clusters/<name>/state.json``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import requests
import yaml

from album_operator_dev.localcluster.build import cache_root, ensure_control_plane_binaries
from album_operator_dev.localcluster.pki import Pki, create_pki

READY_TIMEOUT_S = 120.0
USE_EXISTING_ENV = "ALBUMOPS_USE_EXISTING_CLUSTER"


@dataclass
class ClusterState:
    name: str
    etcd_pid: int
    apiserver_pid: int
    etcd_url: str
    server_url: str
    kubeconfig: str
    kubectl: str


def use_existing_cluster() -> bool:
    """True when the user asked to run against the cluster their KUBECONFIG points at."""
    return os.environ.get(USE_EXISTING_ENV, "").lower() in {"1", "true", "yes"}


def cluster_dir(name: str) -> Path:
    return cache_root() / "clusters" / name


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _say(message: str) -> None:
    print(f"[local-cluster] {message}", file=sys.stderr, flush=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_until(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes],
                log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {log}:\n"
                               + _tail(log))
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{what} not ready after {READY_TIMEOUT_S:.0f}s; see {log}:\n" + _tail(log))


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _etcd_args(etcd: Path, data: Path, client_port: int, peer_port: int) -> list[str]:
    client = f"http://127.0.0.1:{client_port}"
    return [
        str(etcd), "--name", "album-operator-local", "--data-dir", str(data),
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-cluster", f"album-operator-local=http://127.0.0.1:{peer_port}",
        "--unsafe-no-fsync", "--log-level", "warn",
    ]


def _apiserver_args(apiserver: Path, pki: Pki, etcd_url: str, port: int,
                    cert_dir: Path) -> list[str]:
    return [
        str(apiserver),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        "--endpoint-reconciler-type=none",
        f"--cert-dir={cert_dir}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--authorization-mode=RBAC",
        "--disable-admission-plugins=ServiceAccount",
        "--allow-privileged=true",
        "--v=0",
    ]


def _kubeconfig(server_url: str, pki: Pki) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "album-local", "cluster": {
            "server": server_url, "certificate-authority": str(pki.ca_cert)}}],
        "users": [{"name": "album-admin", "user": {
            "client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)}}],
        "contexts": [{"name": "album-local", "context": {
            "cluster": "album-local", "user": "album-admin", "namespace": "default"}}],
        "current-context": "album-local",
    }


def _apiserver_ready(server_url: str, pki: Pki) -> bool:
    session_args = {"verify": str(pki.ca_cert), "cert": (str(pki.admin_cert), str(pki.admin_key)),
                    "timeout": 2}
    if requests.get(f"{server_url}/readyz", **session_args).status_code != 200:  # type: ignore[arg-type]
        return False
    namespace = requests.get(f"{server_url}/api/v1/namespaces/default", **session_args)  # type: ignore[arg-type]
    return namespace.status_code == 200


def read_state(name: str) -> ClusterState | None:
    path = cluster_dir(name) / "state.json"
    if not path.is_file():
        return None
    return ClusterState(**json.loads(path.read_text()))


def _is_running(state: ClusterState) -> bool:
    if not (_alive(state.etcd_pid) and _alive(state.apiserver_pid)):
        return False
    pki_dir = Path(state.kubeconfig).parent / "pki"
    try:
        return _apiserver_ready(state.server_url, _pki_paths(pki_dir))
    except requests.RequestException:
        return False


def _pki_paths(directory: Path) -> Pki:
    return Pki(
        ca_cert=directory / "ca.crt", serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key", admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key", service_account_key=directory / "sa.key",
        service_account_pub=directory / "sa.pub",
    )


def up(name: str = "default") -> ClusterState:
    """Starts (or reuses) the named local control plane and returns its state."""
    existing = read_state(name)
    if existing and _is_running(existing):
        _say(f"cluster '{name}' already running at {existing.server_url}")
        return existing
    if existing:
        down(name, quiet=True)
    binaries = ensure_control_plane_binaries()
    started = time.monotonic()
    base = cluster_dir(name)
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    pki = create_pki(base / "pki", dt.datetime.now(dt.UTC))

    client_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{client_port}"
    etcd_log = base / "etcd.log"
    etcd = _spawn(_etcd_args(binaries["etcd"], base / "etcd-data", client_port, peer_port),
                  etcd_log)
    _wait_until(lambda: requests.get(f"{etcd_url}/health", timeout=2).json().get("health")
                == "true", "etcd", etcd, etcd_log)

    server_url = f"https://127.0.0.1:{api_port}"
    api_log = base / "kube-apiserver.log"
    apiserver = _spawn(_apiserver_args(binaries["kube-apiserver"], pki, etcd_url, api_port,
                                       base / "apiserver-certs"), api_log)
    try:
        _wait_until(lambda: _apiserver_ready(server_url, pki), "kube-apiserver", apiserver,
                    api_log)
    except RuntimeError:
        _terminate(etcd.pid)
        raise

    kubeconfig = base / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(_kubeconfig(server_url, pki)))
    kubeconfig.chmod(0o600)
    state = ClusterState(name=name, etcd_pid=etcd.pid, apiserver_pid=apiserver.pid,
                         etcd_url=etcd_url, server_url=server_url,
                         kubeconfig=str(kubeconfig), kubectl=str(binaries["kubectl"]))
    (base / "state.json").write_text(json.dumps(asdict(state), indent=2))
    _say(f"cluster '{name}' ready at {server_url} in {time.monotonic() - started:.1f}s")
    return state


def _terminate(pid: int, grace_s: float = 10.0) -> None:
    if not _alive(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            reaped = 0
            if not _alive(pid):
                return
        if reaped == pid:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def down(name: str = "default", quiet: bool = False) -> bool:
    """Stops the named cluster and removes its data. Returns False when none was recorded."""
    state = read_state(name)
    if state is None:
        if not quiet:
            _say(f"no cluster '{name}' recorded")
        return False
    _terminate(state.apiserver_pid)
    _terminate(state.etcd_pid)
    shutil.rmtree(cluster_dir(name), ignore_errors=True)
    if not quiet:
        _say(f"cluster '{name}' stopped")
    return True
