"""MasterMerge: a verified, versioned master built from source collections behind an alias."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from album_operator.models.collection_settings import (
    HnswConfig,
    OptimizersConfig,
    PayloadIndex,
    QuantizationConfig,
    payload_indexes_field,
)
from album_operator.models.common import (
    CRON_PATTERN,
    EMPTY_OBJECT_DEFAULT,
    LIST_SET,
    QDRANT_NAME_PATTERN,
    CamelModel,
    Condition,
    ConnectionSpec,
    DeletionPolicy,
    LabelSelector,
    cel,
    conditions_field,
    immutable,
    validations,
)

QdrantName = Annotated[str, Field(pattern=QDRANT_NAME_PATTERN, max_length=255)]
MergePhase = Literal[
    "Pending", "Planning", "Copying", "Indexing", "CatchingUp", "Verifying", "Swapping",
    "Succeeded", "Failed"
]


class TargetOverrides(CamelModel):
    """Settings of the built master that differ from what the sources have."""

    hnsw: HnswConfig | None = Field(default=None, description="HNSW settings of the master.")
    quantization: QuantizationConfig | None = Field(
        default=None, description="Quantization of the master.")
    optimizers: OptimizersConfig | None = Field(default=None,
                                                description="Optimizer settings of the master.")
    payload_indexes: list[PayloadIndex] = payload_indexes_field(  # type: ignore[assignment]
        "Payload indexes created on the master before the copy.")
    shard_number: int | None = Field(
        default=None, ge=1, le=1024,
        description="Shards of the master (server only); default: the first source's.")
    replication_factor: int | None = Field(
        default=None, ge=1, le=16,
        description="Copies of each shard of the master (server only); default: the first "
        "source's.")


class CopySettings(CamelModel):
    """How points are copied."""

    batch_size: int = Field(default=256, ge=1, le=10000,
                            description="Points per scroll page and per upsert.")
    parallelism: int = Field(default=2, ge=1, le=16,
                             description="Copy streams at once, each taking the largest "
                             "ID range of a source left (servers only).")
    max_points_per_second: int | None = Field(
        default=None, ge=1, le=10_000_000,
        description="Throttle: at most this many points a second over the whole copy, to "
        "spare a server that also serves searches; unset: as fast as the server takes them.")


class VerifySettings(CamelModel):
    """Checks that must pass before the alias moves."""

    sample_points: int = Field(default=256, ge=0, le=100000,
                               description="Points whose payload and vectors are compared.")
    sample_queries: int = Field(default=16, ge=0, le=1000,
                                description="Queries compared between master and sources.")
    top_k: int = Field(default=10, ge=1, le=100, description="Results per sampled query.")
    min_top_k_overlap: float = Field(
        default=1.0, ge=0.0, le=1.0,
        description="Minimum fraction of top-k IDs shared by master and sources.")
    on_failure: Literal["Keep", "Delete"] = Field(
        default="Keep", description="What happens to a master that failed verification.")


class SourceChangeTrigger(CamelModel):
    """Rebuild when the sources changed."""

    min_interval_seconds: int = Field(
        default=3600, ge=60, le=31_536_000,
        description="At least this long between two builds this trigger starts.")


class RetentionSettings(CamelModel):
    """How many earlier masters are kept for rollback."""

    keep_previous: int = Field(default=2, ge=0, le=20,
                               description="Earlier verified masters kept besides the current.")


class MasterMergeSpec(CamelModel):
    """Desired master: which sources, how to build, when to rebuild."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": validations(
            cel("has(self.sources) || has(self.sourceSelector)",
                "set sources, sourceSelector, or both", reason="FieldValueRequired"),
            cel("!has(self.sources) || !has(self.alias) || !(self.alias in self.sources)",
                "alias must not name one of the sources: the swap would replace a source",
                field_path=".alias"),
        )
    }

    alias: str = Field(default="album_master", pattern=QDRANT_NAME_PATTERN, max_length=255,
                       description="Alias that points at the current master.",
                       json_schema_extra=immutable("alias"))
    sources: list[QdrantName] | None = Field(
        default=None, min_length=1, max_length=64,
        description="Source collection names, in order (later wins under PreferLater).",
        json_schema_extra=LIST_SET)
    source_selector: LabelSelector | None = Field(
        default=None,
        description="Selects AlbumCollections in this namespace; their collections are "
        "added after sources, ordered by year.")
    target_prefix: str | None = Field(
        default=None, pattern=QDRANT_NAME_PATTERN, max_length=200,
        description="Prefix of built masters (<prefix>_v<N>); defaults to the alias.")
    target_overrides: TargetOverrides | None = Field(
        default=None, description="Settings of the master that differ from the sources'.")
    id_conflict_policy: Literal["Fail", "PreferLater"] = Field(
        default="Fail", description="What to do when sources share a point ID.")
    copy_settings: CopySettings = Field(
        default_factory=CopySettings, alias="copy", description="How points are copied.",
        json_schema_extra=EMPTY_OBJECT_DEFAULT)
    verify: VerifySettings = Field(default_factory=VerifySettings,
                                   description="Checks before the alias moves.",
                                   json_schema_extra=EMPTY_OBJECT_DEFAULT)
    retention: RetentionSettings = Field(default_factory=RetentionSettings,
                                         description="Earlier masters kept for rollback.",
                                         json_schema_extra=EMPTY_OBJECT_DEFAULT)
    deletion_policy: DeletionPolicy = Field(
        default="Retain",
        description="Delete removes the alias and the masters this resource built.")
    schedule: str | None = Field(default=None, pattern=CRON_PATTERN, max_length=128,
                                 description="Cron expression for periodic rebuilds (UTC).")
    rollback_to: str | None = Field(
        default=None, pattern=QDRANT_NAME_PATTERN, max_length=255,
        description="A kept master to move the alias back to; while set, the alias stays "
        "there and no rebuild starts.")
    suspend: bool = Field(default=False, description="Pause rebuilds and alias changes.")
    rebuild_on_source_change: SourceChangeTrigger | None = Field(
        default=None, description="Rebuild when the resolved sources or their point counts "
        "differ from those of the last build (checked every 10 s; an overwrite that keeps "
        "every count is not seen: use the schedule or the albumops.io/rebuild annotation).")
    dry_run: bool = Field(
        default=False, description="Plan only: resolve the sources, count their points and "
        "collisions, name the target and estimate its copy time and disk into status.plan and "
        "the Planned condition, and create nothing. Re-planned when the spec or the "
        "albumops.io/rebuild annotation changes.")
    connection: ConnectionSpec | None = Field(
        default=None, description="Another Qdrant than the operator-wide default.")


class RangeProgress(CamelModel):
    """Copy progress of one ID range of a source (ranges are copied side by side)."""

    from_id: str | None = Field(default=None, alias="from", description=(
        "First point ID of the range, JSON-encoded; absent: the source's beginning."))
    until: str | None = Field(default=None, description=(
        "First point ID after the range, JSON-encoded; absent: the source's end."))
    expected: int = Field(default=0, description="Points in the range at planning.")
    copied: int = Field(default=0, description="Points copied so far.")
    next_offset: str | None = Field(default=None,
                                    description="Scroll checkpoint (JSON-encoded point ID).")
    done: bool = Field(default=False, description="All points of the range copied.")


class SourceProgress(CamelModel):
    """Copy progress of one source."""

    name: str = Field(description="Source collection.")
    total: int = Field(default=0, description="Points counted at planning.")
    copied: int = Field(default=0, description="Points copied so far.")
    next_offset: str | None = Field(default=None, description=(
        "Scroll checkpoint (JSON-encoded point ID) of a build planned without ranges."))
    done: bool = Field(default=False, description="All points copied.")
    ranges: list[RangeProgress] = Field(default_factory=list, description=(
        "The source's ID ranges and their checkpoints, on a server."))


class IdSetSummary(CamelModel):
    """A set of point IDs as a count and an order-independent digest."""

    count: int = Field(default=0, description="IDs in the set.")
    digest: str = Field(default="0", pattern="^[0-9a-f]{1,16}$",
                        description="Sum of the IDs' 64-bit hashes, in hex.")


class CatchUpStatus(CamelModel):
    """The catch-up after the copy: passes over the sources and the master that repair what
    was written into the sources meanwhile."""

    pass_number: int = Field(default=1, description="The pass under way (or the last one).")
    pass_started_at: str | None = Field(
        default=None, description="When that pass started (RFC 3339): every write acknowledged "
        "by a source before the final pass started is in the master.")
    after: str | None = Field(default=None, description="Every point ID up to this one is "
                              "settled in the current pass (JSON-encoded point ID).")
    compared: int = Field(default=0, description="Points compared in the current pass.")
    missing: int = Field(default=0, description="Points the master lacked (this pass).")
    changed: int = Field(default=0,
                         description="Points the master held in another version (this pass).")
    removed: int = Field(default=0, description="Points no source holds any more, removed from "
                         "the master (this pass).")
    repaired_total: int = Field(default=0, description="Points repaired over every pass.")
    ids: IdSetSummary | None = Field(default=None,
                                     description="IDs the current pass settled so far.")
    snapshot: IdSetSummary | None = Field(
        default=None, description="IDs of the sources as the final pass read them: exactly "
        "the master's IDs once caught up, and what Verifying checks.")


class VerificationResult(CamelModel):
    """What verification found."""

    passed: bool = Field(description="All checks passed.")
    expected_count: int = Field(default=0, description="Distinct points expected.")
    actual_count: int = Field(default=0, description="Points in the master.")
    sampled_points: int = Field(default=0, description="Points compared.")
    mismatched_points: int = Field(default=0, description="Sampled points that differed.")
    sampled_queries: int = Field(default=0, description="Queries compared.")
    min_overlap: float | None = Field(default=None,
                                      description="Lowest top-k overlap over the queries.")
    config_matches: bool | None = Field(
        default=None, description="Master settings as desired (not checked yet when unset).")
    changed_since_catch_up: int | None = Field(
        default=None, description="Points written into or removed from the sources after the "
        "final catch-up pass (IDs, and the sampled points whose content changed); the next "
        "build copies them.")
    message: str = Field(default="", max_length=4096, description="First failure, if any.")


class BuildStatus(CamelModel):
    """One master build."""

    name: str = Field(description="Collection built.")
    version: int = Field(description="N in <prefix>_v<N>.")
    phase: MergePhase = Field(description="Where the build stands.")
    trigger: str = Field(default="", max_length=256, description="What started it.")
    started_at: str | None = Field(default=None, description="Start time (RFC 3339).")
    finished_at: str | None = Field(default=None, description="End time (RFC 3339).")
    expected_points: int = Field(default=0, description="Distinct points the master will hold.")
    points_to_copy: int = Field(
        default=0, description="Points the sources held at planning (more than expectedPoints "
        "when sources share IDs).")
    copied_points: int = Field(default=0, description="Points copied.")
    copy_started_at: str | None = Field(default=None,
                                        description="When the copy began (RFC 3339).")
    points_per_second: float | None = Field(default=None, description="Copy rate.")
    eta_seconds: int | None = Field(default=None, description="Estimated seconds left.")
    sources: list[SourceProgress] = Field(default_factory=list, max_length=64,
                                          description="Per-source progress and checkpoints.")
    catch_up: CatchUpStatus | None = Field(default=None,
                                           description="The catch-up after the copy.")
    failure_reason: str | None = Field(default=None, description="Reason when Failed.")
    message: str = Field(default="", max_length=4096, description="Detail of the phase.")


class PlannedSource(CamelModel):
    """One source as planned."""

    name: str = Field(description="Source collection.")
    points: int = Field(default=0, description="Points it held when planned.")


class MergePlan(CamelModel):
    """What a build will do, decided before it does anything."""

    digest: str | None = Field(default=None, description="The spec and rebuild token planned.")
    planned_at: str | None = Field(default=None, description="When planned (RFC 3339).")
    sources: list[PlannedSource] = Field(default_factory=list, max_length=64,
                                         description="Resolved sources, in copy order.")
    points_to_copy: int = Field(default=0, description="Points the sources hold.")
    distinct_points: int = Field(default=0, description="Distinct point IDs among them.")
    colliding_ids: int = Field(default=0, description="IDs held by more than one source.")
    collision_examples: list[str] = Field(default_factory=list, max_length=5,
                                          description="A few colliding IDs and their sources.")
    target: str | None = Field(default=None, description="Collection the build would create.")
    vectors: dict[str, str] = Field(default_factory=dict,
                                    description="Vector spaces: size, distance, datatype.")
    shard_number: int | None = Field(default=None, description="Shards of the master.")
    replication_factor: int | None = Field(default=None, description="Replicas of each shard.")
    hnsw_m: int | None = Field(default=None, description="HNSW m of the finished master.")
    estimated_disk_bytes: int = Field(
        default=0, description="Vectors, quantized vectors and HNSW links (payloads not "
        "counted).")
    measured_points_per_second: float | None = Field(
        default=None, description="Copy rate of the last successful build.")
    expected_copy_seconds: int | None = Field(
        default=None, description="Copy time at that rate (absent before any build measured "
        "one).")


class BuildRecord(CamelModel):
    """A finished build kept in history."""

    name: str = Field(description="Collection built.")
    started_at: str | None = Field(default=None, description="Start time (RFC 3339).")
    finished_at: str | None = Field(default=None, description="End time (RFC 3339).")
    points: int = Field(default=0, description="Points in the master.")
    result: Literal["Succeeded", "Failed"] = Field(description="Outcome.")
    points_per_second: float | None = Field(default=None, description="Its copy rate.")
    deleted: bool = Field(default=False, description="Removed by retention.")


class MasterMergeStatus(CamelModel):
    """Observed state of the master and its builds."""

    observed_generation: int | None = Field(default=None,
                                            description="metadata.generation last reconciled.")
    conditions: list[Condition] = conditions_field()
    phase: MergePhase | None = Field(default=None, description="Phase of the current build.")
    progress: str | None = Field(default=None, description="copied/total of the current build.")
    alias_target: str | None = Field(default=None,
                                     description="Collection the alias points at.")
    last_swap_time: str | None = Field(default=None,
                                       description="When the alias last moved (RFC 3339).")
    alias_read_back: str | None = Field(
        default=None, description="Set while a read of the alias after the last swap (which "
        "Qdrant acknowledged) returns another collection than aliasTarget: what it returned "
        "(empty: no alias), as from a lagging peer or a proxy. The swap stands; the alias is "
        "read again at every step until it agrees, and Ready is False with reason "
        "SwapNotConfirmed meanwhile.")
    last_rebuild_token: str | None = Field(
        default=None, description="albumops.io/rebuild annotation value last acted on.")
    last_scheduled_time: str | None = Field(
        default=None, description="Scheduled time of the last cron-triggered build.")
    observed_schedule: str | None = Field(
        default=None, description="spec.schedule as last seen.")
    schedule_since: str | None = Field(
        default=None, description="When spec.schedule was first seen with its current value: "
        "slots before it never run (RFC 3339).")
    next_scheduled_time: str | None = Field(
        default=None, description="Next scheduled rebuild (RFC 3339); absent while suspended.")
    sources_fingerprint: str | None = Field(
        default=None, description="Digest of the sources and their point counts when the last "
        "build started.")
    failed_builds_in_a_row: int = Field(
        default=0, description="Builds that failed since the last success.")
    next_retry_time: str | None = Field(
        default=None, description="When the failed build is tried again (RFC 3339).")
    masters: list[str] = Field(
        default_factory=list, max_length=64,
        description="Masters of this resource that exist, oldest first (the values rollbackTo "
        "accepts), as of the last build, swap or rollback.")
    last_built_generation: int | None = Field(
        default=None, description="Spec generation of the last started build.")
    last_built_digest: str | None = Field(
        default=None, description="Digest of the build settings of the last started build.")
    current_build: BuildStatus | None = Field(default=None, description="Build in progress.")
    verification: VerificationResult | None = Field(
        default=None, description="Verification of the latest build.")
    plan: MergePlan | None = Field(default=None,
                                   description="Plan of the latest build or dry run.")
    history: list[BuildRecord] = Field(default_factory=list, max_length=64,
                                       description="Finished builds, newest first.")
