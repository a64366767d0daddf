"""The ``album-edge`` command: the device side of edge sync.

Its commands are specified in the project's issues (init, pull, upsert, push, query, status)
and arrive with the EdgeSnapshotPolicy snapshot endpoint they talk to. Until then each one
says so and exits with status 2, rather than pretending to work.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

COMMANDS = {
    "init": "download the latest full snapshot of the device's shard and load it",
    "pull": "apply a partial snapshot for the shard's manifest",
    "upsert": "write points to the local shard and the durable upload queue",
    "push": "drain the upload queue to the operator's endpoint",
    "query": "search the local shard",
    "status": "shard version, last pull, queue depth, dead letters",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="album-edge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    args = parser.parse_args(argv)
    print(f"album-edge {args.command}: not available in this version; it needs the "
          "EdgeSnapshotPolicy snapshot endpoint, which is not built yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
