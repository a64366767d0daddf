"""qdrant-album-operator: a kopf operator for Qdrant album collections.

``album_operator.__version__`` is the installed distribution's version (pyproject.toml's, the
one source of it), looked up when first asked for so that importing the package reads nothing.
"""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "qdrant-album-operator"


def installed_version() -> str:
    """The version pip installed, or ``unknown`` when the package runs from a bare checkout."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return installed_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
