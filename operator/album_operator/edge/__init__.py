"""The device side of edge sync: ``album-edge`` and the library behind it.

    from album_operator.edge import EdgeDevice, EndpointClient

    client = EndpointClient("http://operator:8090", "albums", "phones", token)
    with EdgeDevice("/var/lib/album-edge", client, shard=0) as device:
        device.init()                       # latest full snapshot -> mirror; local shard
        device.upsert([{"id": 1, "vector": [...], "payload": {}}])
        device.push(batch_size=64)          # -> PushResult
        device.pull()                       # -> PullResult (changed=False on 304)
        device.query([...], limit=10)       # -> [Hit], local shadows mirror
        device.status()                     # -> DeviceStatus

Modules: ``device`` (EdgeDevice), ``client`` (EndpointClient), ``queue`` (UploadQueue),
``pushing`` (drain, PushResult), ``backoff`` (Backoff), ``points`` (EdgePoint, Hit, pure
helpers), ``shards`` (qdrant-edge-py steps), ``state`` (state.json), ``fsutil`` (renames,
sparse copies, locks), ``errors``, ``cli``.
"""

from album_operator.edge.backoff import Backoff
from album_operator.edge.client import EndpointClient, Listing, PushAnswer
from album_operator.edge.device import (
    DeviceStatus,
    EdgeDevice,
    InitResult,
    PullResult,
)
from album_operator.edge.errors import (
    BatchTooLarge,
    ChecksumMismatch,
    DeviceError,
    EdgeError,
    EndpointError,
    RetryableError,
)
from album_operator.edge.points import EdgePoint, Hit, VectorSpec
from album_operator.edge.pushing import PushResult, drain
from album_operator.edge.queue import DeadLetter, QueuedPoint, QueueStats, UploadQueue

__all__ = [
    "Backoff", "BatchTooLarge", "ChecksumMismatch", "DeadLetter", "DeviceError",
    "DeviceStatus", "EdgeDevice", "EdgeError", "EdgePoint", "EndpointClient",
    "EndpointError", "Hit", "InitResult", "Listing", "PullResult", "PushAnswer",
    "PushResult", "QueueStats", "QueuedPoint", "RetryableError", "UploadQueue", "VectorSpec",
    "drain",
]
