"""The ``album-operator`` command: run the operator, and the developer commands around it."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import argcomplete

from album_operator.config import OperatorConfig, default_embedded_path, peering_priority
from album_operator.status_command import STATUS_EPILOG, add_status_arguments, run_status

DISTRIBUTION = "qdrant-album-operator"


RUN_ENVIRONMENT = """environment:
  QDRANT_URL, QDRANT_API_KEY  a Qdrant server to use when no --qdrant-secret is given
  QDRANT_PEER_URLS            a JSON object from each peer's cluster URI to its HTTP URL
  QDRANT_GRPC_PORT            the server's gRPC port: MasterMerge copies over gRPC
  KUBECONFIG                  the cluster to run against (in a Pod: its service account)"""


class _DefaultsAndEnvironment(argparse.ArgumentDefaultsHelpFormatter,
                              argparse.RawDescriptionHelpFormatter):
    """Help that shows each flag's default and keeps the environment table's layout."""


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run the operator against the current kubeconfig",
                         description="Run the operator against the current kubeconfig.",
                         epilog=RUN_ENVIRONMENT,
                         formatter_class=_DefaultsAndEnvironment)
    run.add_argument("-n", "--namespace", action="append", default=[],
                     help="watch only this namespace (repeatable); none: all namespaces")
    run.add_argument("--qdrant-secret", default=os.environ.get("ALBUMOPS_QDRANT_SECRET"),
                     help="NAMESPACE/NAME of a Secret with keys url, apiKey, ca.crt; "
                     "without it (and without QDRANT_URL) the embedded engine is used "
                     "[env ALBUMOPS_QDRANT_SECRET]")
    run.add_argument("--embedded-path",
                     default=os.environ.get("ALBUMOPS_EMBEDDED_PATH", default_embedded_path()),
                     help="data directory of the embedded Qdrant engine "
                     "[env ALBUMOPS_EMBEDDED_PATH]")
    run.add_argument("--resync-seconds", type=float, default=60.0,
                     help="how often every resource is compared with Qdrant")
    run.add_argument("--deletion-grace-seconds", type=float, default=300.0,
                     help="how long deletion waits for an unreachable Qdrant")
    run.add_argument("--health-port", type=int, default=8080, help="liveness/readiness port")
    run.add_argument("--metrics-port", type=int, default=None, help="Prometheus metrics port")
    run.add_argument("--snapshot-port", type=int, default=None,
                     help="port of the edge snapshot endpoint")
    run.add_argument("--snapshot-dir", default=os.environ.get("ALBUMOPS_SNAPSHOT_DIR"),
                     help="where built snapshots are kept; unset: next to the embedded "
                     "engine's data [env ALBUMOPS_SNAPSHOT_DIR]")
    run.add_argument("--snapshot-tls-secret",
                     default=os.environ.get("ALBUMOPS_SNAPSHOT_TLS_SECRET"),
                     help="NAMESPACE/NAME of a Secret with keys tls.crt and tls.key: the "
                     "snapshot endpoint serves HTTPS (for clusters without an Ingress) "
                     "[env ALBUMOPS_SNAPSHOT_TLS_SECRET]")
    run.add_argument("--peering", default=os.environ.get("ALBUMOPS_PEERING"),
                     help="kopf peering object shared by replicas: the replica with the "
                     "highest --priority works, the others stand by until it stops "
                     "[env ALBUMOPS_PEERING]")
    run.add_argument("--priority", default=os.environ.get("ALBUMOPS_PRIORITY", "0"),
                     help="peering priority: an integer, or 'auto' (derived from the host "
                     "name, so every Pod of a Deployment gets its own) "
                     "[env ALBUMOPS_PRIORITY]")
    run.add_argument("--peering-lifetime", type=int,
                     default=int(os.environ.get("ALBUMOPS_PEERING_LIFETIME", "60")),
                     help="seconds a replica counts as alive after its last keep-alive: "
                     "how long a standby waits to take over from one that crashed "
                     "[env ALBUMOPS_PEERING_LIFETIME]")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="album-operator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)

    cluster = sub.add_parser(
        "local-cluster", help="a real local kube-apiserver + etcd",
        description="A real kube-apiserver and etcd on this machine, built once from Go "
        "modules into the cache (~/.cache/album-operator).",
        epilog=LOCAL_CLUSTER_ACTIONS, formatter_class=_DefaultsAndEnvironment)
    cluster.add_argument("action", choices=["up", "down", "env", "status", "build"],
                         help="see the list below")
    cluster.add_argument("--name", default="default", help="cluster name (several may run)")

    crds = sub.add_parser("crds", help="generate the CRDs from the models, or check them")
    crds.add_argument("action", choices=["generate", "check", "install"])
    crds.add_argument("--repo", default=None,
                      help="repository root (generate, check); default: the checkout around "
                      "the current directory")

    demo = sub.add_parser("demo", help="bring everything up and show it working")
    demo.add_argument("--keep", action="store_true",
                      help="leave the control plane running afterwards")
    server = demo.add_mutually_exclusive_group()
    server.add_argument("--qdrant-bin", type=Path, default=None,
                        help="run the story on a Qdrant server started from this binary "
                        "(default: the embedded engine)")
    server.add_argument("--qdrant-url", default=None,
                        help="run the story on the Qdrant server at this URL; its API key "
                        "comes from QDRANT_API_KEY")
    status = sub.add_parser(
        "status", help="a resource's conditions, build or publication, Qdrant side and "
        "events on one screen", description="A resource's story on one screen: conditions, "
        "the current build or publication, Qdrant's side and recent events.",
        epilog=STATUS_EPILOG, formatter_class=_DefaultsAndEnvironment)
    add_status_arguments(status)

    completion = sub.add_parser(
        "completion", help="print the shell completion script",
        description="Prints the completion script of album-operator and kubectl-albumops.",
        epilog=COMPLETION_EPILOG, formatter_class=_DefaultsAndEnvironment)
    completion.add_argument("shell", choices=["bash", "zsh", "fish"])
    return parser


LOCAL_CLUSTER_ACTIONS = """actions:
  build   build (or find in the cache) kube-apiserver, etcd, kubectl, helm and promtool; print
          their paths
  up      start the cluster NAME (etcd + kube-apiserver on free loopback ports) and print
          the export line of its kubeconfig
  env     print the export lines (KUBECONFIG, PATH with its kubectl) of a running cluster
  status  print where a running cluster serves and its kubeconfig
  down    stop the cluster and remove its state"""

COMPLETION_EPILOG = """install it once:
  bash:  album-operator completion bash >> ~/.bashrc
  zsh:   album-operator completion zsh >> ~/.zshrc
  fish:  album-operator completion fish > ~/.config/fish/completions/album-operator.fish"""

COMPLETED_COMMANDS = ("album-operator", "kubectl-albumops")


def _completion(shell: str) -> int:
    from argcomplete.shell_integration import shellcode

    print(shellcode(list(COMPLETED_COMMANDS), shell=shell))
    return 0


def _plugin_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl albumops",
                                     description="The albumops.io operator's kubectl plugin.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="a resource's story on one screen",
                            epilog=STATUS_EPILOG, formatter_class=_DefaultsAndEnvironment)
    add_status_arguments(status)
    return parser


def kubectl_plugin(argv: Sequence[str] | None = None) -> int:
    """``kubectl albumops status ...``: kubectl runs ``kubectl-albumops`` from the PATH."""
    parser = _plugin_parser()
    argcomplete.autocomplete(parser)
    return run_status(parser.parse_args(argv))


def _config_from(args: argparse.Namespace) -> OperatorConfig:
    return OperatorConfig(
        namespaces=tuple(args.namespace),
        qdrant_secret=args.qdrant_secret,
        qdrant_url=os.environ.get("QDRANT_URL") or None,
        qdrant_api_key=os.environ.get("QDRANT_API_KEY") or None,
        qdrant_peer_urls=os.environ.get("QDRANT_PEER_URLS") or None,
        qdrant_grpc_port=os.environ.get("QDRANT_GRPC_PORT") or None,
        embedded_path=args.embedded_path,
        resync_seconds=args.resync_seconds,
        deletion_grace_seconds=args.deletion_grace_seconds,
        health_port=args.health_port,
        metrics_port=args.metrics_port,
        snapshot_port=args.snapshot_port,
        snapshot_dir=args.snapshot_dir,
        snapshot_tls_secret=args.snapshot_tls_secret,
        peering=args.peering,
        priority=peering_priority(args.priority, socket.gethostname()),
        peering_lifetime_seconds=args.peering_lifetime,
    )


class DeveloperToolingMissing(Exception):
    """A developer command ran where ``album_operator_dev`` (or a dev extra) is not installed."""


def _missing(command: str, error: ModuleNotFoundError) -> DeveloperToolingMissing:
    """The developer tooling (``album_operator_dev`` and the ``dev`` extra) is not installed:
    the operator image carries only the operator."""
    return DeveloperToolingMissing(
        f"album-operator: '{command}' is a developer command and {error.name} is not "
        "installed (the operator image leaves it out); from a source checkout: "
        "pip install -e '.[dev]'")


def _local_cluster(action: str, name: str) -> int:
    try:
        from album_operator_dev.localcluster import build, cluster
    except ModuleNotFoundError as error:
        raise _missing("local-cluster", error) from None

    if action == "build":
        tools = {**build.ensure_control_plane_binaries(), "helm": build.build(build.HELM),
                 "promtool": build.build(build.PROMTOOL)}
        for tool, path in tools.items():
            print(f"{tool}: {path}")
        return 0
    if action == "up":
        state = cluster.up(name)
        print(f"export KUBECONFIG={state.kubeconfig}")
        print(f"# kubectl: {state.kubectl}")
        return 0
    if action == "down":
        return 0 if cluster.down(name) else 1
    recorded = cluster.read_state(name)
    if recorded is None:
        print(f"no cluster '{name}'; run: album-operator local-cluster up", file=sys.stderr)
        return 1
    if action == "env":
        print(f"export KUBECONFIG={recorded.kubeconfig}")
        print(f"export PATH={Path(recorded.kubectl).parent}:$PATH")
    else:
        print(f"cluster '{name}': {recorded.server_url} (kubeconfig {recorded.kubeconfig})")
    return 0


def _install_crds() -> int:
    from album_operator.adapters.crdinstall import install_crds
    from album_operator.adapters.kube import NoKubeConfiguration, load_api_client

    try:
        api_client = load_api_client()
    except NoKubeConfiguration as exc:
        print(f"album-operator: {exc}", file=sys.stderr)
        return 2
    for name in install_crds(api_client):
        print(f"established: {name}")
    return 0


def _run(args: argparse.Namespace) -> int:
    """``run``: problems found before the operator starts end it with one line, no traceback."""
    from album_operator.adapters.kube import NoKubeConfiguration, SecretUnavailable
    from album_operator.adapters.paths import PathNotWritable
    from album_operator.adapters.preflight import CrdsMissing
    from album_operator.runner import EmbeddedPathInUse, run_forever

    for flag, value in (("--qdrant-secret", args.qdrant_secret),
                        ("--snapshot-tls-secret", args.snapshot_tls_secret)):
        if value and not _namespaced_name(value):
            print(f"album-operator: {flag} {value!r}: expected NAMESPACE/NAME", file=sys.stderr)
            return 2
    config = _config_from(args)
    try:
        return run_forever(config, verbose=args.verbose)
    except (PathNotWritable, NoKubeConfiguration, CrdsMissing) as exc:
        print(f"album-operator: {exc}", file=sys.stderr)
        return 2
    except SecretUnavailable as exc:
        print(f"album-operator: {exc}; {SECRET_FIX}", file=sys.stderr)
        return 2
    except EmbeddedPathInUse as exc:
        print(f"album-operator: {exc}", file=sys.stderr)
        return 1


SECRET_FIX = ("the Secret must be in the named namespace with key url (and apiKey, ca.crt if "
              "needed), readable by the operator's ServiceAccount (the chart grants "
              "qdrant.existingSecret and rbac.extraSecretNames)")


def _namespaced_name(value: str) -> bool:
    namespace, slash, name = value.partition("/")
    return bool(namespace and slash and name and "/" not in name)


def _crds(action: str, repo: str | None) -> int:
    if action == "install":  # a runtime command: the image installs its own CRDs
        return _install_crds()
    try:
        from album_operator_dev import crdfiles
    except ModuleNotFoundError as error:
        raise _missing(f"crds {action}", error) from None
    try:
        root = crdfiles.find_checkout(Path(repo or "."))
    except crdfiles.NotACheckout as exc:
        print(f"album-operator: {exc}", file=sys.stderr)
        return 2
    if action == "generate":
        for path in crdfiles.write(root):
            print(f"wrote {path}")
        return 0
    problems = crdfiles.stale(root)
    for problem in problems:
        print(f"stale: {problem} (run: album-operator crds generate)", file=sys.stderr)
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    if args.command == "status":
        return run_status(args)
    if args.command == "completion":
        return _completion(args.shell)
    try:
        if args.command == "local-cluster":
            return _local_cluster(args.action, args.name)
        if args.command == "crds":
            return _crds(args.action, args.repo)
        if args.command == "demo":
            try:
                from album_operator_dev.demo import DemoQdrant, run_demo
            except ModuleNotFoundError as error:
                raise _missing("demo", error) from None
            return run_demo(keep=args.keep, qdrant=DemoQdrant(
                binary=args.qdrant_bin, url=args.qdrant_url,
                api_key=os.environ.get("QDRANT_API_KEY") or None))
    except DeveloperToolingMissing as missing:
        print(missing, file=sys.stderr)
        return 2
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
