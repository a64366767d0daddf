"""What each Qdrant engine honours, so planners never diff settings an engine ignores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EngineKind = Literal["embedded", "server"]


@dataclass(frozen=True)
class EngineCapabilities:
    kind: EngineKind
    applies_hnsw: bool
    applies_quantization: bool
    applies_optimizers: bool
    applies_payload_indexes: bool
    applies_sharding: bool
    applies_on_disk: bool
    supports_snapshots: bool
    parallel_writes: bool

    def ignored_settings(self) -> list[str]:
        """Spec fields this engine accepts but does not apply."""
        ignored = []
        if not self.applies_hnsw:
            ignored.append("hnsw")
        if not self.applies_quantization:
            ignored.append("quantization")
        if not self.applies_optimizers:
            ignored.append("optimizers")
        if not self.applies_payload_indexes:
            ignored.append("payloadIndexes")
        if not self.applies_sharding:
            ignored += ["shardNumber", "replicationFactor", "writeConsistencyFactor"]
        if not self.applies_on_disk:
            ignored += ["onDisk", "onDiskPayload"]
        return ignored


# qdrant-client's local mode: stores points and metadata, ignores index and layout settings.
EMBEDDED = EngineCapabilities(
    kind="embedded",
    applies_hnsw=False,
    applies_quantization=False,
    applies_optimizers=False,
    applies_payload_indexes=False,
    applies_sharding=False,
    applies_on_disk=False,
    supports_snapshots=False,
    parallel_writes=False,
)

SERVER = EngineCapabilities(
    kind="server",
    applies_hnsw=True,
    applies_quantization=True,
    applies_optimizers=True,
    applies_payload_indexes=True,
    applies_sharding=True,
    applies_on_disk=True,
    supports_snapshots=True,
    parallel_writes=True,
)
