"""The ``album-edge`` command: the device side of edge sync (``docs/edge-protocol.md``).

Every command prints JSON on stdout. Common options (after the command): ``--dir`` (default
``~/.local/share/album-edge``), ``--endpoint URL``, ``--namespace``, ``--policy``,
``--shard`` (default 0), and the token from ``--token``, ``--token-file`` or the environment
variable ``ALBUM_EDGE_TOKEN``. After ``init`` the endpoint, namespace and policy are read
from the directory's ``state.json`` when not given. The token is never printed.

    album-edge init   --dir D --endpoint http://op:8090 --namespace ns --policy p --token-file t
    album-edge pull   --dir D --token-file t
    album-edge upsert --dir D points.jsonl          # one {"id","vector","payload"} a line
    album-edge push   --dir D --token-file t --batch-size 128 [--watch]
    album-edge query  --dir D --vector '[0.1, ...]' --limit 5
    album-edge status --dir D
    album-edge dead-letters --dir D [--limit 20]    # refused points and the reasons

Exit status: 0 done; 1 a permanent error (bad input, 4xx, checksum, engine); 2 usage;
3 the endpoint is unreachable for now (push gave up with points still queued, or a
download failed on the network): run again later; 4 push finished, but the endpoint refused
some points, which are now dead letters (list them with ``dead-letters``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from album_operator.edge.client import EndpointClient
from album_operator.edge.device import DEFAULT_DIR, EdgeDevice
from album_operator.edge.errors import EdgeError, RetryableError, redact
from album_operator.edge.points import EdgePoint, parse_jsonl
from album_operator.edge.queue import DeadLetter
from album_operator.edge.state import load_state

TOKEN_ENV = "ALBUM_EDGE_TOKEN"
EXIT_ERROR, EXIT_USAGE, EXIT_RETRY_LATER, EXIT_DEAD_LETTERED = 1, 2, 3, 4
COMMANDS = {
    "init": "download the latest full snapshot of the device's shard and load it",
    "pull": "apply a partial snapshot for the shard's manifest",
    "upsert": "write points to the local shard and the durable upload queue",
    "push": "drain the upload queue to the operator's endpoint",
    "query": "search the mirror and local shards together",
    "status": "shard version, last pull, queue depth, dead letters",
    "dead-letters": "the points the endpoint refused, oldest first, with its reasons",
}


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="device data directory")
    common.add_argument("--endpoint", help="the operator's snapshot endpoint, http(s)://host:port")
    common.add_argument("--namespace", help="the EdgeSnapshotPolicy's namespace")
    common.add_argument("--policy", help="the EdgeSnapshotPolicy's name")
    common.add_argument("--shard", type=int, default=0, help="shard ID (default 0)")
    common.add_argument("--token", help=f"device token (or --token-file, or ${TOKEN_ENV})")
    common.add_argument("--token-file", type=Path, help="file holding the device token")
    common.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for data from the endpoint (default 60)")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="album-edge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    parents = [_common()]
    for name, help_text in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text, parents=parents)
        if name == "upsert":
            command.add_argument("file", help="JSON lines of points, or - for stdin")
            command.add_argument("--chunk", type=int, default=1000,
                                 help="points per queue transaction and shard update")
        elif name == "push":
            command.add_argument("--batch-size", type=int, default=64,
                                 help="points per POST /points (halved on 413)")
            command.add_argument("--watch", action="store_true",
                                 help="keep draining until interrupted")
            command.add_argument("--poll-interval", type=float, default=2.0,
                                 help="seconds between looks at an empty queue (--watch)")
            command.add_argument("--max-retries", type=int, default=None,
                                 help="consecutive failures before giving up "
                                      "(default 5; unlimited with --watch)")
        elif name == "query":
            source = command.add_mutually_exclusive_group(required=True)
            source.add_argument("--vector", help="the query vector as a JSON list")
            source.add_argument("--vector-file", type=Path,
                                help="a JSON file holding the list (or {\"vector\": [...]})")
            command.add_argument("--limit", type=int, default=10)
            command.add_argument("--using", help="vector name when the shard has several")
        elif name == "dead-letters":
            command.add_argument("--limit", type=int, default=None,
                                 help="at most this many (default: all)")
    return parser


def _token(args: argparse.Namespace) -> str | None:
    if args.token:
        return str(args.token)
    if args.token_file:
        return args.token_file.read_text(encoding="utf-8").strip() or None
    return os.environ.get(TOKEN_ENV) or None


def _client(args: argparse.Namespace, token: str | None) -> EndpointClient | None:
    state = load_state(Path(args.dir).expanduser() / "state.json")
    endpoint = args.endpoint or (state.endpoint if state else None)
    namespace = args.namespace or (state.namespace if state else None)
    policy = args.policy or (state.policy if state else None)
    if not (endpoint and namespace and policy and token):
        return None
    return EndpointClient(endpoint, namespace, policy, token, timeout=(10.0, args.timeout))


def _chunks(points: Iterable[EdgePoint], size: int) -> Iterator[list[EdgePoint]]:
    chunk: list[EdgePoint] = []
    for point in points:
        chunk.append(point)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _upsert(device: EdgeDevice, args: argparse.Namespace) -> dict[str, Any]:
    written = 0
    stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    try:
        for chunk in _chunks(parse_jsonl(stream), max(1, args.chunk)):
            written += device.upsert(chunk)
    except (ValueError, EdgeError) as error:
        raise EdgeError(f"{error} ({written} points before it were written and queued)"
                        ) from None
    finally:
        if stream is not sys.stdin:
            stream.close()
    return {"upserted": written}


def _query_vector(args: argparse.Namespace) -> list[float]:
    raw: Any = json.loads(args.vector if args.vector is not None
                          else args.vector_file.read_text(encoding="utf-8"))
    if isinstance(raw, dict):
        raw = raw.get("vector")
    if not isinstance(raw, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in raw):
        raise EdgeError("the query vector must be a JSON list of numbers")
    return [float(v) for v in raw]


class _Stopper:
    """First SIGINT/SIGTERM asks the watch loop to stop after the current request."""

    def __init__(self) -> None:
        self.stopped = False

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopped = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopped and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))


def _run(args: argparse.Namespace, token: str | None) -> tuple[int, Any]:
    with EdgeDevice(args.dir, _client(args, token), args.shard) as device:
        if args.command == "init":
            return 0, device.init().to_json()
        if args.command == "pull":
            return 0, device.pull().to_json()
        if args.command == "upsert":
            return 0, _upsert(device, args)
        if args.command == "push":
            stopper = _Stopper()
            if args.watch:
                stopper.install()
            retries = args.max_retries if args.max_retries is not None else (
                None if args.watch else 5)
            result = device.push(args.batch_size, watch=args.watch, max_retries=retries,
                                 poll_interval=args.poll_interval, sleep=stopper.sleep,
                                 stop=lambda: stopper.stopped)
            return _push_exit(result.error, result.rejected), result.to_json()
        if args.command == "query":
            hits = device.query(_query_vector(args), args.limit, args.using)
            return 0, [hit.to_json() for hit in hits]
        if args.command == "dead-letters":
            letters = device.queue.dead_letters(args.limit) if device.queue_path.exists() else []
            return 0, [_dead_letter_json(letter) for letter in letters]
        return 0, device.status().to_json()


def _push_exit(error: str | None, rejected: int) -> int:
    """Points still queued for an outage say "run again later" first; refused points, which
    no rerun will send, say so next."""
    if error:
        return EXIT_RETRY_LATER
    return EXIT_DEAD_LETTERED if rejected else 0


def _dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {"id": letter.id, "reason": letter.reason,
            "failedAt": _utc(letter.failed_at), "enqueuedAt": _utc(letter.enqueued_at)}


def _utc(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    token = None
    try:
        token = _token(args)
        code, output = _run(args, token)
    except RetryableError as error:
        print(f"album-edge {args.command}: {redact(str(error), token)} (try again later)",
              file=sys.stderr)
        return EXIT_RETRY_LATER
    except (EdgeError, OSError, ValueError) as error:
        print(f"album-edge {args.command}: {redact(str(error), token)}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(output, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
