"""The host side of the one-node cluster: its bridge, sysctls and iptables rules, and the
clean-up of everything a kubelet, containerd, CNI and kube-proxy leave on a host."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
from pathlib import Path

BRIDGE = "albumops0"
POD_CIDR = "10.244.0.0/24"
GATEWAY = "10.244.0.1"
ISOLATION_CHAIN = "ALBUMOPS-ISOLATE"
# Chains of kube-proxy and the kubelet, of the CNI plugins, and of this module.
CHAIN_PREFIXES = ("KUBE-", "CNI-", "ALBUMOPS-")
SYSCTLS = {"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"}
SYSCTL_BACKUP = Path("/run/albumops-node-sysctl.json")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False)


def prepare() -> None:
    """The bridge (so the API server can bind its address before any Pod exists), the
    sysctls Services need, and a rule that keeps Pod traffic on the bridge."""
    if _run("ip", "link", "show", BRIDGE).returncode != 0:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "replace", f"{GATEWAY}/24", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    _set_sysctls()
    _run("iptables", "-N", ISOLATION_CHAIN)
    _run("iptables", "-F", ISOLATION_CHAIN)
    # The node reaches nothing but itself: Pods never send a packet out of the machine.
    _run("iptables", "-A", ISOLATION_CHAIN, "-s", POD_CIDR, "!", "-o", BRIDGE, "-j", "DROP")
    if _run("iptables", "-C", "FORWARD", "-j", ISOLATION_CHAIN).returncode != 0:
        _run("iptables", "-I", "FORWARD", "1", "-j", ISOLATION_CHAIN)


def _set_sysctls() -> None:
    previous = {}
    for key, value in SYSCTLS.items():
        path = Path("/proc/sys") / key
        previous[key] = path.read_text().strip()
        path.write_text(value)
    if not SYSCTL_BACKUP.exists():
        SYSCTL_BACKUP.write_text(json.dumps(previous))


def _restore_sysctls() -> None:
    with contextlib.suppress(OSError, ValueError):
        for key, value in json.loads(SYSCTL_BACKUP.read_text()).items():
            (Path("/proc/sys") / key).write_text(value)
        SYSCTL_BACKUP.unlink()


def write_pod_resolv_conf(state_dir: Path) -> Path:
    """Pods with dnsPolicy Default get no upstream resolver: nothing leaves the machine."""
    path = state_dir / "config" / "resolv.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"nameserver {GATEWAY}\n")
    return path


def write_cni_config(state_dir: Path) -> Path:
    path = state_dir / "cni" / "net.d" / "10-albumops.conflist"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "cniVersion": "1.0.0", "name": "albumops",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR,
                                                         "gateway": GATEWAY}]],
                      "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": str(state_dir / "cni" / "ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            # Accepts the Pods' forwarded traffic whatever the FORWARD policy is.
            {"type": "firewall"},
        ],
    }
    path.write_text(json.dumps(config, indent=2))
    return path


def _kubepods_dirs() -> list[Path]:
    found: list[Path] = []
    with contextlib.suppress(OSError):
        for hierarchy in CGROUP_ROOT.iterdir():
            for candidate in (hierarchy / "kubepods", hierarchy / "kubepods.slice"):
                if candidate.is_dir():
                    found.append(candidate)
    return found


def kill_pod_processes() -> None:
    """SIGKILLs every process of every Pod (they live in the kubepods cgroups)."""
    for _ in range(5):
        pids = set()
        for root in _kubepods_dirs():
            for procs in root.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    pids |= {int(line) for line in procs.read_text().split()}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["sleep", "0.5"], check=False)


def kill_leftover_shims(run_dir: Path) -> None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "containerd-shim" in cmdline and str(run_dir) in cmdline:
                os.kill(int(proc.name), signal.SIGKILL)


def unmount_under(*roots: Path) -> None:
    """Unmounts every mount below the roots, deepest first, and the Pods' network namespaces."""
    prefixes = [str(root) for root in roots] + ["/run/netns/cni-", "/var/run/netns/cni-"]
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            target = line.split()[1].replace("\\040", " ")
            if any(target.startswith(prefix) for prefix in prefixes):
                mounts.append(target)
    for target in sorted(mounts, key=len, reverse=True):
        _run("umount", "-l", target)
    for netns_dir in (Path("/run/netns"), Path("/var/run/netns")):
        with contextlib.suppress(OSError):
            for netns in netns_dir.glob("cni-*"):
                netns.unlink()


def _remove_cgroups() -> None:
    for root in _kubepods_dirs():
        for directory in sorted((p for p in root.rglob("*") if p.is_dir()),
                                key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


def _iptables_chains() -> dict[str, list[str]]:
    """Chains that kube-proxy, the kubelet, CNI and this module add, by table."""
    chains: dict[str, list[str]] = {}
    for table in ("filter", "nat", "mangle"):
        listing = _run("iptables", "-t", table, "-S").stdout.splitlines()
        chains[table] = [line.split()[1] for line in listing if line.startswith("-N ")
                         and line.split()[1].startswith(CHAIN_PREFIXES)]
    return chains


def _clean_iptables() -> None:
    chains = _iptables_chains()
    for table, names in chains.items():
        for line in _run("iptables", "-t", table, "-S").stdout.splitlines():
            parts = shlex.split(line)
            if parts[:1] == ["-A"] and parts[1] not in names and any(
                    name in parts for name in names):
                _run("iptables", "-t", table, "-D", *parts[1:])
        for name in names:
            _run("iptables", "-t", table, "-F", name)
        for name in names:
            _run("iptables", "-t", table, "-X", name)


def clean() -> None:
    _clean_iptables()
    _run("ip", "link", "delete", BRIDGE)
    for link in _run("ip", "-o", "link", "show", "type", "veth").stdout.splitlines():
        name = link.split(":")[1].strip().split("@")[0]
        if name.startswith("veth"):
            _run("ip", "link", "delete", name)
    _remove_cgroups()
    _restore_sysctls()
