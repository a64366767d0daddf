"""AlbumCollection: one Qdrant collection per album year, kept in sync with its spec."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from album_operator.models.collection_settings import (
    HnswConfig,
    OptimizersConfig,
    PayloadIndex,
    QuantizationConfig,
    SparseVectorParams,
    VectorParams,
    payload_indexes_field,
)
from album_operator.models.common import (
    K8S_NAME_PATTERN,
    QDRANT_NAME_PATTERN,
    CamelModel,
    Condition,
    ConnectionSpec,
    DeletionPolicy,
    cel,
    conditions_field,
    immutable,
    list_map,
    validations,
)

DriftPolicy = Literal["Repair", "Report"]
QdrantHealth = Literal["green", "yellow", "grey", "red"]


class ShareGrant(CamelModel):
    """Lets resources in another namespace use this collection."""

    namespace: str = Field(pattern=K8S_NAME_PATTERN, max_length=63,
                           description="The namespace granted access.")
    access: Literal["Read", "ReadWrite"] = Field(
        default="Read",
        description="Read: its MasterMerges may merge this collection and its "
        "EdgeSnapshotPolicies may publish it. ReadWrite: its EdgeSnapshotPolicies may also "
        "upload device points into it (upload.collection).")


class AlbumCollectionSpec(CamelModel):
    """Desired state of one Qdrant collection."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": validations(
            cel("has(self.vectors) != has(self.namedVectors)",
                "set exactly one of vectors (a single unnamed vector) or namedVectors",
                reason="FieldValueRequired"),
            cel("has(self.vectors) == has(oldSelf.vectors)",
                "cannot switch between vectors and namedVectors", field_path=".vectors"),
            cel("!has(oldSelf.collectionName) || has(self.collectionName)",
                "collectionName cannot be removed once set", field_path=".collectionName"),
            cel("has(oldSelf.collectionName) || !has(self.collectionName) || "
                "(size(self.collectionName) == 10 && self.collectionName.startsWith('album_') "
                "&& self.collectionName.substring(6) == string(self.year))",
                "collectionName cannot be set after creation to anything but the name in use "
                "(album_<year>): the collection would be orphaned",
                field_path=".collectionName"),
            cel("self.writeConsistencyFactor <= self.replicationFactor",
                "writeConsistencyFactor must not exceed replicationFactor",
                field_path=".writeConsistencyFactor"),
        )
    }

    year: int = Field(ge=1900, le=2200, description="Album year this collection holds.",
                      json_schema_extra=immutable("year"))
    collection_name: str | None = Field(
        default=None, pattern=QDRANT_NAME_PATTERN, max_length=255,
        description="Qdrant collection name; defaults to album_<year>. Immutable once set.",
        json_schema_extra=immutable("collectionName"))
    vectors: VectorParams | None = Field(
        default=None, description="A single unnamed dense vector. Exclusive with namedVectors.")
    named_vectors: dict[str, VectorParams] | None = Field(
        default=None,
        description="Named dense vectors (name -> params). Names cannot be added or removed.",
        json_schema_extra={
            "maxProperties": 16,
            **validations(cel("self.all(k, k in oldSelf) && oldSelf.all(k, k in self)",
                              "named vectors cannot be added or removed")),
        })
    sparse_vectors: dict[str, SparseVectorParams] = Field(
        default_factory=dict, description="Sparse vectors (name -> params).",
        json_schema_extra={"maxProperties": 16})
    hnsw: HnswConfig | None = Field(default=None, description="Collection-wide HNSW settings.")
    quantization: QuantizationConfig | None = Field(
        default=None, description="Collection-wide quantization.")
    optimizers: OptimizersConfig | None = Field(default=None,
                                                description="Segment optimizer settings.")
    on_disk_payload: bool | None = Field(default=None,
                                         description="Store payloads on disk.")
    shard_number: int = Field(default=1, ge=1, le=1024, description="Number of shards.",
                              json_schema_extra=immutable("shardNumber"))
    replication_factor: int = Field(default=1, ge=1, le=16,
                                    description="Copies of each shard (server only).")
    write_consistency_factor: int = Field(
        default=1, ge=1, le=16, description="Replicas that must confirm a write (server only).")
    payload_indexes: list[PayloadIndex] = payload_indexes_field(  # type: ignore[assignment]
        "Payload indexes, one per field.")
    deletion_policy: DeletionPolicy = Field(
        default="Retain",
        description="Delete removes the Qdrant collection with the resource; Retain keeps it.")
    drift_policy: DriftPolicy = Field(
        default="Repair",
        description="Repair changes Qdrant back to the spec; Report only records the drift.")
    connection: ConnectionSpec | None = Field(
        default=None, description="Another Qdrant than the operator-wide default.")
    shared_with: list[ShareGrant] = Field(
        default_factory=list, max_length=64,
        description="Other namespaces that may use this collection (a grant written by its "
        "owner; without one, MasterMerges and EdgeSnapshotPolicies of other namespaces are "
        "refused).",
        json_schema_extra=list_map("namespace"))

    def resolved_collection_name(self) -> str:
        return self.collection_name or f"album_{self.year}"


class AlbumCollectionStatus(CamelModel):
    """Observed state of the collection."""

    observed_generation: int | None = Field(
        default=None, description="metadata.generation last reconciled.")
    conditions: list[Condition] = conditions_field()
    collection_name: str | None = Field(default=None,
                                        description="The Qdrant collection this resource owns.")
    engine: Literal["embedded", "server"] | None = Field(
        default=None, description="Which Qdrant engine holds the collection.")
    points_count: int | None = Field(default=None, description="Points in the collection.")
    indexed_vectors_count: int | None = Field(default=None,
                                              description="Vectors covered by an index.")
    segments_count: int | None = Field(default=None, description="Segments in the collection.")
    qdrant_status: QdrantHealth | None = Field(
        default=None, description="Qdrant's collection status (green, yellow, grey, red).")
    drift: list[str] = Field(default_factory=list, max_length=128,
                             description="Spec field paths that differ from Qdrant.")
    last_sync_time: str | None = Field(default=None,
                                       description="When Qdrant was last compared (RFC 3339).")
    recreations: int = Field(default=0, description="Times the collection was recreated "
                             "after it disappeared from Qdrant.")
    ignored_settings: list[str] = Field(
        default_factory=list, max_length=32,
        description="Spec fields the current engine does not apply (embedded mode).")
    owned_payload_indexes: list[str] = Field(
        default_factory=list, max_length=64,
        description="Payload index fields this resource created (and so may remove).")
    paused: bool | None = Field(
        default=None, description="True while the albumops.io/paused annotation holds all "
        "writes to the collection.")
    unmanaged_payload_indexes: list[str] = Field(
        default_factory=list, max_length=64,
        description="Payload indexes present in Qdrant that this resource never declared "
        "(reported, never removed).")
