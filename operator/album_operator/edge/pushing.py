"""Draining the upload queue to ``POST /points``: at-least-once, batched, with backoff.

``drain(queue, client, batch_size=64, watch=False, max_retries=5, ...) -> PushResult``.
Each round peeks the oldest ``batch_size`` rows, sends them, and settles the answer in one
queue transaction (accepted rows deleted, rejected rows to the dead letters). A crash
between the request and the settlement re-sends the batch next time: the endpoint upserts
by ID, so the re-send is harmless.

- Connection errors, timeouts, ``408``/``429``/``5xx`` (``503``: Qdrant unreachable): the
  batch stays queued; wait ``Backoff.delay(failures - 1)`` (exponential, full jitter) and try
  again; after ``max_retries`` consecutive failures stop with ``PushResult.error`` set
  (``max_retries=None``: never stop, the ``--watch`` default). An answer that settles no row
  counts as a failure too.
- ``413``: halve the batch (kept for later rounds); at one point it is an EndpointError.
- Other ``4xx`` (``401``, ``403``, ``409``): raised as EndpointError; nothing is lost.
- ``watch=True``: when the queue is empty, sleep ``poll_interval`` and look again until
  ``stop()`` is true or the process is interrupted.

``sleep`` and ``rand`` are injectable for tests; :func:`shrink_batch` is the pure 413 rule.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from album_operator.edge.backoff import Backoff
from album_operator.edge.client import EndpointClient
from album_operator.edge.errors import BatchTooLarge, EndpointError, RetryableError
from album_operator.edge.queue import UploadQueue


@dataclass(frozen=True)
class PushResult:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    batches: int = 0
    retries: int = 0
    batch_size: int = 0
    remaining: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"sent": self.sent, "accepted": self.accepted, "rejected": self.rejected,
                "batches": self.batches, "retries": self.retries,
                "batchSize": self.batch_size, "remaining": self.remaining,
                "error": self.error}


def shrink_batch(batch_size: int) -> int | None:
    """The batch size after a ``413``; None when a single point is already too many."""
    return None if batch_size <= 1 else max(1, batch_size // 2)


def drain(queue: UploadQueue, client: EndpointClient, *, batch_size: int = 64,
          watch: bool = False, max_retries: int | None = 5, backoff: Backoff | None = None,
          poll_interval: float = 2.0, sleep: Callable[[float], None] = time.sleep,
          rand: Callable[[], float] = random.random,
          stop: Callable[[], bool] = lambda: False) -> PushResult:
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    backoff = backoff or Backoff()
    size = batch_size
    totals = {"sent": 0, "accepted": 0, "rejected": 0, "batches": 0, "retries": 0}
    failures = 0
    error: str | None = None
    while not stop():
        batch = queue.peek(size)
        if not batch:
            if not watch:
                break
            sleep(poll_interval)
            continue
        totals["sent"] += len(batch)
        try:
            answer = client.push_points([row.body for row in batch])
        except BatchTooLarge as too_large:
            smaller = shrink_batch(size)
            if smaller is None:
                raise EndpointError(f"{too_large} (even one point is too large)",
                                    too_large.status) from None
            size = smaller
            continue
        except RetryableError as failed:
            queue.record_failure(batch)
            failure = str(failed)
        else:
            settled = queue.settle(batch, answer.accepted, answer.rejected)
            totals["accepted"] += settled.accepted
            totals["rejected"] += settled.rejected
            totals["batches"] += 1
            if settled.accepted or settled.rejected:
                failures = 0
                continue
            failure = f"POST /points answered for none of the {len(batch)} points sent"
        failures += 1
        if max_retries is not None and failures > max_retries:
            error = f"gave up after {failures} failed attempts: {failure}"
            break
        totals["retries"] += 1
        sleep(backoff.delay(failures - 1, rand))
    return PushResult(**totals, batch_size=size, remaining=queue.depth(), error=error)
