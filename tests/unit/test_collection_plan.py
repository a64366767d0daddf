"""The AlbumCollection planner: spec + observed collection + engine -> exact actions."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from album_operator.core.collection_plan import (
    CollectionPlan,
    CreateCollection,
    CreatePayloadIndex,
    DeletePayloadIndex,
    UpdateCollection,
    plan_collection,
)
from album_operator.core.collections import (
    OWNER_UID,
    UNNAMED,
    DesiredCollection,
    ObservedCollection,
    ObservedVector,
    Owner,
    desired_from_spec,
    settings_dict,
)
from album_operator.core.engine import EMBEDDED, SERVER, EngineCapabilities
from album_operator.models.album_collection import AlbumCollectionSpec

OWNER = Owner("AlbumCollection", "photos", "album-2020", "uid-2020")

BASE_SPEC: dict[str, Any] = {
    "year": 2020,
    "vectors": {"size": 512, "distance": "Cosine"},
    "hnsw": {"m": 16, "efConstruct": 128},
    "optimizers": {"indexingThreshold": 20000},
    "quantization": {"scalar": {"quantile": 0.99}},
    "onDiskPayload": True,
    "payloadIndexes": [{"field": "taken_at", "type": "datetime"},
                       {"field": "album_id", "type": "keyword", "isTenant": True}],
}
NAMED_SPEC: dict[str, Any] = {
    "year": 2020,
    "namedVectors": {"image": {"size": 512, "hnsw": {"m": 32},
                               "quantization": {"binary": {"alwaysRam": True}}},
                     "text": {"size": 384, "distance": "Dot"}},
    "sparseVectors": {"keywords": {"modifier": "idf"}},
}


def desired(spec: dict[str, Any] | None = None, **changes: Any) -> DesiredCollection:
    merged = {**(spec or BASE_SPEC), **changes}
    return desired_from_spec(AlbumCollectionSpec.model_validate(merged), OWNER)


def in_sync(want: DesiredCollection) -> ObservedCollection:
    """What a Qdrant server reports for a collection created exactly from ``want``."""
    vectors = {
        name: ObservedVector(size=v.size, distance=v.distance, datatype=v.datatype,
                             on_disk=v.on_disk, multivector=v.multivector is not None,
                             hnsw=settings_dict(v.hnsw), quantization=settings_dict(
                                 v.quantization) or None)
        for name, v in want.vectors.items()}
    return ObservedCollection(
        name=want.name,
        vectors=vectors,
        sparse_vectors={n: {"modifier": s.modifier or "none"}
                        for n, s in want.sparse_vectors.items()},
        hnsw={"m": 16, "efConstruct": 100, "fullScanThreshold": 10000,
              **settings_dict(want.hnsw)},
        optimizers={"deletedThreshold": 0.2, **settings_dict(want.optimizers)},
        quantization=settings_dict(want.quantization) or None,
        params={"shardNumber": want.shard_number, "replicationFactor": want.replication_factor,
                "writeConsistencyFactor": want.write_consistency_factor,
                "onDiskPayload": want.on_disk_payload},
        payload_indexes={i.field: {"type": i.type, "options": {
            k: v for k, v in settings_dict(i).items() if k not in {"field", "type"}}}
            for i in want.payload_indexes},
        metadata=dict(want.metadata),
    )


def with_vector(observed: ObservedCollection, name: str, **changes: Any) -> ObservedCollection:
    vectors = dict(observed.vectors)
    vectors[name] = replace(vectors[name], **changes)
    return replace(observed, vectors=vectors)


def summary(plan: CollectionPlan) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for action in plan.actions:
        if isinstance(action, CreateCollection):
            out.append(("create", action.desired.name))
        elif isinstance(action, UpdateCollection):
            patch = {k: v for k, v in action.patch.__dict__.items()
                     if v not in ({}, None) and k != "metadata"}
            if action.patch.metadata:
                patch["metadata"] = "owner stamp"
            out.append(("update", patch))
        elif isinstance(action, CreatePayloadIndex):
            out.append(("create_index", action.index.field))
        else:
            assert isinstance(action, DeletePayloadIndex)
            out.append(("delete_index", action.field))
    return out


W = desired()
OBSERVED = in_sync(W)
NW = desired(NAMED_SPEC)
NAMED_OBSERVED = in_sync(NW)

# (case, desired, observed, engine, owned indexes, repair, actions, drift, immutable)
CASES: list[tuple[str, DesiredCollection, ObservedCollection | None, EngineCapabilities,
                  frozenset[str], bool, list[tuple[str, Any]], list[str], list[str]]] = [
    ("a missing collection is created with its payload indexes", W, None, SERVER,
     frozenset(), True,
     [("create", "album_2020"), ("create_index", "taken_at"), ("create_index", "album_id")],
     [], []),
    ("the embedded engine creates no payload indexes", W, None, EMBEDDED, frozenset(), True,
     [("create", "album_2020")], [], []),
    ("a collection that matches needs nothing", W, OBSERVED, SERVER, frozenset(), True,
     [], [], []),
    ("hnsw m drift is repaired", W, replace(OBSERVED, hnsw={**OBSERVED.hnsw, "m": 8}), SERVER,
     frozenset(), True, [("update", {"hnsw": {"m": 16, "efConstruct": 128}})], ["hnsw.m"], []),
    ("hnsw efConstruct drift is repaired", W,
     replace(OBSERVED, hnsw={**OBSERVED.hnsw, "efConstruct": 64}), SERVER, frozenset(), True,
     [("update", {"hnsw": {"m": 16, "efConstruct": 128}})], ["hnsw.efConstruct"], []),
    ("optimizer drift is repaired", W,
     replace(OBSERVED, optimizers={"indexingThreshold": 0}), SERVER, frozenset(), True,
     [("update", {"optimizers": {"indexingThreshold": 20000}})],
     ["optimizers.indexingThreshold"], []),
    ("missing quantization is added", W, replace(OBSERVED, quantization=None), SERVER,
     frozenset(), True,
     [("update", {"quantization": {"scalar": {"type": "int8", "quantile": 0.99}}})],
     ["quantization"], []),
    ("another quantization kind is replaced", W,
     replace(OBSERVED, quantization={"binary": {}}), SERVER, frozenset(), True,
     [("update", {"quantization": {"scalar": {"type": "int8", "quantile": 0.99}}})],
     ["quantization"], []),
    ("a changed quantile is repaired and named", W,
     replace(OBSERVED, quantization={"scalar": {"type": "int8", "quantile": 0.9}}), SERVER,
     frozenset(), True,
     [("update", {"quantization": {"scalar": {"type": "int8", "quantile": 0.99}}})],
     ["quantization.scalar.quantile"], []),
    # Qdrant keeps a quantile as a 32-bit float: it echoes 0.923456789 as 0.9234568 and
    # 0.99999999 as 1.0. Compared as 64-bit floats they differed and were patched forever.
    ("a quantile echoed at 32-bit precision is in sync",
     desired(quantization={"scalar": {"quantile": 0.923456789}}),
     replace(OBSERVED, quantization={"scalar": {"type": "int8", "quantile": 0.9234568}}),
     SERVER, frozenset(), True, [], [], []),
    ("a quantile rounded to 1.0 by 32-bit storage is in sync",
     desired(quantization={"scalar": {"quantile": 0.99999999}}),
     replace(OBSERVED, quantization={"scalar": {"type": "int8", "quantile": 1.0}}),
     SERVER, frozenset(), True, [], [], []),
    ("a vector quantile echoed at 32-bit precision is in sync",
     desired(vectors={"size": 512, "quantization": {"scalar": {"quantile": 0.923456789}}}),
     with_vector(OBSERVED, UNNAMED, quantization={"scalar": {"type": "int8",
                                                             "quantile": 0.9234568}}),
     SERVER, frozenset(), True, [], [], []),
    ("a quantile that differs beyond 32-bit precision is repaired",
     desired(quantization={"scalar": {"quantile": 0.923456789}}),
     replace(OBSERVED, quantization={"scalar": {"type": "int8", "quantile": 0.9234567}}),
     SERVER, frozenset(), True,
     [("update", {"quantization": {"scalar": {"type": "int8", "quantile": 0.923456789}}})],
     ["quantization.scalar.quantile"], []),
    ("alwaysRam turned off by hand is repaired and named",
     desired(quantization={"scalar": {"quantile": 0.99, "alwaysRam": True}}),
     replace(OBSERVED, quantization={"scalar": {"type": "int8", "quantile": 0.99,
                                                "alwaysRam": False}}), SERVER, frozenset(),
     True, [("update", {"quantization": {"scalar": {"type": "int8", "quantile": 0.99,
                                                     "alwaysRam": True}}})],
     ["quantization.scalar.alwaysRam"], []),
    ("a float optimizer setting echoed exactly is in sync",
     desired(optimizers={"deletedThreshold": 0.123456789123}),
     replace(OBSERVED, optimizers={"deletedThreshold": 0.123456789123}), SERVER, frozenset(),
     True, [], [], []),
    ("disabled quantization removes existing quantization",
     desired(quantization={"disabled": True}), OBSERVED, SERVER, frozenset(), True,
     [("update", {"quantization": {"disabled": True}})], ["quantization"], []),
    ("onDiskPayload drift is repaired", W,
     replace(OBSERVED, params={**OBSERVED.params, "onDiskPayload": False}), SERVER,
     frozenset(), True, [("update", {"params": {"onDiskPayload": True}})], ["onDiskPayload"],
     []),
    ("replication factor drift is repaired", desired(replicationFactor=2), OBSERVED, SERVER,
     frozenset(), True, [("update", {"params": {"replicationFactor": 2}})],
     ["replicationFactor"], []),
    ("write consistency drift is repaired",
     desired(replicationFactor=1, writeConsistencyFactor=1),
     replace(OBSERVED, params={**OBSERVED.params, "writeConsistencyFactor": 2}), SERVER,
     frozenset(), True, [("update", {"params": {"writeConsistencyFactor": 1}})],
     ["writeConsistencyFactor"], []),
    ("vector onDisk drift is repaired", desired(vectors={"size": 512, "onDisk": True}),
     OBSERVED, SERVER, frozenset(), True,
     [("update", {"vectors": {UNNAMED: {"onDisk": True}}})], ["vectors.onDisk"], []),
    ("named vector hnsw drift is repaired", NW,
     with_vector(NAMED_OBSERVED, "image", hnsw={"m": 16}), SERVER, frozenset(), True,
     [("update", {"vectors": {"image": {"hnsw": {"m": 32}}}})],
     ["namedVectors.image.hnsw.m"], []),
    ("named vector quantization drift is repaired", NW,
     with_vector(NAMED_OBSERVED, "image", quantization=None), SERVER, frozenset(), True,
     [("update", {"vectors": {"image": {"quantization": {"binary": {"alwaysRam": True}}}}})],
     ["namedVectors.image.quantization"], []),
    # PATCH vectors {"": {"hnsw_config": {"m": 4}}} by hand leaves the collection's hnsw as
    # the spec says, but the vector's own override is what Qdrant builds with.
    ("a vector hnsw override set by hand shadows the spec's hnsw and is repaired", W,
     with_vector(OBSERVED, UNNAMED, hnsw={"m": 4}), SERVER, frozenset(), True,
     [("update", {"vectors": {UNNAMED: {"hnsw": {"m": 16}}}})], ["vectors.hnsw.m"], []),
    ("a vector hnsw override equal to the spec's hnsw is in sync", W,
     with_vector(OBSERVED, UNNAMED, hnsw={"m": 16, "efConstruct": 128}), SERVER,
     frozenset(), True, [], [], []),
    ("a vector hnsw override of a setting the spec leaves unset is ignored", W,
     with_vector(OBSERVED, UNNAMED, hnsw={"payloadM": 4}), SERVER, frozenset(), True,
     [], [], []),
    ("a vector's own hnsw wins over the spec's collection hnsw",
     desired(NAMED_SPEC, hnsw={"m": 8}),
     in_sync(desired(NAMED_SPEC, hnsw={"m": 8})), SERVER, frozenset(), True, [], [], []),
    ("a vector's own hnsw is kept while a shadowed key is repaired",
     desired(NAMED_SPEC, hnsw={"m": 8, "efConstruct": 64}),
     with_vector(in_sync(desired(NAMED_SPEC, hnsw={"m": 8, "efConstruct": 64})), "image",
                 hnsw={"m": 32, "efConstruct": 50}), SERVER, frozenset(), True,
     [("update", {"vectors": {"image": {"hnsw": {"efConstruct": 64, "m": 32}}}})],
     ["namedVectors.image.hnsw.efConstruct"], []),
    ("a vector quantization override set by hand shadows the spec's and is dropped", W,
     with_vector(OBSERVED, UNNAMED, quantization={"binary": {}}), SERVER, frozenset(), True,
     [("update", {"vectors": {UNNAMED: {"quantization": {"disabled": True}}}})],
     ["vectors.quantization"], []),
    ("a vector quantization override is left alone when the spec sets none",
     desired(quantization=None), with_vector(OBSERVED, UNNAMED, quantization={"binary": {}}),
     SERVER, frozenset(), True, [], [], []),
    ("the embedded engine ignores vector overrides", W,
     with_vector(OBSERVED, UNNAMED, hnsw={"m": 4}, quantization={"binary": {}}), EMBEDDED,
     frozenset(), True, [], [], []),
    ("sparse modifier drift is repaired on any engine", NW,
     replace(NAMED_OBSERVED, sparse_vectors={"keywords": {"modifier": None}}), EMBEDDED,
     frozenset(), True, [("update", {"sparse_vectors": {"keywords": {"modifier": "idf"}}})],
     ["sparseVectors.keywords.modifier"], []),
    ("a different vector size is immutable", W,
     with_vector(OBSERVED, UNNAMED, size=768), SERVER, frozenset(), True, [], [],
     ["vectors.size (spec 512, Qdrant 768)"]),
    ("a different distance is immutable", W,
     with_vector(OBSERVED, UNNAMED, distance="Dot"), EMBEDDED, frozenset(), True, [], [],
     ["vectors.distance (spec Cosine, Qdrant Dot)"]),
    ("a different datatype is immutable", W,
     with_vector(OBSERVED, UNNAMED, datatype="Uint8"), SERVER, frozenset(), True, [], [],
     ["vectors.datatype (spec Float32, Qdrant Uint8)"]),
    ("named versus unnamed vectors is immutable", NW, OBSERVED, SERVER, frozenset(), True,
     [], [], ["vectors (spec has named vectors image, text, Qdrant has one unnamed vector)"]),
    ("a different shard number is immutable", desired(shardNumber=2), OBSERVED, SERVER,
     frozenset(), True, [], [], ["shardNumber (spec 2, Qdrant 1)"]),
    ("the embedded engine ignores shard number", desired(shardNumber=2),
     replace(OBSERVED, params={}), EMBEDDED, frozenset(), True, [], [], []),
    ("different sparse vector names are immutable", NW,
     replace(NAMED_OBSERVED, sparse_vectors={}), SERVER, frozenset(), True, [], [],
     ["sparseVectors (names differ: spec ['keywords'], Qdrant [])"]),
    ("a missing payload index is created", W,
     replace(OBSERVED, payload_indexes={"album_id": OBSERVED.payload_indexes["album_id"]}),
     SERVER, frozenset(), True, [("create_index", "taken_at")], ["payloadIndexes.taken_at"],
     []),
    ("a payload index of another type is recreated", W,
     replace(OBSERVED, payload_indexes={**OBSERVED.payload_indexes,
                                        "taken_at": {"type": "keyword", "options": {}}}),
     SERVER, frozenset(), True,
     [("delete_index", "taken_at"), ("create_index", "taken_at")],
     ["payloadIndexes.taken_at"], []),
    # A plain index made by hand (PUT index with field_schema "keyword") reports no params:
    # the spec's isTenant is missing from it, which once passed for in sync.
    ("a declared tenant index recreated by hand without options is recreated", W,
     replace(OBSERVED, payload_indexes={**OBSERVED.payload_indexes, "album_id": {
         "type": "keyword", "options": {}}}), SERVER, frozenset(), True,
     [("delete_index", "album_id"), ("create_index", "album_id")],
     ["payloadIndexes.album_id"], []),
    ("an index without options in the spec ignores options Qdrant reports",
     desired(payloadIndexes=[{"field": "taken_at", "type": "datetime"}]),
     replace(OBSERVED, payload_indexes={"taken_at": {"type": "datetime", "options": {
         "isPrincipal": True}}}), SERVER, frozenset(), True, [], [], []),
    ("a payload index with other options is recreated", W,
     replace(OBSERVED, payload_indexes={**OBSERVED.payload_indexes, "album_id": {
         "type": "keyword", "options": {"isTenant": False}}}), SERVER, frozenset(), True,
     [("delete_index", "album_id"), ("create_index", "album_id")],
     ["payloadIndexes.album_id"], []),
    ("an owned index dropped from the spec is removed", W,
     replace(OBSERVED, payload_indexes={**OBSERVED.payload_indexes,
                                        "old": {"type": "integer", "options": {}}}),
     SERVER, frozenset({"old"}), True, [("delete_index", "old")], ["payloadIndexes.old"], []),
    ("an index this resource never owned is reported, not removed", W,
     replace(OBSERVED, payload_indexes={**OBSERVED.payload_indexes,
                                        "manual": {"type": "integer", "options": {}}}),
     SERVER, frozenset(), True, [], [], []),
    ("the embedded engine ignores hnsw, quantization, optimizer and index drift", W,
     replace(OBSERVED, hnsw={"m": 16, "efConstruct": 100}, quantization=None,
             optimizers={"indexingThreshold": 20000 * 2}, payload_indexes={}, params={}),
     EMBEDDED, frozenset(), True, [], [], []),
    ("an unowned matching collection is adopted by stamping ownership", W,
     replace(OBSERVED, metadata={}), SERVER, frozenset(), True,
     [("update", {"metadata": "owner stamp"})], [], []),
    ("a stale owner stamp is replaced", W,
     replace(OBSERVED, metadata={**OBSERVED.metadata, OWNER_UID: "gone"}), SERVER, frozenset(),
     True, [("update", {"metadata": "owner stamp"})], [], []),
    ("report-only drift changes nothing", W,
     replace(OBSERVED, hnsw={**OBSERVED.hnsw, "m": 8}, payload_indexes={}), SERVER,
     frozenset(), False, [], ["hnsw.m", "payloadIndexes.album_id", "payloadIndexes.taken_at"],
     []),
    ("report-only still stamps ownership of an adopted collection", W,
     replace(OBSERVED, metadata={}, hnsw={**OBSERVED.hnsw, "m": 8}), SERVER, frozenset(),
     False, [("update", {"metadata": "owner stamp"})], ["hnsw.m"], []),
]


@pytest.mark.parametrize(
    ("want", "observed", "caps", "owned", "repair", "actions", "drift", "immutable"),
    [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_plan(want: DesiredCollection, observed: ObservedCollection | None,
              caps: EngineCapabilities, owned: frozenset[str], repair: bool,
              actions: list[tuple[str, Any]], drift: list[str], immutable: list[str]) -> None:
    plan = plan_collection(want, observed, caps, owned, repair=repair)
    assert summary(plan) == actions
    assert list(plan.drift) == drift
    assert list(plan.immutable_mismatches) == immutable


def test_an_unowned_index_is_listed_as_unowned() -> None:
    observed = replace(OBSERVED, payload_indexes={**OBSERVED.payload_indexes,
                                                  "manual": {"type": "integer"}})
    assert plan_collection(W, observed, SERVER).unowned_indexes == ("manual",)


def test_adoption_is_flagged_only_for_collections_owned_by_someone_else() -> None:
    assert plan_collection(W, replace(OBSERVED, metadata={}), SERVER).adopting
    assert not plan_collection(W, OBSERVED, SERVER).adopting


def test_an_immutable_mismatch_blocks_every_other_action() -> None:
    observed = replace(with_vector(OBSERVED, UNNAMED, size=768), metadata={}, hnsw={"m": 4})
    plan = plan_collection(W, observed, SERVER)
    assert plan.actions == ()
    assert plan.adopting
