"""``album-operator status`` (and ``kubectl albumops status``): a resource's story on one
screen, or every resource of a namespace in a table."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import Any

STATUS_EPILOG = """examples:
  album-operator status -n photos                       every resource in photos
  album-operator status -n photos mastermerge/master    one MasterMerge on one screen
  kubectl albumops status -n photos mm/master           the same, as a kubectl plugin

Qdrant's side is read from the resource's own spec.connection Secret, else from
--qdrant-secret, else from QDRANT_URL (API key: QDRANT_API_KEY); with none of them the
operator's embedded engine is assumed and only the figures in status are shown."""


def add_status_arguments(status: argparse.ArgumentParser) -> None:
    target = status.add_argument(
        "target", nargs="?", metavar="KIND/NAME",
        help="e.g. mastermerge/album-master, mm/album-master, ac/album-2017, "
        "esp/edge; omitted: a table of every resource")
    target.completer = complete_target  # type: ignore[attr-defined]
    scope = status.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", default=None,
                       help="namespace (default: the kubeconfig context's, else default)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="the table of every namespace")
    status.add_argument("--qdrant-url", default=os.environ.get("QDRANT_URL"),
                        help="the Qdrant server to look into [env QDRANT_URL]")
    status.add_argument("--qdrant-secret", default=os.environ.get("ALBUMOPS_QDRANT_SECRET"),
                        help="NAMESPACE/NAME of the operator's Qdrant Secret "
                        "[env ALBUMOPS_QDRANT_SECRET]")


def run_status(args: argparse.Namespace) -> int:
    from album_operator.adapters.kube import NoKubeConfiguration, SecretUnavailable
    from album_operator.adapters.statusread import StatusReadError
    from album_operator.core.statusview import UnknownKind

    try:
        print("\n".join(_screen(args)))
    except (NoKubeConfiguration, StatusReadError, UnknownKind, SecretUnavailable) as exc:
        print(f"album-operator: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, NoKubeConfiguration | UnknownKind) else 1
    return 0


def _screen(args: argparse.Namespace) -> list[str]:
    from album_operator.adapters.kube import current_namespace, load_api_client
    from album_operator.adapters.statusread import list_resources
    from album_operator.core import statusview

    api_client = load_api_client()
    namespace = None if args.all_namespaces else (args.namespace or current_namespace())
    now = dt.datetime.now(dt.UTC)
    if not args.target:
        rows = list_resources(api_client, namespace)
        return statusview.overview(rows, now, with_namespace=namespace is None)
    info, name = statusview.parse_target(args.target)
    return _story(api_client, info, namespace or "default", name, args, now)


def _story(api_client: Any, info: Any, namespace: str, name: str, args: argparse.Namespace,
           now: dt.datetime) -> list[str]:
    from album_operator.adapters.qdrant.facts import read_facts
    from album_operator.adapters.statusread import connection_for, read_events, read_resource
    from album_operator.core import statusview

    body = read_resource(api_client, info, namespace, name)
    events = read_events(api_client, info, namespace, name)
    settings = connection_for(api_client, body, _default_connection(api_client, args))
    facts = read_facts(settings, statusview.qdrant_question(info, body))
    return statusview.story(info, body, events, facts, now)


def _default_connection(api_client: Any, args: argparse.Namespace) -> Any:
    import asyncio

    from album_operator.adapters.kube import KubeApi
    from album_operator.adapters.qdrant.connection import ConnectionSettings

    if args.qdrant_secret:
        namespace, _, name = args.qdrant_secret.partition("/")
        return asyncio.run(KubeApi(api_client).connection_from_secret(namespace, name))
    if args.qdrant_url:
        return ConnectionSettings(url=args.qdrant_url,
                                  api_key=os.environ.get("QDRANT_API_KEY") or None)
    return ConnectionSettings(embedded_path="(the operator's)")


def complete_target(prefix: str, parsed_args: argparse.Namespace, **_: object) -> list[str]:
    """Shell completion of KIND/NAME: the kinds, then the names the cluster has."""
    from album_operator.core.statusview import resolve_kind
    from album_operator.models.kinds import ALL_KINDS

    kind, slash, _name = prefix.partition("/")
    if not slash:
        return [f"{info.singular}/" for info in ALL_KINDS]
    try:
        info = resolve_kind(kind)
        return [f"{kind}/{name}" for name in _names(info.plural, parsed_args)]
    except Exception:  # UnknownKind, no cluster: completion never fails loudly
        return []


def _names(plural: str, parsed_args: argparse.Namespace) -> list[str]:
    from album_operator.adapters.kube import current_namespace, load_api_client
    from album_operator.adapters.statusread import list_resources

    namespace = getattr(parsed_args, "namespace", None) or current_namespace()
    return [body["metadata"]["name"] for info, body in
            list_resources(load_api_client(), namespace) if info.plural == plural]
