"""Desired and observed Qdrant collections as plain values, shared by every planner."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from album_operator.core.engine import EngineCapabilities
from album_operator.models.album_collection import AlbumCollectionSpec
from album_operator.models.collection_settings import (
    HnswConfig,
    OptimizersConfig,
    PayloadIndex,
    QuantizationConfig,
    SparseVectorParams,
    VectorParams,
)

UNNAMED = ""
OWNER_UID = "albumops.io/owner-uid"
OWNER_REF = "albumops.io/owner"
OWNER_KIND = "albumops.io/owner-kind"


@dataclass(frozen=True)
class Owner:
    kind: str
    namespace: str
    name: str
    uid: str

    def metadata(self) -> dict[str, str]:
        return {OWNER_KIND: self.kind, OWNER_REF: f"{self.namespace}/{self.name}",
                OWNER_UID: self.uid}

    def describe(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class DesiredCollection:
    """A collection as a spec wants it. ``vectors`` uses "" for the unnamed vector."""

    name: str
    vectors: Mapping[str, VectorParams]
    sparse_vectors: Mapping[str, SparseVectorParams] = field(default_factory=dict)
    hnsw: HnswConfig | None = None
    quantization: QuantizationConfig | None = None
    optimizers: OptimizersConfig | None = None
    on_disk_payload: bool | None = None
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    payload_indexes: tuple[PayloadIndex, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ObservedVector:
    size: int
    distance: str
    datatype: str | None = None
    on_disk: bool | None = None
    multivector: bool = False
    hnsw: Mapping[str, Any] = field(default_factory=dict)
    quantization: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ObservedCollection:
    """What Qdrant reports, in the spec's camelCase vocabulary. None means not reported."""

    name: str
    vectors: Mapping[str, ObservedVector]
    sparse_vectors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    hnsw: Mapping[str, Any] = field(default_factory=dict)
    optimizers: Mapping[str, Any] = field(default_factory=dict)
    quantization: Mapping[str, Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    payload_indexes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    status: str = "green"
    points_count: int = 0
    indexed_vectors_count: int = 0
    segments_count: int = 0

    def owner_uid(self) -> str | None:
        value = self.metadata.get(OWNER_UID)
        return str(value) if value else None

    def owner_ref(self) -> str | None:
        value = self.metadata.get(OWNER_REF)
        return str(value) if value else None


def desired_from_spec(spec: AlbumCollectionSpec, owner: Owner) -> DesiredCollection:
    vectors: Mapping[str, VectorParams] = (
        {UNNAMED: spec.vectors} if spec.vectors is not None else dict(spec.named_vectors or {}))
    return DesiredCollection(
        name=spec.resolved_collection_name(),
        vectors=vectors,
        sparse_vectors=dict(spec.sparse_vectors),
        hnsw=spec.hnsw,
        quantization=spec.quantization,
        optimizers=spec.optimizers,
        on_disk_payload=spec.on_disk_payload,
        shard_number=spec.shard_number,
        replication_factor=spec.replication_factor,
        write_consistency_factor=spec.write_consistency_factor,
        payload_indexes=tuple(spec.payload_indexes),
        metadata=owner.metadata(),
    )


def settings_dict(model: Any) -> dict[str, Any]:
    """A settings model as its set fields, camelCase, the way diffs and status name them."""
    if model is None:
        return {}
    dumped: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True)
    return dumped


def index_options(index: PayloadIndex) -> dict[str, Any]:
    return {k: v for k, v in settings_dict(index).items() if k not in {"field", "type"}}


def ignored_settings(desired: DesiredCollection, caps: EngineCapabilities) -> list[str]:
    """Settings this spec sets that the engine accepts but does not apply."""
    vectors = desired.vectors.values()
    set_in_spec = {
        "hnsw": desired.hnsw is not None or any(v.hnsw for v in vectors),
        "quantization": desired.quantization is not None or any(v.quantization for v in vectors),
        "optimizers": desired.optimizers is not None,
        "payloadIndexes": bool(desired.payload_indexes),
        "shardNumber": (desired.shard_number or 1) > 1,
        "replicationFactor": (desired.replication_factor or 1) > 1,
        "writeConsistencyFactor": (desired.write_consistency_factor or 1) > 1,
        "onDisk": any(v.on_disk is not None for v in vectors),
        "onDiskPayload": desired.on_disk_payload is not None,
    }
    return [name for name in caps.ignored_settings() if set_in_spec.get(name)]
