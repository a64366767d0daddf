"""Qdrant collection settings as they appear in a spec (vectors, HNSW, quantization, ...)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from album_operator.models.common import CamelModel, cel, immutable, list_map, validations

Distance = Literal["Cosine", "Dot", "Euclid", "Manhattan"]
Datatype = Literal["Float32", "Float16", "Uint8"]
PayloadIndexType = Literal[
    "keyword", "integer", "float", "bool", "geo", "datetime", "text", "uuid"
]


class HnswConfig(CamelModel):
    """HNSW index parameters. Unset fields keep Qdrant's defaults."""

    m: int | None = Field(default=None, ge=0, le=256,
                          description="Edges per node; 0 disables the HNSW graph.")
    ef_construct: int | None = Field(default=None, ge=4, le=4096,
                                     description="Neighbours considered while building.")
    full_scan_threshold: int | None = Field(
        default=None, ge=10, description="Below this many KB of vectors, search scans fully.")
    on_disk: bool | None = Field(default=None, description="Store the HNSW graph on disk.")
    payload_m: int | None = Field(default=None, ge=0, le=256,
                                  description="Edges per node for payload-based (tenant) graphs.")


class ScalarQuantization(CamelModel):
    """Scalar quantization to int8."""

    type: Literal["int8"] = Field(default="int8", description="Quantized type.")
    quantile: float | None = Field(default=None, ge=0.5, le=1.0,
                                   description="Quantile used to clip outliers.")
    always_ram: bool | None = Field(default=None,
                                    description="Keep quantized vectors in RAM.")


class ProductQuantization(CamelModel):
    """Product quantization."""

    compression: Literal["x4", "x8", "x16", "x32", "x64"] = Field(
        description="Compression ratio.")
    always_ram: bool | None = Field(default=None,
                                    description="Keep quantized vectors in RAM.")


class BinaryQuantization(CamelModel):
    """Binary quantization."""

    always_ram: bool | None = Field(default=None,
                                    description="Keep quantized vectors in RAM.")


class QuantizationConfig(CamelModel):
    """Exactly one of scalar, product, binary, or disabled: true."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": validations(cel(
            "(has(self.scalar) ? 1 : 0) + (has(self.product) ? 1 : 0) + "
            "(has(self.binary) ? 1 : 0) + (has(self.disabled) ? 1 : 0) == 1",
            "set exactly one of scalar, product, binary or disabled",
            reason="FieldValueInvalid",
        ))
    }

    scalar: ScalarQuantization | None = Field(default=None, description="Scalar quantization.")
    product: ProductQuantization | None = Field(default=None,
                                                description="Product quantization.")
    binary: BinaryQuantization | None = Field(default=None, description="Binary quantization.")
    disabled: bool | None = Field(
        default=None, description="Explicitly no quantization (must be true when set).",
        json_schema_extra=validations(cel("self", "disabled must be true when set")))


class OptimizersConfig(CamelModel):
    """Segment optimizer settings. Unset fields keep Qdrant's defaults."""

    indexing_threshold: int | None = Field(
        default=None, ge=0, description="KB of vectors per segment before indexing; 0 defers.")
    memmap_threshold: int | None = Field(
        default=None, ge=0, description="KB of vectors per segment before memory-mapping.")
    default_segment_number: int | None = Field(
        default=None, ge=0, le=256, description="Target number of segments.")
    max_segment_size: int | None = Field(
        default=None, ge=1, description="Maximum segment size in KB.")
    deleted_threshold: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Fraction of deleted points that triggers a vacuum.")
    vacuum_min_vector_number: int | None = Field(
        default=None, ge=100, description="Minimum vectors in a segment before vacuuming.")
    flush_interval_sec: int | None = Field(
        default=None, ge=0, description="Seconds between forced flushes.")
    max_optimization_threads: int | None = Field(
        default=None, ge=0, le=256, description="Threads per optimization job; 0 is automatic.")


class MultivectorConfig(CamelModel):
    """Several vectors per point, compared with a late-interaction comparator."""

    comparator: Literal["MaxSim"] = Field(default="MaxSim",
                                          description="How vectors are compared.")


class VectorParams(CamelModel):
    """One dense vector space. Size, distance, datatype and multivector are immutable."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": validations(cel(
            "has(self.multivector) == has(oldSelf.multivector)",
            "multivector is immutable", field_path=".multivector",
        ))
    }

    size: int = Field(ge=1, le=65536, description="Vector dimension.",
                      json_schema_extra=immutable("vector size"))
    distance: Distance = Field(default="Cosine", description="Distance function.",
                               json_schema_extra=immutable("vector distance"))
    on_disk: bool | None = Field(default=None, description="Store vectors on disk (mmap).")
    datatype: Datatype = Field(default="Float32", description="Stored element type.",
                               json_schema_extra=immutable("vector datatype"))
    hnsw: HnswConfig | None = Field(default=None,
                                    description="Per-vector HNSW overrides.")
    quantization: QuantizationConfig | None = Field(
        default=None, description="Per-vector quantization overrides.")
    multivector: MultivectorConfig | None = Field(
        default=None, description="Multivector configuration.",
        json_schema_extra=immutable("multivector"))


class SparseVectorParams(CamelModel):
    """One sparse vector space (for example BM25-style keywords)."""

    modifier: Literal["none", "idf"] | None = Field(
        default=None, description="idf applies inverse document frequency at query time.")
    on_disk: bool | None = Field(default=None, description="Store the sparse index on disk.")
    full_scan_threshold: int | None = Field(
        default=None, ge=0, description="Below this many points, search scans fully.")


class PayloadIndex(CamelModel):
    """An index on one payload field. Options apply only to the types that take them."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": validations(
            cel("!has(self.tokenizer) && !has(self.minTokenLen) && !has(self.maxTokenLen) "
                "&& !has(self.lowercase) || self.type == 'text'",
                "tokenizer, minTokenLen, maxTokenLen and lowercase apply only to type text",
                field_path=".type"),
            cel("!has(self.isTenant) || self.type in ['keyword', 'uuid']",
                "isTenant applies only to types keyword and uuid", field_path=".isTenant"),
            cel("!has(self.isPrincipal) || self.type in ['integer', 'float', 'datetime']",
                "isPrincipal applies only to types integer, float and datetime",
                field_path=".isPrincipal"),
            cel("!has(self.lookup) && !has(self.range) || self.type == 'integer'",
                "lookup and range apply only to type integer", field_path=".type"),
            cel("!has(self.lookup) || !has(self.range) || self.lookup || self.range",
                "lookup and range cannot both be false", field_path=".lookup"),
            cel("!has(self.minTokenLen) || !has(self.maxTokenLen) "
                "|| self.minTokenLen <= self.maxTokenLen",
                "minTokenLen must not exceed maxTokenLen", field_path=".minTokenLen"),
        )
    }

    field: str = Field(min_length=1, max_length=256, description="Payload key (dotted path).")
    type: PayloadIndexType = Field(description="Index type.")
    on_disk: bool | None = Field(default=None, description="Store the index on disk.")
    is_tenant: bool | None = Field(default=None,
                                   description="keyword/uuid: the field partitions tenants.")
    is_principal: bool | None = Field(
        default=None, description="integer/float/datetime: main filter field, optimise storage.")
    lookup: bool | None = Field(default=None, description="integer: support exact match.")
    range: bool | None = Field(default=None, description="integer: support range filters.")
    tokenizer: Literal["word", "whitespace", "prefix", "multilingual"] | None = Field(
        default=None, description="text: how text is split into tokens.")
    min_token_len: int | None = Field(default=None, ge=1, le=256,
                                      description="text: shortest token kept.")
    max_token_len: int | None = Field(default=None, ge=1, le=256,
                                      description="text: longest token kept.")
    lowercase: bool | None = Field(default=None, description="text: lowercase tokens.")


def payload_indexes_field(description: str) -> object:
    return Field(default_factory=list, description=description, max_length=64,
                 json_schema_extra=list_map("field"))
