"""The Debian packages a real node and the image build need, installed when missing.

containerd and runc come with Debian's docker.io (dockerd builds the images); the CNI plugins,
mmdebstrap (the base image without a registry), iptables and conntrack (kube-proxy) are
packages of their own. Installing needs root, as running a kubelet does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# Debian package -> a file it installs, to tell whether it is there.
PACKAGES = {
    "docker.io": "/usr/sbin/dockerd",
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "mmdebstrap": "/usr/bin/mmdebstrap",
    "iptables": "/usr/sbin/iptables",
    "conntrack": "/usr/sbin/conntrack",
    "gcc": "/usr/bin/gcc",
    "libc6-dev": "/usr/lib/x86_64-linux-gnu/libc.a",
}
CNI_BIN_DIR = Path("/usr/lib/cni")


def missing_packages() -> list[str]:
    return [name for name, marker in PACKAGES.items() if not Path(marker).exists()]


def ensure_packages() -> None:
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"a real node needs these Debian packages: {' '.join(missing)}; "
                           "install them as root (apt-get install) or run as root")
    print(f"[local-cluster] installing {' '.join(missing)}", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # No init system here: package scripts must not try to start dockerd or containerd.
    policy = Path("/usr/sbin/policy-rc.d")
    created_policy = not policy.exists()
    if created_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       check=True, env=env, stdout=subprocess.DEVNULL)
    finally:
        if created_policy:
            policy.unlink(missing_ok=True)


def require(binary: str) -> str:
    path = shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise RuntimeError(f"{binary} not found; run `album-operator local-cluster build --node`")
    return path
