"""Builds kube-apiserver, kubectl and etcd from Go modules into a cache outside the repository.

Nothing on PyPI or Debian ships a current kube-apiserver, so it is compiled from the published
Go modules. ``k8s.io/kubernetes`` cannot be ``go install``-ed directly (its go.mod points its
staging modules at local paths), so a small wrapper module replaces every staging module with
its published ``v0.N.P`` twin. Builds are skipped when the cached binary already reports the
wanted version, and a file lock keeps two processes from building at once.
"""

from __future__ import annotations

import fcntl
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "1.36.3"
ETCD_VERSION = "3.6.16"
HELM_VERSION = "4.3.1"
# Prometheus 3.N.P is published as the Go module version v0.3NN.P.
PROMETHEUS_VERSION = "3.16.0"
GO_DIRECTIVE = "1.26.0"

# Every staging module of k8s.io/kubernetes 1.33-1.37; replaces for modules outside the build
# graph are ignored by Go, so one list serves all of them.
STAGING_MODULES = (
    "api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime", "client-go",
    "cloud-provider", "cluster-bootstrap", "code-generator", "component-base", "component-helpers",
    "controller-manager", "cri-api", "cri-client", "cri-streaming", "csi-translation-lib",
    "dynamic-resource-allocation", "endpointslice", "externaljwt", "kms", "kube-aggregator",
    "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubectl", "kubelet", "metrics",
    "mount-utils", "pod-security-admission", "sample-apiserver", "sample-cli-plugin",
    "sample-controller", "streaming",
)


def cache_root() -> Path:
    explicit = os.environ.get("ALBUMOPS_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "album-operator"


@dataclass(frozen=True)
class GoTool:
    """One binary built from a wrapper Go module."""

    name: str
    version: str
    package: str
    module_requirement: str
    version_flag: str
    version_marker: str
    replaces: tuple[tuple[str, str], ...] = ()
    ldflags: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    # A main package of our own, for a tool built with fewer plugins than its own main has.
    main_source: str | None = None

    def build_target(self) -> str:
        return "." if self.main_source else self.package

    def binary(self, root: Path) -> Path:
        return root / "bin" / f"{self.name}-v{self.version}" / self.name


def _kubernetes_ldflags(version: str) -> tuple[str, ...]:
    major, minor, _ = version.split(".")
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion=v{version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return tuple(flags)


def _kubernetes_tool(name: str) -> GoTool:
    staging = f"0.{KUBERNETES_VERSION.split('.', 1)[1]}"
    return GoTool(
        name=name,
        version=KUBERNETES_VERSION,
        package=f"k8s.io/kubernetes/cmd/{name}",
        module_requirement=f"k8s.io/kubernetes v{KUBERNETES_VERSION}",
        version_flag="version --client" if name == "kubectl" else "--version",
        version_marker=f"v{KUBERNETES_VERSION}",
        replaces=tuple((f"k8s.io/{m}", f"k8s.io/{m} v{staging}") for m in STAGING_MODULES),
        ldflags=_kubernetes_ldflags(KUBERNETES_VERSION),
    )


KUBE_APISERVER = _kubernetes_tool("kube-apiserver")
KUBECTL = _kubernetes_tool("kubectl")
ETCD = GoTool(
    name="etcd",
    version=ETCD_VERSION,
    package="go.etcd.io/etcd/server/v3",
    module_requirement=f"go.etcd.io/etcd/server/v3 v{ETCD_VERSION}",
    version_flag="--version",
    version_marker=f"etcd Version: {ETCD_VERSION}",
    ldflags=("-s", "-w"),
)
HELM = GoTool(
    name="helm",
    version=HELM_VERSION,
    package="helm.sh/helm/v4/cmd/helm",
    module_requirement=f"helm.sh/helm/v4 v{HELM_VERSION}",
    version_flag="version --short",
    version_marker=f"v{HELM_VERSION}",
    # Without it helm reports only "v4.3" and the cached binary never counts as current.
    ldflags=("-s", "-w", f"-X helm.sh/helm/v4/internal/version.version=v{HELM_VERSION}"),
)


def _prometheus_module_version(version: str) -> str:
    major, minor, patch = (int(part) for part in version.split("."))
    return f"v0.{major * 100 + minor}.{patch}"


PROMTOOL = GoTool(
    name="promtool",
    version=PROMETHEUS_VERSION,
    package="github.com/prometheus/prometheus/cmd/promtool",
    module_requirement=(
        f"github.com/prometheus/prometheus {_prometheus_module_version(PROMETHEUS_VERSION)}"),
    version_flag="--version",
    version_marker=f"promtool, version {PROMETHEUS_VERSION}",
    # Prometheus stamps its version at release time; a plain build would report an empty one.
    ldflags=("-s", "-w",
             f"-X github.com/prometheus/common/version.Version={PROMETHEUS_VERSION}",
             "-X github.com/prometheus/common/version.Revision="
             f"{_prometheus_module_version(PROMETHEUS_VERSION)}",
             "-X github.com/prometheus/common/version.Branch=HEAD",
             "-X github.com/prometheus/common/version.BuildUser=album-operator"),
    # Leaves out the service discovery plugins, which `promtool check rules` and `test rules`
    # never use: their cloud SDKs are the largest packages of the build.
    tags=("remove_all_sd",),
)
CONTROL_PLANE_TOOLS = (ETCD, KUBE_APISERVER, KUBECTL)

COREDNS_VERSION = "1.15.0"
# Only the plugins a one-node test cluster's Corefile uses, in CoreDNS's own plugin.cfg order:
# its stock main links every plugin, the cloud DNS providers' SDKs among them, and takes about
# four minutes to build here. No `forward`: Pods resolve cluster names and nothing outside.
COREDNS_PLUGINS = ("bind", "ready", "errors", "log", "loadbalance", "cache", "kubernetes")
_COREDNS_MAIN = """package main

import (
\t"github.com/coredns/coredns/core/dnsserver"
\t"github.com/coredns/coredns/coremain"
{imports}
)

func init() {{
\tdnsserver.Directives = []string{{{directives}}}
}}

func main() {{
\tcoremain.Run()
}}
"""
COREDNS = GoTool(
    name="coredns",
    version=COREDNS_VERSION,
    package="github.com/coredns/coredns/coremain",
    module_requirement=f"github.com/coredns/coredns v{COREDNS_VERSION}",
    version_flag="-version",
    version_marker=f"CoreDNS-{COREDNS_VERSION}",
    ldflags=("-s", "-w"),
    main_source=_COREDNS_MAIN.format(
        imports="\n".join(f'\t_ "github.com/coredns/coredns/plugin/{name}"'
                          for name in COREDNS_PLUGINS),
        directives=", ".join(f'"{name}"' for name in COREDNS_PLUGINS)),
)
# What a real node adds to the control plane; containerd, runc and the CNI plugins are
# Debian packages (localcluster.hostdeps).
NODE_TOOLS = (*(_kubernetes_tool(name) for name in (
    "kubelet", "kube-scheduler", "kube-controller-manager", "kube-proxy")), COREDNS)


def _wrapper_go_mod(tool: GoTool) -> str:
    lines = [
        "module albumops.local/build",
        "",
        f"go {GO_DIRECTIVE}",
        "",
        f"godebug default=go{GO_DIRECTIVE.rsplit('.', 1)[0]}",
        "",
        f"require {tool.module_requirement}",
    ]
    if tool.replaces:
        lines += ["", "replace ("]
        lines += [f"\t{old} => {new}" for old, new in tool.replaces]
        lines.append(")")
    return "\n".join(lines) + "\n"


def _tools_go(tool: GoTool) -> str:
    return f'//go:build tools\n\npackage tools\n\nimport _ "{tool.package}"\n'


def _go_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOMODCACHE=str(root / "go" / "mod"),
        GOCACHE=str(root / "go" / "build"),
        GOTOOLCHAIN="local",
        CGO_ENABLED="0",
        GOFLAGS="-mod=mod",
    )
    return env


def is_current(tool: GoTool, root: Path) -> bool:
    binary = tool.binary(root)
    if not binary.is_file():
        return False
    try:
        out = subprocess.run(
            [str(binary), *tool.version_flag.split()],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return tool.version_marker in out.stdout + out.stderr


@contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "build.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say("another process is building the control plane; waiting for its lock")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _say(message: str) -> None:
    print(f"[local-cluster] {message}", file=sys.stderr, flush=True)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the 'go' toolchain is needed to build the control plane; install Go")
    return go


def _tag_args(tool: GoTool) -> list[str]:
    return ["-tags", ",".join(tool.tags)] if tool.tags else []


def _count_packages(tool: GoTool, workdir: Path, env: dict[str, str]) -> int:
    out = subprocess.run(
        [_go(), "list", "-deps", *_tag_args(tool), tool.build_target()],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return len(out.stdout.split())


def _run_with_progress(cmd: list[str], workdir: Path, env: dict[str, str], label: str,
                       total: int | None) -> None:
    """Runs a go command, printing a progress line every 15 s from its -v package stream."""
    started = time.monotonic()
    last_report = started
    seen = 0
    tail: list[str] = []
    with subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen += 1
            tail = [*tail[-30:], line.rstrip()]
            now = time.monotonic()
            if now - last_report >= 15:
                last_report = now
                of_total = f"/{total}" if total else ""
                _say(f"{label}: {seen}{of_total} packages, {now - started:.0f}s elapsed")
        code = proc.wait()
    if code != 0:
        detail = "\n".join(tail)
        raise RuntimeError(f"{label} failed (exit {code}):\n{detail}")


def build(tool: GoTool, root: Path | None = None) -> Path:
    """Returns the path of the tool's binary, building it first when the cache lacks it."""
    root = root or cache_root()
    if is_current(tool, root):
        return tool.binary(root)
    with _build_lock(root):
        if is_current(tool, root):
            return tool.binary(root)
        return _build_unlocked(tool, root)


def _build_unlocked(tool: GoTool, root: Path) -> Path:
    workdir = root / "src" / f"{tool.name}-v{tool.version}"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "go.mod").write_text(_wrapper_go_mod(tool))
    if tool.main_source:
        (workdir / "main.go").write_text(tool.main_source)
    else:
        (workdir / "tools.go").write_text(_tools_go(tool))
    env = _go_env(root)
    started = time.monotonic()
    _say(f"building {tool.name} v{tool.version} from Go modules (first time only)")
    _run_with_progress([_go(), "mod", "tidy", "-v"], workdir, env,
                       f"{tool.name}: resolving modules", None)
    total = _count_packages(tool, workdir, env)
    binary = tool.binary(root)
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(".partial")
    cmd = [_go(), "build", "-v", "-trimpath", *_tag_args(tool), "-ldflags",
           " ".join(tool.ldflags), "-o", str(partial), tool.build_target()]
    _run_with_progress(cmd, workdir, env, f"{tool.name}: compiling", total)
    partial.replace(binary)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    _say(f"built {tool.name} in {time.monotonic() - started:.0f}s "
         f"(peak child RSS so far {peak_mb:.0f} MB) -> {binary}")
    return binary


def ensure_control_plane_binaries(root: Path | None = None) -> dict[str, Path]:
    return {tool.name: build(tool, root) for tool in CONTROL_PLANE_TOOLS}


def ensure_node_binaries(root: Path | None = None) -> dict[str, Path]:
    """The control plane's binaries and a node's (kubelet, scheduler, controller-manager,
    kube-proxy, CoreDNS)."""
    tools = (*CONTROL_PLANE_TOOLS, HELM, *NODE_TOOLS)
    return {tool.name: build(tool, root) for tool in tools}
