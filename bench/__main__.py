"""Runs the benchmarks; each prints its own baseline from the same run, ratios and memory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from album_operator.config import OperatorConfig
from bench import collections, edge, edge_load, edge_queue, idle, merge
from bench import server as bench_server


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    kinds = ["collections", "merge", "edge", "edge_queue", "edge_load", "idle"]
    # no choices=: Python 3.11's argparse checks an empty ``*`` positional against them and
    # refuses a bare `python -m bench`
    parser.add_argument("which", nargs="*", metavar="{" + ",".join(kinds) + "}",
                        help="benchmarks (default: all)")
    parser.add_argument("--engines", nargs="+", default=list(bench_server.ENGINES),
                        choices=bench_server.ENGINES,
                        help="halves to run: embedded, server (default: both; the server "
                        "half needs QDRANT_BIN, qdrant on the PATH, or QDRANT_URL)")
    parser.add_argument("--count", type=int, default=200,
                        help="AlbumCollections to apply; for idle, resources of all kinds")
    parser.add_argument("--idle-seconds", type=float, default=300.0,
                        help="how long to watch the idle operator (collections and idle)")
    parser.add_argument("--resync-seconds", type=float, default=OperatorConfig.resync_seconds,
                        help="operator resync interval in the collections benchmark "
                        "(default: the operator's own)")
    parser.add_argument("--server-storage", choices=bench_server.STORAGES, default="memory",
                        help="where the collections benchmark's started server keeps its "
                        "data (default: memory, /dev/shm; a VM disk's fsync latency varies "
                        "threefold from run to run)")
    parser.add_argument("--merge-sizes", type=int, nargs="+", default=[600, 2400],
                        help="points per source year for the merge benchmark")
    parser.add_argument("--merge-server-sizes", type=int, nargs="+", default=[2000],
                        help="points per source year for the merge benchmark's server half")
    parser.add_argument("--merge-peers", type=int, default=1,
                        help="the merge benchmark's server half on a cluster of this many "
                             "peers (two shards per peer; the master inherits them)")
    parser.add_argument("--merge-batch", type=int, default=256,
                        help="MasterMerge copy batch size")
    parser.add_argument("--merge-parallelism", type=int, default=4,
                        help="MasterMerge upsert streams on a server")
    parser.add_argument("--edge-sizes", type=int, nargs="+", default=[5000, 20000],
                        help="points in the published collection for the edge benchmark")
    parser.add_argument("--queue-points", type=int, default=2000,
                        help="points for the device upload queue benchmark")
    parser.add_argument("--queue-batch", type=int, default=256,
                        help="points per enqueue transaction and per upload request")
    parser.add_argument("--load-clients", type=int, default=200,
                        help="concurrent clients of the edge endpoint load benchmark")
    parser.add_argument("--load-seconds", type=float, default=30.0,
                        help="how long the edge endpoint load benchmark sends requests")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()
    unknown = [name for name in args.which if name not in kinds]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(kinds)}")
    args.which = args.which or kinds
    engines = tuple(args.engines)
    results: dict[str, object] = {"machine": bench_server.header(args.engines)}
    if "collections" in args.which:
        results["collections"] = collections.run(collections.Settings(
            count=args.count, idle_seconds=args.idle_seconds,
            resync_seconds=args.resync_seconds, server_storage=args.server_storage), engines)
    if "merge" in args.which:
        results["merge"] = merge.run(args.merge_sizes, args.merge_batch,
                                     args.merge_parallelism, args.merge_server_sizes, engines,
                                     args.merge_peers)
    if "edge" in args.which:
        results["edge"] = edge.run(args.edge_sizes, engines)
    if "edge_queue" in args.which and "embedded" in engines:  # it has no server half
        results["edge_queue"] = edge_queue.run(args.queue_points, args.queue_batch)
    if "edge_load" in args.which and "embedded" in engines:  # the endpoint's own process
        results["edge_load"] = edge_load.run(args.load_clients, args.load_seconds)
    if "idle" in args.which and "embedded" in engines:  # the criterion is on the default engine
        results["idle"] = idle.run(idle.Settings(count=args.count,
                                                 idle_seconds=args.idle_seconds))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
