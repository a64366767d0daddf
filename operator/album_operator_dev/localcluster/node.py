"""A real single-node Kubernetes on this host: the control plane, a kubelet with containerd,
CNI, kube-proxy, a cluster DNS and a volume provisioner, so the chart runs as it ships.

Everything is addressed on a bridge of our own (``albumops0``, 10.244.0.1): the API server
and CoreDNS listen there, Pods get addresses behind it, and a FORWARD rule keeps Pod traffic
off every other interface. ``down`` undoes every host effect: processes, Pods' processes,
mounts, iptables chains, the bridge, cgroups and the sysctls it changed. The kubelet's cgroup
root and ports are global, so there is one node per machine at a time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests
import yaml

from album_operator_dev.localcluster import hostdeps, images, nodehost
from album_operator_dev.localcluster.build import ensure_node_binaries
from album_operator_dev.localcluster.cluster import _spawn, _terminate, _wait_until, free_port
from album_operator_dev.localcluster.nodepki import NodePki, create_node_pki

NODE_NAME = "albumops-node"
NODE_IP = nodehost.GATEWAY
API_PORT = 6443
SERVICE_CIDR = "10.96.0.0/24"
KUBERNETES_SERVICE_IP = "10.96.0.1"
STATE_DIR = Path("/var/lib/albumops-node")
RUN_DIR = Path("/run/albumops-node")
CONTAINERD_SOCKET = RUN_DIR / "containerd.sock"
STORAGE_CLASS = "albumops-local"
READY_TIMEOUT_S = 180.0
# Start order; ``down`` stops them in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "containerd", "kube-controller-manager",
              "kube-scheduler", "kubelet", "kube-proxy", "coredns", "provisioner")


@dataclass
class NodeState:
    pids: dict[str, int]
    server_url: str
    kubeconfig: str
    kubectl: str
    helm: str
    operator_image: str
    qdrant_image: str


def _say(message: str) -> None:
    print(f"[local-node] {message}", file=sys.stderr, flush=True)


def _kubeconfig(pki: NodePki, identity: str, path: Path) -> Path:
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "albumops-node", "cluster": {
            "server": f"https://{NODE_IP}:{API_PORT}", "certificate-authority": str(pki.ca_cert)}}],
        "users": [{"name": identity, "user": {
            "client-certificate": str(pki.cert(identity)),
            "client-key": str(pki.key(identity))}}],
        "contexts": [{"name": "albumops-node", "context": {
            "cluster": "albumops-node", "user": identity, "namespace": "default"}}],
        "current-context": "albumops-node",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _etcd_args(binary: Path, port: int, peer_port: int) -> list[str]:
    client = f"http://127.0.0.1:{port}"
    return [str(binary), "--name", NODE_NAME, "--data-dir", str(STATE_DIR / "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"{NODE_NAME}=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync", "--log-level", "warn"]


def _apiserver_args(binary: Path, pki: NodePki, etcd_url: str) -> list[str]:
    return [
        str(binary), f"--etcd-servers={etcd_url}", f"--bind-address={NODE_IP}",
        f"--advertise-address={NODE_IP}", f"--secure-port={API_PORT}",
        f"--cert-dir={STATE_DIR / 'apiserver-certs'}",
        f"--tls-cert-file={pki.cert('apiserver')}",
        f"--tls-private-key-file={pki.key('apiserver')}",
        f"--client-ca-file={pki.ca_cert}",
        f"--kubelet-client-certificate={pki.cert('apiserver-kubelet-client')}",
        f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
        f"--kubelet-certificate-authority={pki.ca_cert}",
        "--kubelet-preferred-address-types=InternalIP",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC", "--allow-privileged=true",
        "--enable-admission-plugins=NodeRestriction", "--v=0",
    ]


def _controller_manager_args(binary: Path, pki: NodePki, kubeconfig: Path) -> list[str]:
    return [str(binary), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca_cert}", "--use-service-account-credentials=true",
            "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Pods of deleted namespaces and finished test Pods go soon, not after an hour.
            "--terminated-pod-gc-threshold=50", "--v=0"]


def _scheduler_args(binary: Path, kubeconfig: Path) -> list[str]:
    return [str(binary), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false", "--bind-address=127.0.0.1", "--v=0"]


def _kubelet_config(pki: NodePki) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki.ca_cert)}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki.cert("kubelet-serving")),
        "tlsPrivateKeyFile": str(pki.key("kubelet-serving")),
        # This machine: cgroup v1 without systemd, and swap may be on.
        "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
        "clusterDNS": [nodehost.GATEWAY], "clusterDomain": "cluster.local",
        "resolvConf": str(nodehost.write_pod_resolv_conf(STATE_DIR)),
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "address": NODE_IP, "healthzBindAddress": "127.0.0.1",
        # A test node on a shared disk: evict only when truly out of room, never collect
        # the imported images (nothing can pull them back).
        "evictionHard": {"memory.available": "200Mi", "nodefs.available": "2%",
                         "imagefs.available": "2%", "nodefs.inodesFree": "2%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False, "maxPods": 110,
        "syncFrequency": "10s", "fileCheckFrequency": "10s",
    }


def _kube_proxy_config(kubeconfig: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME, "clusterCIDR": nodehost.POD_CIDR, "mode": "iptables",
        # Leave the host's conntrack table size alone.
        "conntrack": {"maxPerCore": 0, "min": 0},
        "metricsBindAddress": "127.0.0.1:10249", "healthzBindAddress": "127.0.0.1:10256",
    }


def _corefile(kubeconfig: Path) -> str:
    return f"""\
.:53 {{
    bind {nodehost.GATEWAY}
    errors
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} albumops-node
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
    loadbalance
}}
"""


def _containerd_config(pause_image: str) -> str:
    cni = nodehost.write_cni_config(STATE_DIR)
    return f"""\
version = 2
root = "{STATE_DIR / 'containerd'}"
state = "{RUN_DIR / 'containerd'}"
[grpc]
  address = "{CONTAINERD_SOCKET}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  # This VM lacks CAP_SYS_RESOURCE: without it every sandbox fails to set its OOM score.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{hostdeps.CNI_BIN_DIR}"
    conf_dir = "{cni.parent}"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
"""


class _Starter:
    """Starts the components one by one, recording each pid as soon as it runs."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.logs = STATE_DIR / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        _record_pids(self.pids)

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        proc = _spawn(args, self.logs / f"{name}.log")
        self.pids[name] = proc.pid
        _record_pids(self.pids)
        return proc

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def _record_pids(pids: dict[str, int]) -> None:
    (STATE_DIR / "pids.json").write_text(json.dumps(pids))


def _client_ok(url: str, pki: NodePki) -> bool:
    answer = requests.get(url, verify=str(pki.ca_cert), timeout=2,
                          cert=(str(pki.cert("admin")), str(pki.key("admin"))))
    return answer.status_code == 200


def _start_control_plane(starter: _Starter, bins: dict[str, Path], pki: NodePki) -> str:
    port, peer = free_port(), free_port()
    etcd = starter.start("etcd", _etcd_args(bins["etcd"], port, peer))
    etcd_url = f"http://127.0.0.1:{port}"
    _wait_until(lambda: requests.get(f"{etcd_url}/health", timeout=2).json().get("health")
                == "true", "etcd", etcd, starter.log("etcd"))
    server = f"https://{NODE_IP}:{API_PORT}"
    api = starter.start("kube-apiserver", _apiserver_args(bins["kube-apiserver"], pki, etcd_url))
    _wait_until(lambda: _client_ok(f"{server}/readyz", pki)
                and _client_ok(f"{server}/api/v1/namespaces/default", pki),
                "kube-apiserver", api, starter.log("kube-apiserver"))
    return server


def _start_runtime(starter: _Starter, image_set: images.ImageSet) -> None:
    config = STATE_DIR / "containerd.toml"
    config.write_text(_containerd_config(image_set.pause))
    containerd = starter.start("containerd", [hostdeps.require("containerd"), "--config",
                                              str(config)])
    _wait_until(lambda: _ctr("version").returncode == 0, "containerd", containerd,
                starter.log("containerd"))
    for tar in image_set.tars:
        import_image(tar)


def import_image(tar: Path) -> None:
    """Puts a saved image (``docker save``) on the node, as a registry pull would."""
    with tar.open("rb") as source:
        subprocess.run([hostdeps.require("ctr"), "--address", str(CONTAINERD_SOCKET),
                        "--namespace", "k8s.io", "images", "import", "--all-platforms", "-"],
                       stdin=source, check=True, stdout=subprocess.DEVNULL)


def _ctr(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([hostdeps.require("ctr"), "--address", str(CONTAINERD_SOCKET),
                           "--namespace", "k8s.io", *args], capture_output=True, check=False)


def tag_image(source: str, target: str) -> None:
    """Another name for an imported image, as a registry push of a new tag would give."""
    _ctr("images", "rm", _qualified(target))
    done = _ctr("images", "tag", _qualified(source), _qualified(target))
    if done.returncode != 0:
        raise RuntimeError(f"ctr images tag failed: {done.stderr.decode(errors='replace')}")


def _qualified(reference: str) -> str:
    first = reference.split("/", 1)[0]
    if "/" in reference and ("." in first or ":" in first):
        return reference
    return f"docker.io/library/{reference}" if "/" not in reference else f"docker.io/{reference}"


def _start_node(starter: _Starter, bins: dict[str, Path], pki: NodePki) -> None:
    configs = STATE_DIR / "config"
    configs.mkdir(exist_ok=True)
    kubeconfigs = {name: _kubeconfig(pki, name, configs / f"{name}.kubeconfig")
                   for name in ("kube-controller-manager", "kube-scheduler", "kubelet",
                                "kube-proxy", "coredns")}
    starter.start("kube-controller-manager", _controller_manager_args(
        bins["kube-controller-manager"], pki, kubeconfigs["kube-controller-manager"]))
    starter.start("kube-scheduler", _scheduler_args(bins["kube-scheduler"],
                                                    kubeconfigs["kube-scheduler"]))
    kubelet_config = configs / "kubelet.yaml"
    kubelet_config.write_text(yaml.safe_dump(_kubelet_config(pki)))
    starter.start("kubelet", [str(bins["kubelet"]), f"--config={kubelet_config}",
                              f"--kubeconfig={kubeconfigs['kubelet']}",
                              f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}",
                              f"--root-dir={STATE_DIR / 'kubelet'}", "--v=1"])
    proxy_config = configs / "kube-proxy.yaml"
    proxy_config.write_text(yaml.safe_dump(_kube_proxy_config(kubeconfigs["kube-proxy"])))
    starter.start("kube-proxy", [str(bins["kube-proxy"]), f"--config={proxy_config}", "--v=0"])
    corefile = configs / "Corefile"
    corefile.write_text(_corefile(kubeconfigs["coredns"]))
    starter.start("coredns", [str(bins["coredns"]), "-conf", str(corefile)])


def _apply_node_objects(kubectl: list[str]) -> None:
    manifest = Path(__file__).with_name("node-objects.yaml")
    subprocess.run([*kubectl, "apply", "--server-side", "-f", str(manifest)], check=True,
                   stdout=subprocess.DEVNULL)


def _wait_node_ready(kubectl: list[str], starter: _Starter) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        for name, pid in starter.pids.items():
            if not _alive(pid):
                raise RuntimeError(f"{name} exited; see {starter.log(name)}:\n"
                                   + _tail(starter.log(name)))
        node = subprocess.run([*kubectl, "wait", "--for=condition=Ready", f"node/{NODE_NAME}",
                               "--timeout=5s"], capture_output=True, check=False)
        # Pods are refused until the controller-manager made the namespace's ServiceAccount.
        account = subprocess.run([*kubectl, "get", "serviceaccount", "default"],
                                 capture_output=True, check=False)
        if node.returncode == 0 and account.returncode == 0:
            return
        time.sleep(1)
    raise RuntimeError(f"node {NODE_NAME} not Ready after {READY_TIMEOUT_S:.0f}s; see "
                       f"{starter.logs}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(log: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


def project_version() -> str:
    from importlib.metadata import version

    return version("qdrant-album-operator")


def _revision() -> str:
    done = subprocess.run(["git", "-C", str(images.REPO), "rev-parse", "--short=12", "HEAD"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def build(qdrant_binary: Path) -> tuple[dict[str, Path], images.ImageSet]:
    """Everything a node needs, built or found in the cache: packages, binaries, images."""
    hostdeps.ensure_packages()
    bins = ensure_node_binaries()
    return bins, images.ensure_images(project_version(), _revision(), qdrant_binary)


def up(qdrant_binary: Path) -> NodeState:
    """Starts the node from nothing (a node left running is taken down first)."""
    if os.geteuid() != 0:
        raise RuntimeError("a real node needs root (kubelet, containerd, iptables, mounts)")
    bins, image_set = build(qdrant_binary)
    down(quiet=True)
    started = time.monotonic()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    nodehost.prepare()
    pki = create_node_pki(STATE_DIR / "pki", dt.datetime.now(dt.UTC), node_name=NODE_NAME,
                          node_ip=NODE_IP, service_ip=KUBERNETES_SERVICE_IP)
    admin = _kubeconfig(pki, "admin", STATE_DIR / "kubeconfig")
    kubectl = [str(bins["kubectl"]), f"--kubeconfig={admin}"]
    starter = _Starter()
    try:
        server = _start_control_plane(starter, bins, pki)
        _start_runtime(starter, image_set)
        _start_node(starter, bins, pki)
        _apply_node_objects(kubectl)
        starter.start("provisioner", [sys.executable, "-m",
                                      "album_operator_dev.localcluster.provisioner",
                                      "--kubeconfig", str(admin),
                                      "--root", str(STATE_DIR / "volumes")])
        _wait_node_ready(kubectl, starter)
    except BaseException:
        down(quiet=True)
        raise
    state = NodeState(pids=starter.pids, server_url=server, kubeconfig=str(admin),
                      kubectl=str(bins["kubectl"]), helm=str(bins["helm"]),
                      operator_image=image_set.operator, qdrant_image=image_set.qdrant)
    (STATE_DIR / "state.json").write_text(json.dumps(asdict(state), indent=2))
    _say(f"node {NODE_NAME} Ready at {server} in {time.monotonic() - started:.1f}s; "
         f"KUBECONFIG={admin}")
    return state


def read_state() -> NodeState | None:
    path = STATE_DIR / "state.json"
    if not path.is_file():
        return None
    return NodeState(**json.loads(path.read_text()))


def _recorded_pids() -> dict[str, int]:
    path = STATE_DIR / "pids.json"
    with contextlib.suppress(OSError, ValueError):
        pids: dict[str, int] = json.loads(path.read_text())
        return pids
    return {}


def down(quiet: bool = False) -> None:
    """Stops every component and Pod, and undoes every host effect."""
    started = time.monotonic()
    pids = _recorded_pids()
    for name in reversed(COMPONENTS):
        if name in pids and name != "containerd":
            _terminate(pids[name])
    nodehost.kill_pod_processes()
    if "containerd" in pids:
        _terminate(pids["containerd"])
    nodehost.kill_leftover_shims(RUN_DIR)
    nodehost.unmount_under(STATE_DIR, RUN_DIR)
    nodehost.clean()
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    if not quiet or pids:
        _say(f"node stopped and host cleaned in {time.monotonic() - started:.1f}s")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m album_operator_dev.localcluster.node",
                                     description=__doc__)
    parser.add_argument("action", choices=["build", "up", "down", "env"])
    parser.add_argument("--qdrant-bin", type=Path, default=None,
                        help="the Qdrant server binary for the Qdrant image (default: "
                             "QDRANT_BIN or qdrant on the PATH)")
    args = parser.parse_args(argv)
    if args.action == "down":
        down()
        return 0
    if args.action == "env":
        state = read_state()
        if state is None:
            print("no node is running", file=sys.stderr)
            return 1
        print(f"export KUBECONFIG={state.kubeconfig}")
        return 0
    from album_operator_dev.localcluster.qdrant_server import find_binary

    binary = args.qdrant_bin or find_binary()
    if binary is None:
        print("a Qdrant server binary is needed for the Qdrant image: set QDRANT_BIN",
              file=sys.stderr)
        return 2
    if args.action == "build":
        build(Path(binary))
    else:
        up(Path(binary))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
