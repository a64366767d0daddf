"""``state.json``: what a device directory holds and where it comes from.

``DeviceState`` fields: ``endpoint``, ``namespace``, ``policy``, ``shard``, ``collection``,
``vectors`` (the shard's layout from ``GET /snapshots``), ``snapshot`` (the shard version:
the name of the snapshot the mirror was last brought to), ``snapshot_sha256``,
``initialized_at``, ``last_pull_at`` (ISO 8601 UTC), ``last_pull`` (``"updated"``,
``"unchanged"`` or the error that stopped it). ``load_state(path)`` gives None when the file
is absent; ``save_state(path, state)`` replaces it atomically.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from album_operator.edge.fsutil import atomic_write_text
from album_operator.edge.points import VectorSpec, layout_from_json

STATE_VERSION = 1


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class DeviceState:
    endpoint: str | None = None
    namespace: str | None = None
    policy: str | None = None
    shard: int = 0
    collection: str | None = None
    vectors: dict[str, VectorSpec] = field(default_factory=dict)
    snapshot: str | None = None
    snapshot_sha256: str | None = None
    initialized_at: str | None = None
    last_pull_at: str | None = None
    last_pull: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["vectors"] = {name: asdict(spec) for name, spec in self.vectors.items()}
        data["version"] = STATE_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceState:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        known["vectors"] = layout_from_json(data["vectors"]) if data.get("vectors") else {}
        return cls(**known)


def load_state(path: Path) -> DeviceState | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return DeviceState.from_json(json.loads(text))


def save_state(path: Path, state: DeviceState) -> None:
    atomic_write_text(path, json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n")
