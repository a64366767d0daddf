"""Building blocks shared by the three kinds: base model, CEL helper, conditions, references."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "albumops.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "albumops"

# Qdrant collection and alias names: no path separators, at most 255 characters.
QDRANT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$"
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DURATION_PATTERN = r"^([0-9]+(s|m|h|d))+$"


def _cron_field(value: str) -> str:
    """One cron field: ``*`` or values and ranges in bounds, each with an optional step,
    comma-separated. Month and weekday names are letters here; croniter checks them."""
    element = rf"(\*|({value})(-({value}))?)(/[0-9]{{1,2}})?"
    return rf"{element}(,{element})*"


_CRON_FIELDS = (
    r"[0-5]?[0-9]",                              # minute
    r"[01]?[0-9]|2[0-3]",                        # hour
    r"0?[1-9]|[12][0-9]|3[01]",                  # day of month
    r"0?[1-9]|1[0-2]|[A-Za-z]{3}",               # month
    r"[0-7]|[A-Za-z]{3}",                        # day of week
)
CRON_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|hourly)|"
    + r"\s+".join(f"({_cron_field(v)})" for v in _CRON_FIELDS) + r")$"
)


class CamelModel(BaseModel):
    """Fields are snake_case in Python and camelCase in Kubernetes."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )


def cel(rule: str, message: str, field_path: str | None = None,
        reason: str | None = None) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry, evaluated by the API server."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    if reason:
        entry["reason"] = reason
    return entry


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


def immutable(what: str) -> dict[str, Any]:
    return validations(cel("self == oldSelf", f"{what} is immutable"))


def list_map(*keys: str) -> dict[str, Any]:
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


LIST_SET: dict[str, Any] = {"x-kubernetes-list-type": "set"}
# Lets the API server fill in the nested defaults of an omitted settings object.
EMPTY_OBJECT_DEFAULT: dict[str, Any] = {"default": {}}

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(CamelModel):
    """The state of one aspect of the resource, as Kubernetes conventions describe it."""

    type: str = Field(description="Condition type, e.g. Ready.", max_length=64)
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="One word, CamelCase, from the kind's closed set.",
                        max_length=64)
    message: str = Field(default="", description="Human-readable detail.", max_length=4096)
    last_transition_time: str = Field(
        description="When status last changed (RFC 3339).", max_length=64)
    observed_generation: int = Field(
        default=0, description="metadata.generation this condition was computed from.")


def conditions_field() -> Any:
    return Field(
        default_factory=list,
        description="Current conditions of the resource (Ready plus kind-specific ones).",
        max_length=16,
        json_schema_extra=list_map("type"),
    )


class LocalSecretRef(CamelModel):
    """A Secret in the resource's own namespace."""

    name: str = Field(description="Name of the Secret.", max_length=253,
                      pattern=K8S_NAME_PATTERN)


class ConnectionSpec(CamelModel):
    """Overrides the operator-wide Qdrant connection for this resource."""

    secret_ref: LocalSecretRef = Field(
        description=(
            "Secret in this namespace with key `url` (required), and optional keys `apiKey`, "
            "`ca.crt` (PEM bundle for TLS), `grpcPort` (MasterMerge copies over gRPC) and "
            "`peerUrls`. In cluster mode shard snapshots "
            "are asked of a peer that holds the shard (`GET /cluster` names each peer's "
            "p2p URI); its HTTP URL is the URI's host with the scheme and port of `url` (a "
            "StatefulSet's per-pod DNS names; `qdrant-0.qdrant-headless` gets the namespace "
            "of a `<service>.<namespace>.svc` url), unless `peerUrls`, a JSON object from a "
            "peer's URI to its HTTP URL, says otherwise, e.g. "
            "{\"http://qdrant-0.qdrant-headless:6335\": \"https://q0.example.com:6333\"}."
        )
    )


DeletionPolicy = Literal["Retain", "Delete"]


class LabelSelectorRequirement(CamelModel):
    """One label requirement, as in Kubernetes label selectors."""

    key: str = Field(description="Label key.", max_length=317)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values.")
    values: list[str] = Field(default_factory=list, description="Values for In and NotIn.",
                              max_length=64)


class LabelSelector(CamelModel):
    """Selects resources by their labels; all terms must match."""

    match_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels that must be present with these values.",
        json_schema_extra={"maxProperties": 32},
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, description="Label requirements; all must hold.", max_length=16)
