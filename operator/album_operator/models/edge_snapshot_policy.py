"""EdgeSnapshotPolicy: scheduled shard snapshots for Qdrant Edge devices, and their uploads."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from album_operator.models.collection_settings import QuantizationConfig
from album_operator.models.common import (
    CRON_PATTERN,
    DURATION_PATTERN,
    EMPTY_OBJECT_DEFAULT,
    K8S_NAME_PATTERN,
    LIST_SET,
    QDRANT_NAME_PATTERN,
    CamelModel,
    Condition,
    ConnectionSpec,
    DeletionPolicy,
    cel,
    conditions_field,
    list_map,
    validations,
)


class EdgeConfig(CamelModel):
    """How the edge shard is laid out for the device (source Build only)."""

    quantization: QuantizationConfig | None = Field(
        default=None, description="Quantization of the device's shard.")
    on_disk_vectors: bool | None = Field(default=None,
                                         description="Keep vectors on disk on the device.")
    on_disk_payload: bool | None = Field(default=None,
                                         description="Keep payloads on disk on the device.")


class RangeCondition(CamelModel):
    """Numeric range; at least one bound."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": validations(cel(
            "has(self.gt) || has(self.gte) || has(self.lt) || has(self.lte)",
            "set at least one bound"))
    }

    gt: float | None = Field(default=None, description="Greater than.")
    gte: float | None = Field(default=None, description="Greater than or equal.")
    lt: float | None = Field(default=None, description="Less than.")
    lte: float | None = Field(default=None, description="Less than or equal.")


class FieldCondition(CamelModel):
    """One payload condition; set exactly one way of matching."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": validations(cel(
            "(has(self.keyword) ? 1 : 0) + (has(self.integer) ? 1 : 0) + "
            "(has(self.boolean) ? 1 : 0) + (has(self.anyKeyword) ? 1 : 0) + "
            "(has(self.anyInteger) ? 1 : 0) + (has(self.range) ? 1 : 0) == 1",
            "set exactly one of keyword, integer, boolean, anyKeyword, anyInteger or range"))
    }

    key: str = Field(min_length=1, max_length=256, description="Payload key (dotted path).")
    keyword: str | None = Field(default=None, max_length=1024,
                                description="Equals this string.")
    integer: int | None = Field(default=None, description="Equals this integer.")
    boolean: bool | None = Field(default=None, description="Equals this boolean.")
    any_keyword: list[str] | None = Field(default=None, max_length=256,
                                          description="Equals any of these strings.")
    any_integer: list[int] | None = Field(default=None, max_length=256,
                                          description="Equals any of these integers.")
    range: RangeCondition | None = Field(default=None, description="Within this range.")


class PointFilter(CamelModel):
    """Publishes only points matching every condition (one device's or tenant's points)."""

    must: list[FieldCondition] = Field(min_length=1, max_length=16,
                                       description="Conditions that must all hold.")


class DeviceAccess(CamelModel):
    """A device (or group of devices) allowed to fetch snapshots and upload points."""

    name: str = Field(pattern=K8S_NAME_PATTERN, max_length=63, description="Device name.")
    token_secret_ref: str = Field(
        pattern=K8S_NAME_PATTERN, max_length=253,
        description="Secret in this namespace whose key `token` holds the device token.")


class UploadRoute(CamelModel):
    """Routes each uploaded point by a payload field to a collection."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": validations(cel(
            "self.template.contains('{' + self.field + '}')",
            "template must contain {<field>}", field_path=".template"))
    }

    field: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_]+$",
                       description="Payload field whose value picks the collection.")
    template: str = Field(min_length=3, max_length=255,
                          description="Collection name template, e.g. album_{year}.")


class UploadSpec(CamelModel):
    """Where device writes go. Only collections owned by AlbumCollections are allowed."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": validations(cel(
            "has(self.collection) != has(self.routeBy)",
            "set exactly one of collection or routeBy"))
    }

    collection: str | None = Field(default=None, pattern=QDRANT_NAME_PATTERN, max_length=255,
                                   description="One target collection.")
    route_by: UploadRoute | None = Field(default=None,
                                         description="Route by a payload field.")
    max_batch_size: int = Field(default=1000, ge=1, le=10000,
                                description="Largest batch accepted in one request.")


class SnapshotRetention(CamelModel):
    """Which snapshots are kept. The newest successful one is never deleted."""

    keep_last: int = Field(default=3, ge=1, le=100, description="Snapshots kept per shard.")
    max_age: str | None = Field(default=None, pattern=DURATION_PATTERN, max_length=32,
                                description="Delete snapshots older than this, e.g. 168h or 7d.")


class EdgeSnapshotPolicySpec(CamelModel):
    """Which collection to publish, how, when, and to whom."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": validations(
            cel("self.source == 'Build' || (!has(self.edgeConfig) && !has(self.filter))",
                "edgeConfig and filter apply only to source Build", field_path=".source"),
            cel("!has(self.shards) || !has(self.shardKeys)",
                "set shards or shardKeys, not both", field_path=".shardKeys"),
        )
    }

    collection: str = Field(pattern=QDRANT_NAME_PATTERN, max_length=255,
                            description="Collection or alias to publish (resolved each run).")
    shards: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None, max_length=1024,
        description="Shard ids to publish (source Server); omit for all.",
        json_schema_extra=LIST_SET)
    shard_keys: list[Annotated[str, Field(max_length=255)]] | None = Field(
        default=None, max_length=1024,
        description=("Shard keys to publish (source Server, a collection with custom "
                     "sharding): every shard of each key, e.g. one device's data per key, as "
                     "Qdrant's tiered multitenancy intends. A missing key is reported."),
        json_schema_extra=LIST_SET)
    source: Literal["Server", "Build"] = Field(
        default="Build",
        description="Server uses Qdrant's shard snapshot API; Build makes edge shards here.")
    edge_config: EdgeConfig | None = Field(default=None,
                                           description="Device shard layout (Build only).")
    filter: PointFilter | None = Field(default=None,
                                       description="Publish only matching points (Build only).")
    schedule: str = Field(default="0 */6 * * *", pattern=CRON_PATTERN, max_length=128,
                          description="Cron expression for publishing (UTC).")
    retention: SnapshotRetention = Field(default_factory=SnapshotRetention,
                                         description="Which snapshots are kept.",
                                         json_schema_extra=EMPTY_OBJECT_DEFAULT)
    suspend: bool = Field(default=False, description="Pause scheduled runs.")
    devices: list[DeviceAccess] = Field(
        default_factory=list, max_length=256, description="Devices allowed to fetch and upload.",
        json_schema_extra=list_map("name"))
    upload: UploadSpec | None = Field(default=None, description="Where device writes go.")
    deletion_policy: DeletionPolicy = Field(
        default="Delete", description="Delete removes published snapshots with the policy.")
    connection: ConnectionSpec | None = Field(
        default=None, description="Another Qdrant than the operator-wide default.")


class LastRun(CamelModel):
    """The latest publishing run."""

    time: str = Field(description="When it ran (RFC 3339).")
    result: Literal["Succeeded", "Failed"] = Field(description="Outcome.")
    duration_seconds: float = Field(default=0.0, description="How long it took.")
    message: str = Field(default="", max_length=4096, description="Detail.")


class PublishedSnapshot(CamelModel):
    """One published shard snapshot."""

    shard: int = Field(description="Shard id.")
    name: str = Field(description="Snapshot name.")
    collection: str = Field(description="Concrete collection the snapshot was taken from.")
    size_bytes: int = Field(description="Size in bytes.")
    sha256: str = Field(description="SHA-256 of the file.")
    created_at: str = Field(description="Creation time (RFC 3339).")
    scheduled_for: str | None = Field(default=None,
                                      description="Scheduled time that produced it.")


class EdgeSnapshotPolicyStatus(CamelModel):
    """Observed state of publishing."""

    observed_generation: int | None = Field(default=None,
                                            description="metadata.generation last reconciled.")
    conditions: list[Condition] = conditions_field()
    last_run: LastRun | None = Field(default=None, description="Latest run.")
    next_run: str | None = Field(default=None, description="Next scheduled run (RFC 3339).")
    last_scheduled_time: str | None = Field(
        default=None, description="Scheduled time of the last run (catch-up bookkeeping).")
    last_trigger_token: str | None = Field(
        default=None, description="albumops.io/snapshot-now value last acted on.")
    snapshots: list[PublishedSnapshot] = Field(default_factory=list, max_length=1024,
                                               description="Published snapshots, newest first.")
    snapshot_count: int = Field(default=0, description="Number of published snapshots.")
    bytes_published: int = Field(default=0, description="Total bytes of kept snapshots.")
    partial_requests_served: int = Field(default=0, description="Partial snapshots served.")
    bytes_saved: int = Field(default=0,
                             description="Bytes saved by partials against full snapshots.")
