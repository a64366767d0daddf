"""Plans how to bring one Qdrant collection to its desired state (pure: no I/O).

The planner compares only what the spec sets and what the engine applies, so an engine that
ignores a setting never causes an endless repair. Differences come out as field paths in the
spec's own vocabulary (``hnsw.m``, ``namedVectors.image.size``) for status and events.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from album_operator.core.collections import (
    OWNER_UID,
    UNNAMED,
    DesiredCollection,
    ObservedCollection,
    index_options,
    settings_dict,
)
from album_operator.core.engine import EngineCapabilities
from album_operator.models.collection_settings import PayloadIndex, VectorParams


@dataclass(frozen=True)
class CollectionPatch:
    """Mutable settings to change, in the spec's camelCase shape."""

    hnsw: Mapping[str, Any] = field(default_factory=dict)
    optimizers: Mapping[str, Any] = field(default_factory=dict)
    quantization: Mapping[str, Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    vectors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sparse_vectors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.hnsw or self.optimizers or self.quantization is not None
                    or self.params or self.vectors or self.sparse_vectors or self.metadata)


@dataclass(frozen=True)
class CreateCollection:
    desired: DesiredCollection


@dataclass(frozen=True)
class UpdateCollection:
    name: str
    patch: CollectionPatch


@dataclass(frozen=True)
class CreatePayloadIndex:
    collection: str
    index: PayloadIndex


@dataclass(frozen=True)
class DeletePayloadIndex:
    collection: str
    field: str


Action = CreateCollection | UpdateCollection | CreatePayloadIndex | DeletePayloadIndex


@dataclass(frozen=True)
class CollectionPlan:
    actions: tuple[Action, ...] = ()
    drift: tuple[str, ...] = ()
    immutable_mismatches: tuple[str, ...] = ()
    unowned_indexes: tuple[str, ...] = ()
    adopting: bool = False
    repairs: bool = True
    """Whether the actions repair the drift (driftPolicy Repair) or only report it."""

    @property
    def remaining_drift(self) -> tuple[str, ...]:
        """What still differs from the spec once the actions are applied."""
        return () if self.repairs else self.drift

    @property
    def creates(self) -> bool:
        return any(isinstance(a, CreateCollection) for a in self.actions)


def _f32(value: float) -> float:
    value_f32: float = struct.unpack("f", struct.pack("f", value))[0]
    return value_f32


def same_value(want: Any, have: Any) -> bool:
    """Equal as Qdrant stores them: a scalar quantile is kept as a 32-bit float, so
    0.923456789 comes back as 0.9234568 and only compares equal at that precision."""
    if want == have:
        return True
    if not isinstance(want, float) or isinstance(have, bool) or not isinstance(
            have, (int, float)):
        return False
    try:
        return _f32(want) == _f32(float(have))
    except OverflowError:
        return False


def _subset_diff(desired: Mapping[str, Any], observed: Mapping[str, Any], prefix: str
                 ) -> list[str]:
    return [f"{prefix}.{key}" for key, value in desired.items()
            if not same_value(value, observed.get(key))]


def _quantization_drift(desired: Mapping[str, Any], observed: Mapping[str, Any] | None,
                        prefix: str) -> list[str]:
    """Field paths where quantization differs: the whole setting when the kind differs (or
    one side has none), else each option of the kind that differs."""
    if desired.get("disabled"):
        return [prefix] if observed else []
    if not observed:
        return [prefix]
    (variant, options), = desired.items()
    if variant not in observed:
        return [prefix]
    return _subset_diff(options, observed[variant], f"{prefix}.{variant}")


def _vector_layout(names: Mapping[str, Any]) -> str:
    if set(names) == {UNNAMED}:
        return "one unnamed vector"
    return "named vectors " + ", ".join(sorted(n for n in names if n != UNNAMED))


def _vector_path(name: str) -> str:
    return "vectors" if name == UNNAMED else f"namedVectors.{name}"


def immutable_mismatches(desired: DesiredCollection, observed: ObservedCollection,
                         caps: EngineCapabilities) -> list[str]:
    """Differences that only a new collection could resolve; never repaired in place."""
    if set(desired.vectors) != set(observed.vectors):
        return [f"vectors (spec has {_vector_layout(desired.vectors)}, "
                f"Qdrant has {_vector_layout(observed.vectors)})"]
    found = []
    for name, want in desired.vectors.items():
        have = observed.vectors[name]
        path = _vector_path(name)
        if want.size != have.size:
            found.append(f"{path}.size (spec {want.size}, Qdrant {have.size})")
        if want.distance != have.distance:
            found.append(f"{path}.distance (spec {want.distance}, Qdrant {have.distance})")
        if want.datatype != (have.datatype or "Float32"):
            found.append(f"{path}.datatype (spec {want.datatype}, Qdrant {have.datatype})")
        if (want.multivector is not None) != have.multivector:
            found.append(f"{path}.multivector")
    if set(desired.sparse_vectors) != set(observed.sparse_vectors):
        found.append("sparseVectors (names differ: spec "
                     f"{sorted(desired.sparse_vectors)}, Qdrant {sorted(observed.sparse_vectors)})")
    have_shards = observed.params.get("shardNumber")
    if (caps.applies_sharding and desired.shard_number is not None and have_shards is not None
            and desired.shard_number != have_shards):
        found.append(f"shardNumber (spec {desired.shard_number}, Qdrant {have_shards})")
    return found


def _vector_patch(name: str, want: VectorParams, desired: DesiredCollection,
                  observed: ObservedCollection, caps: EngineCapabilities
                  ) -> tuple[dict[str, Any], list[str]]:
    """A vector's own settings; a per-vector override in Qdrant (set by hand with PATCH
    vectors) shadows the collection-wide setting the spec sets, so it counts as drift too."""
    have = observed.vectors[name]
    path = _vector_path(name)
    patch: dict[str, Any] = {}
    drift: list[str] = []
    if caps.applies_hnsw:
        own = settings_dict(want.hnsw)
        shadowed = {key: value for key, value in settings_dict(desired.hnsw).items()
                    if key not in own and key in have.hnsw}
        hnsw = {**shadowed, **own}
        changed = _subset_diff(hnsw, have.hnsw, f"{path}.hnsw")
        if changed:
            patch["hnsw"], drift = hnsw, drift + changed
    if caps.applies_quantization and want.quantization is not None:
        quantization = settings_dict(want.quantization)
        changed = _quantization_drift(quantization, have.quantization, f"{path}.quantization")
        if changed:
            patch["quantization"], drift = quantization, drift + changed
    elif caps.applies_quantization and desired.quantization is not None and have.quantization:
        # Disabled on a vector drops its override: the collection's quantization applies.
        patch["quantization"] = {"disabled": True}
        drift.append(f"{path}.quantization")
    if caps.applies_on_disk and want.on_disk is not None and want.on_disk != have.on_disk:
        patch["onDisk"] = want.on_disk
        drift.append(f"{path}.onDisk")
    return patch, drift


def _sparse_patch(desired: DesiredCollection, observed: ObservedCollection,
                  caps: EngineCapabilities) -> tuple[dict[str, dict[str, Any]], list[str]]:
    patches: dict[str, dict[str, Any]] = {}
    drift: list[str] = []
    for name, want in desired.sparse_vectors.items():
        have = observed.sparse_vectors.get(name, {})
        wanted = settings_dict(want)
        if not caps.applies_on_disk:
            wanted.pop("onDisk", None)
            wanted.pop("fullScanThreshold", None)
        normalised_have = {"modifier": "none", **{k: v for k, v in have.items() if v is not None}}
        changed = _subset_diff(wanted, normalised_have, f"sparseVectors.{name}")
        if changed:
            patches[name] = wanted
            drift += changed
    return patches, drift


def _params_patch(desired: DesiredCollection, observed: ObservedCollection,
                  caps: EngineCapabilities) -> dict[str, Any]:
    wanted: dict[str, Any] = {}
    if caps.applies_sharding:
        wanted["replicationFactor"] = desired.replication_factor
        wanted["writeConsistencyFactor"] = desired.write_consistency_factor
    if caps.applies_on_disk:
        wanted["onDiskPayload"] = desired.on_disk_payload
    wanted = {k: v for k, v in wanted.items() if v is not None}
    return {k: v for k, v in wanted.items() if not same_value(v, observed.params.get(k))}


def _collection_patch(desired: DesiredCollection, observed: ObservedCollection,
                      caps: EngineCapabilities) -> tuple[CollectionPatch, list[str]]:
    drift: list[str] = []
    hnsw: dict[str, Any] = {}
    if caps.applies_hnsw and desired.hnsw is not None:
        changed = _subset_diff(settings_dict(desired.hnsw), observed.hnsw, "hnsw")
        hnsw = settings_dict(desired.hnsw) if changed else {}
        drift += changed
    optimizers: dict[str, Any] = {}
    if caps.applies_optimizers and desired.optimizers is not None:
        changed = _subset_diff(settings_dict(desired.optimizers), observed.optimizers,
                               "optimizers")
        optimizers = settings_dict(desired.optimizers) if changed else {}
        drift += changed
    quantization = None
    if caps.applies_quantization and desired.quantization is not None:
        wanted = settings_dict(desired.quantization)
        changed = _quantization_drift(wanted, observed.quantization, "quantization")
        if changed:
            quantization = wanted
            drift += changed
    params = _params_patch(desired, observed, caps)
    drift += sorted(params)
    vectors = {}
    for name, want in desired.vectors.items():
        vector_patch, vector_drift = _vector_patch(name, want, desired, observed, caps)
        if vector_patch:
            vectors[name] = vector_patch
            drift += vector_drift
    sparse, sparse_drift = _sparse_patch(desired, observed, caps)
    drift += sparse_drift
    patch = CollectionPatch(hnsw=hnsw, optimizers=optimizers, quantization=quantization,
                            params=params, vectors=vectors, sparse_vectors=sparse)
    return patch, drift


def _index_actions(desired: DesiredCollection, observed: ObservedCollection,
                   owned: frozenset[str]) -> tuple[list[Action], list[str], list[str]]:
    actions: list[Action] = []
    drift: list[str] = []
    wanted = {index.field: index for index in desired.payload_indexes}
    for name, index in sorted(wanted.items()):
        have = observed.payload_indexes.get(name)
        if have is None:
            actions.append(CreatePayloadIndex(desired.name, index))
            drift.append(f"payloadIndexes.{name}")
            continue
        # An index made without options (a plain "keyword", say) reports none: every
        # option the spec sets then differs.
        options_differ = bool(_subset_diff(index_options(index), have.get("options", {}), ""))
        if have.get("type") != index.type or options_differ:
            actions += [DeletePayloadIndex(desired.name, name),
                        CreatePayloadIndex(desired.name, index)]
            drift.append(f"payloadIndexes.{name}")
    unowned = []
    for name in sorted(set(observed.payload_indexes) - set(wanted)):
        if name in owned:
            actions.append(DeletePayloadIndex(desired.name, name))
            drift.append(f"payloadIndexes.{name}")
        else:
            unowned.append(name)
    return actions, drift, unowned


def _ownership_patch(desired: DesiredCollection, observed: ObservedCollection
                     ) -> dict[str, str]:
    if all(observed.metadata.get(k) == v for k, v in desired.metadata.items()):
        return {}
    return dict(desired.metadata)


def plan_collection(
    desired: DesiredCollection,
    observed: ObservedCollection | None,
    caps: EngineCapabilities,
    owned_indexes: frozenset[str] = frozenset(),
    repair: bool = True,
) -> CollectionPlan:
    """The actions that bring ``observed`` to ``desired`` on an engine with ``caps``.

    With ``repair`` False the drift is reported and only the ownership stamp is written.
    """
    if observed is None:
        actions: list[Action] = [CreateCollection(desired)]
        if caps.applies_payload_indexes:
            actions += [CreatePayloadIndex(desired.name, i) for i in desired.payload_indexes]
        return CollectionPlan(actions=tuple(actions))

    adopting = observed.owner_uid() != desired.metadata.get(OWNER_UID)
    immutable = immutable_mismatches(desired, observed, caps)
    if immutable:
        return CollectionPlan(immutable_mismatches=tuple(immutable), adopting=adopting)

    patch, drift = _collection_patch(desired, observed, caps)
    index_actions: list[Action] = []
    unowned: list[str] = []
    if caps.applies_payload_indexes:
        index_actions, index_drift, unowned = _index_actions(desired, observed, owned_indexes)
        drift += index_drift
    ownership = _ownership_patch(desired, observed)
    if not repair:
        patch, index_actions = CollectionPatch(), []
    patch = replace(patch, metadata=ownership)
    actions = [UpdateCollection(desired.name, patch)] if not patch.is_empty() else []
    return CollectionPlan(actions=tuple(actions + index_actions), drift=tuple(drift),
                          unowned_indexes=tuple(unowned), adopting=adopting, repairs=repair)
