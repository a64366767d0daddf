"""Exceptions of the edge device library, and the redaction of the device token.

Every exception the library raises is an :class:`EdgeError`; its text never holds the token
(:func:`redact` replaces it with ``***`` before the message is built).

- :class:`EndpointError`: the endpoint answered with an error that retrying will not fix
  (``401``, ``403``, ``404``, ``409``, another ``4xx``, or a body that breaks the protocol).
- :class:`RetryableError`: the endpoint could not be reached, timed out, or answered ``5xx``;
  try again later.
- :class:`BatchTooLarge`: ``413`` from ``POST /points``; send fewer points per request.
- :class:`ChecksumMismatch`: a downloaded snapshot's sha256 differs from its header.
- :class:`DeviceError`: the device directory is missing something or is in another state
  than the operation needs (not initialised, another policy's directory, a bad point).
"""

from __future__ import annotations

REDACTED = "***"


def redact(text: str, token: str | None) -> str:
    """``text`` with every occurrence of ``token`` replaced by ``***``."""
    if token:
        return text.replace(token, REDACTED)
    return text


class EdgeError(Exception):
    """Base class of the library's errors."""


class DeviceError(EdgeError):
    """The device directory cannot serve the operation as it stands."""


class EndpointError(EdgeError):
    """A permanent error answer from the endpoint."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableError(EdgeError):
    """The endpoint is unreachable or temporarily failing (connection error, timeout, 5xx)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BatchTooLarge(EndpointError):
    """``413``: the batch exceeds the policy's ``spec.upload.maxBatchSize``."""


class ChecksumMismatch(EdgeError):
    """A downloaded file's sha256 is not the one its ``X-Snapshot-Sha256`` header announced."""
