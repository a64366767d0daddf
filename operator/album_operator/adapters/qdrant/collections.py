"""Collection-level Qdrant calls, translated to and from the core's plain values.

Async callers go through one narrow interface, ``CollectionGateway`` (``gateway(engine)``):
``ServerCollections`` awaits the server's async client, one round trip per call (a missing
collection is the 404 of the one ``get_collection`` that also gives its config, count and
status); ``EmbeddedCollections`` runs the same calls with the local-mode client on the
engine's own thread. Both build their requests with the same functions, so they cannot
disagree about what a spec means.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel
from pydantic.alias_generators import to_camel, to_snake
from qdrant_client import AsyncQdrantClient, QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

from album_operator.adapters.metrics import QDRANT_COLLECTION_WRITES, QDRANT_WRITES
from album_operator.adapters.qdrant.connection import QdrantEngine
from album_operator.core.collection_plan import (
    Action,
    CollectionPatch,
    CreateCollection,
    CreatePayloadIndex,
    UpdateCollection,
)
from album_operator.core.collections import (
    UNNAMED,
    DesiredCollection,
    ObservedCollection,
    ObservedVector,
    settings_dict,
)
from album_operator.models.collection_settings import PayloadIndex, VectorParams

_DATATYPES = {"Float32": qm.Datatype.FLOAT32, "Float16": qm.Datatype.FLOAT16,
              "Uint8": qm.Datatype.UINT8}
_SPEC_DATATYPE = {v.value: k for k, v in _DATATYPES.items()}


def _camel(values: Mapping[str, Any]) -> dict[str, Any]:
    return {to_camel(k): (_camel(v) if isinstance(v, Mapping) else v)
            for k, v in values.items() if v is not None}


def _snake(values: Mapping[str, Any]) -> dict[str, Any]:
    return {to_snake(k): v for k, v in values.items()}


def _dump(model: BaseModel | None) -> dict[str, Any]:
    return _camel(model.model_dump(mode="json", exclude_none=True)) if model else {}


# --- Qdrant -> core ---------------------------------------------------------------------

def _observed_quantization(config: Any) -> dict[str, Any] | None:
    if config is None or isinstance(config, qm.Disabled):
        return None
    return _dump(config)


def _observed_vector(params: qm.VectorParams) -> ObservedVector:
    return ObservedVector(
        size=params.size,
        distance=params.distance.value,
        datatype=_SPEC_DATATYPE.get(params.datatype.value) if params.datatype else None,
        on_disk=params.on_disk,
        multivector=params.multivector_config is not None,
        hnsw=_dump(params.hnsw_config),
        quantization=_observed_quantization(params.quantization_config),
    )


def _observed_indexes(schema: Mapping[str, qm.PayloadIndexInfo]
                      ) -> dict[str, dict[str, Any]]:
    indexes = {}
    for name, info in schema.items():
        options = _dump(info.params) if isinstance(info.params, BaseModel) else {}
        options.pop("type", None)
        indexes[name] = {"type": info.data_type.value, "options": options}
    return indexes


def observe(info: qm.CollectionInfo, name: str) -> ObservedCollection:
    params = info.config.params
    vectors = params.vectors
    observed_vectors = (
        {UNNAMED: _observed_vector(vectors)} if isinstance(vectors, qm.VectorParams)
        else {n: _observed_vector(v) for n, v in (vectors or {}).items()})
    sparse = {n: {"modifier": s.modifier.value if s.modifier else None,
                  **_dump(s.index)} for n, s in (params.sparse_vectors or {}).items()}
    return ObservedCollection(
        name=name,
        vectors=observed_vectors,
        sparse_vectors=sparse,
        hnsw=_dump(info.config.hnsw_config),
        optimizers=_dump(info.config.optimizer_config),
        quantization=_observed_quantization(info.config.quantization_config),
        params=_camel({
            "shard_number": params.shard_number,
            "replication_factor": params.replication_factor,
            "write_consistency_factor": params.write_consistency_factor,
            "on_disk_payload": params.on_disk_payload,
        }),
        payload_indexes=_observed_indexes(info.payload_schema or {}),
        metadata=dict(info.config.metadata or {}),
        status=info.status.value,
        points_count=info.points_count or 0,
        indexed_vectors_count=info.indexed_vectors_count or 0,
        segments_count=info.segments_count or 0,
    )


def describe_sync(client: QdrantClient, name: str) -> ObservedCollection | None:
    if not client.collection_exists(name):
        return None
    return observe(client.get_collection(name), name)


# --- core -> Qdrant ---------------------------------------------------------------------

def quantization_config(values: Mapping[str, Any] | None) -> Any:
    """Spec-shaped quantization (``{"scalar": {...}}``) as a qdrant-client model."""
    if not values:
        return None
    if values.get("disabled"):
        return qm.Disabled.DISABLED
    (variant, options), = values.items()
    options = _snake(options)
    if variant == "scalar":
        return qm.ScalarQuantization(scalar=qm.ScalarQuantizationConfig(
            type=qm.ScalarType.INT8, quantile=options.get("quantile"),
            always_ram=options.get("always_ram")))
    if variant == "product":
        return qm.ProductQuantization(product=qm.ProductQuantizationConfig(
            compression=qm.CompressionRatio(options["compression"]),
            always_ram=options.get("always_ram")))
    return qm.BinaryQuantization(binary=qm.BinaryQuantizationConfig(
        always_ram=options.get("always_ram")))


def _hnsw(values: Mapping[str, Any]) -> qm.HnswConfigDiff | None:
    return qm.HnswConfigDiff(**_snake(values)) if values else None


def _optimizers(values: Mapping[str, Any]) -> qm.OptimizersConfigDiff | None:
    return qm.OptimizersConfigDiff(**_snake(values)) if values else None


def vector_params(params: VectorParams) -> qm.VectorParams:
    quantization = quantization_config(settings_dict(params.quantization))
    return qm.VectorParams(
        size=params.size,
        distance=qm.Distance(params.distance),
        on_disk=params.on_disk,
        datatype=_DATATYPES[params.datatype],
        hnsw_config=_hnsw(settings_dict(params.hnsw)),
        quantization_config=None if quantization is qm.Disabled.DISABLED else quantization,
        multivector_config=(qm.MultiVectorConfig(comparator=qm.MultiVectorComparator.MAX_SIM)
                            if params.multivector else None),
    )


def _sparse_params(values: Mapping[str, Any]) -> qm.SparseVectorParams:
    index = {k: values[k] for k in ("onDisk", "fullScanThreshold") if k in values}
    modifier = values.get("modifier")
    return qm.SparseVectorParams(
        index=qm.SparseIndexParams(**_snake(index)) if index else None,
        modifier=qm.Modifier(modifier) if modifier else None,
    )


def payload_schema(index: PayloadIndex) -> Any:
    options = _snake({k: v for k, v in settings_dict(index).items()
                      if k not in {"field", "type"}})
    if not options:
        return qm.PayloadSchemaType(index.type)
    if "tokenizer" in options:
        options["tokenizer"] = qm.TokenizerType(options["tokenizer"])
    params_model = {
        "keyword": qm.KeywordIndexParams, "integer": qm.IntegerIndexParams,
        "float": qm.FloatIndexParams, "bool": qm.BoolIndexParams, "geo": qm.GeoIndexParams,
        "datetime": qm.DatetimeIndexParams, "text": qm.TextIndexParams,
        "uuid": qm.UuidIndexParams,
    }[index.type]
    return params_model(type=index.type, **options)


def _create_args(desired: DesiredCollection) -> dict[str, Any]:
    vectors = {name: vector_params(p) for name, p in desired.vectors.items()}
    quantization = quantization_config(settings_dict(desired.quantization))
    return {
        "collection_name": desired.name,
        "vectors_config": vectors.get(UNNAMED) if UNNAMED in vectors else vectors,
        "sparse_vectors_config": {n: _sparse_params(settings_dict(p))
                                  for n, p in desired.sparse_vectors.items()} or None,
        "shard_number": desired.shard_number,
        "replication_factor": desired.replication_factor,
        "write_consistency_factor": desired.write_consistency_factor,
        "on_disk_payload": desired.on_disk_payload,
        "hnsw_config": _hnsw(settings_dict(desired.hnsw)),
        "optimizers_config": _optimizers(settings_dict(desired.optimizers)),
        "quantization_config": None if quantization is qm.Disabled.DISABLED else quantization,
        "metadata": dict(desired.metadata) or None,
    }


def _update_args(name: str, patch: CollectionPatch) -> dict[str, Any]:
    vectors = {
        vector: qm.VectorParamsDiff(
            hnsw_config=_hnsw(changes.get("hnsw", {})),
            quantization_config=quantization_config(changes.get("quantization")),
            on_disk=changes.get("onDisk"),
        )
        for vector, changes in patch.vectors.items()
    }
    return {
        "collection_name": name,
        "optimizers_config": _optimizers(patch.optimizers),
        "collection_params": qm.CollectionParamsDiff(**_snake(patch.params)) if patch.params
        else None,
        "vectors_config": vectors or None,
        "hnsw_config": _hnsw(patch.hnsw),
        "quantization_config": quantization_config(patch.quantization),
        "sparse_vectors_config": {n: _sparse_params(v) for n, v in patch.sparse_vectors.items()}
        or None,
        "metadata": dict(patch.metadata) or None,
    }


def _index_args(action: CreatePayloadIndex) -> dict[str, Any]:
    return {"collection_name": action.collection, "field_name": action.index.field,
            "field_schema": payload_schema(action.index), "wait": True}


def create_sync(client: QdrantClient, desired: DesiredCollection) -> None:
    client.create_collection(**_create_args(desired))


def update_sync(client: QdrantClient, name: str, patch: CollectionPatch) -> None:
    client.update_collection(**_update_args(name, patch))


def apply_sync(client: QdrantClient, action: Action) -> None:
    if isinstance(action, CreateCollection):
        create_sync(client, action.desired)
    elif isinstance(action, UpdateCollection):
        update_sync(client, action.name, action.patch)
    elif isinstance(action, CreatePayloadIndex):
        client.create_payload_index(**_index_args(action))
    else:
        client.delete_payload_index(action.collection, action.field, wait=True)


async def _apply_async(client: AsyncQdrantClient, action: Action) -> None:
    if isinstance(action, CreateCollection):
        await client.create_collection(**_create_args(action.desired))
    elif isinstance(action, UpdateCollection):
        await client.update_collection(**_update_args(action.name, action.patch))
    elif isinstance(action, CreatePayloadIndex):
        await client.create_payload_index(**_index_args(action))
    else:
        await client.delete_payload_index(action.collection, action.field, wait=True)


async def _describe_async(client: AsyncQdrantClient, name: str) -> ObservedCollection | None:
    try:
        info = await client.get_collection(name)
    except UnexpectedResponse as exc:
        if exc.status_code == 404:
            return None
        raise
    return observe(info, name)


def _target(action: Action) -> str:
    if isinstance(action, CreateCollection):
        return action.desired.name
    if isinstance(action, UpdateCollection):
        return action.name
    return action.collection


def _count_write(collection: str, action: str) -> None:
    QDRANT_WRITES.labels(action).inc()
    QDRANT_COLLECTION_WRITES.labels(collection, action).inc()


# --- the async interface ------------------------------------------------------------------

class CollectionGateway(Protocol):
    """What reconcilers ask of Qdrant about one collection, from async code."""

    async def describe(self, name: str) -> ObservedCollection | None:
        """The collection as the core sees it, or None when it does not exist."""

    async def apply(self, action: Action) -> None:
        """Executes one planned action (written, and waited for, before returning)."""

    async def delete(self, name: str) -> bool:
        """Deletes the collection; whether Qdrant says it deleted one."""


class ServerCollections:
    """A Qdrant server, through the engine's long-lived ``AsyncQdrantClient``."""

    def __init__(self, engine: QdrantEngine) -> None:
        self._engine = engine

    async def describe(self, name: str) -> ObservedCollection | None:
        return await self._engine.request(lambda client: _describe_async(client, name))

    async def apply(self, action: Action) -> None:
        await self._engine.request(lambda client: _apply_async(client, action))

    async def delete(self, name: str) -> bool:
        return await self._engine.request(lambda client: client.delete_collection(name))


class EmbeddedCollections:
    """The embedded engine: the local-mode client on the engine's own thread, locked."""

    def __init__(self, engine: QdrantEngine) -> None:
        self._engine = engine

    async def describe(self, name: str) -> ObservedCollection | None:
        return await self._engine.run(lambda client: describe_sync(client, name))

    async def apply(self, action: Action) -> None:
        await self._engine.run(lambda client: apply_sync(client, action))

    async def delete(self, name: str) -> bool:
        return await self._engine.run(lambda client: client.delete_collection(name))


def gateway(engine: QdrantEngine) -> CollectionGateway:
    return ServerCollections(engine) if engine.is_async else EmbeddedCollections(engine)


async def describe(engine: QdrantEngine, name: str) -> ObservedCollection | None:
    return await gateway(engine).describe(name)


async def apply(engine: QdrantEngine, action: Action) -> None:
    _count_write(_target(action), type(action).__name__)
    await gateway(engine).apply(action)


async def delete(engine: QdrantEngine, name: str) -> bool:
    _count_write(name, "DeleteCollection")
    return await gateway(engine).delete(name)
