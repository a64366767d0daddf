"""The three kinds: names, models and printer columns, in one table."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from album_operator.models.album_collection import AlbumCollectionSpec, AlbumCollectionStatus
from album_operator.models.common import GROUP
from album_operator.models.edge_snapshot_policy import (
    EdgeSnapshotPolicySpec,
    EdgeSnapshotPolicyStatus,
)
from album_operator.models.master_merge import MasterMergeSpec, MasterMergeStatus


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0


def _condition(type_: str) -> str:
    return f'.status.conditions[?(@.type=="{type_}")].status'


AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation.")
# shown by default on every kind: the one column that says whether a resource is fine
READY = PrinterColumn("Ready", "string", _condition("Ready"),
                      "Ready condition; kubectl describe shows its reason and message.")


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    columns: tuple[PrinterColumn, ...]

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


ALBUM_COLLECTION = KindInfo(
    kind="AlbumCollection",
    plural="albumcollections",
    singular="albumcollection",
    short_names=("ac", "albumcol"),
    spec=AlbumCollectionSpec,
    status=AlbumCollectionStatus,
    description="One Qdrant collection per album year, created from and kept in sync with "
    "its spec.",
    columns=(
        PrinterColumn("Collection", "string", ".status.collectionName", "Qdrant collection."),
        READY,
        PrinterColumn("Synced", "string", _condition("Synced"), "Qdrant matches the spec."),
        PrinterColumn("Points", "integer", ".status.pointsCount", "Points in the collection."),
        PrinterColumn("Status", "string", ".status.qdrantStatus", "Qdrant collection status.",
                      priority=1),
        AGE,
    ),
)

MASTER_MERGE = KindInfo(
    kind="MasterMerge",
    plural="mastermerges",
    singular="mastermerge",
    short_names=("mm",),
    spec=MasterMergeSpec,
    status=MasterMergeStatus,
    description="Builds a verified master collection from sources and moves an alias to it "
    "atomically.",
    columns=(
        PrinterColumn("Alias", "string", ".spec.alias", "Alias served."),
        PrinterColumn("Target", "string", ".status.aliasTarget", "Collection behind the alias."),
        READY,
        PrinterColumn("Phase", "string", ".status.phase", "Phase of the current build."),
        PrinterColumn("Progress", "string", ".status.progress", "Points copied / total.",
                      priority=1),
        PrinterColumn("Last Swap", "date", ".status.lastSwapTime",
                      "Time of the last alias swap."),
        # Future times as RFC 3339 text: kubectl prints a future "date" as <invalid>.
        PrinterColumn("Next Build", "string", ".status.nextScheduledTime",
                      "Next scheduled build, UTC (empty without a schedule)."),
        AGE,
    ),
)

EDGE_SNAPSHOT_POLICY = KindInfo(
    kind="EdgeSnapshotPolicy",
    plural="edgesnapshotpolicies",
    singular="edgesnapshotpolicy",
    short_names=("esp", "edgesnap"),
    spec=EdgeSnapshotPolicySpec,
    status=EdgeSnapshotPolicyStatus,
    description="Publishes shard snapshots of a collection for Qdrant Edge devices on a "
    "schedule, and accepts their uploads.",
    columns=(
        PrinterColumn("Collection", "string", ".spec.collection", "Collection published."),
        READY,
        PrinterColumn("Source", "string", ".spec.source", "Server or Build.", priority=1),
        PrinterColumn("Snapshots", "integer", ".status.snapshotCount", "Published snapshots."),
        PrinterColumn("Last Run", "date", ".status.lastRun.time", "Time of the latest run."),
        PrinterColumn("Next Run", "string", ".status.nextRun",
                      "Next scheduled run, UTC (empty while suspended)."),
        AGE,
    ),
)

ALL_KINDS = (ALBUM_COLLECTION, MASTER_MERGE, EDGE_SNAPSHOT_POLICY)
