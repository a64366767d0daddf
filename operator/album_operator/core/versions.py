"""Which Qdrant server versions the operator supports, and what to say about the others."""

from __future__ import annotations

import re

SUPPORTED_FROM = (1, 18, 0)
"""The oldest server release the operator is tested against (1.18.3 in CI)."""
SUPPORTED_BEFORE = (1, 21, 0)
"""The first release past the newest one qdrant-client 1.20's API is known to match."""

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int, int] | None:
    found = _VERSION.match(text.strip())
    if found is None:
        return None
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


def _dotted(version: tuple[int, int, int]) -> str:
    return ".".join(str(part) for part in version)


def supported_range() -> str:
    return f">= {_dotted(SUPPORTED_FROM)}, < {_dotted(SUPPORTED_BEFORE)}"


def version_warning(reported: str | None) -> str | None:
    """None for a supported server; otherwise one line that says what is wrong and what to do."""
    version = parse_version(reported or "")
    if version is None:
        return (f"the Qdrant server did not report a version it could parse ({reported!r}); "
                f"supported: {supported_range()}")
    if SUPPORTED_FROM <= version < SUPPORTED_BEFORE:
        return None
    side = "older" if version < SUPPORTED_FROM else "newer"
    return (f"Qdrant server {_dotted(version)} is {side} than this operator supports "
            f"({supported_range()}); it keeps running, but settings or snapshot calls may "
            f"fail: {'upgrade the server' if side == 'older' else 'upgrade the operator'}")
