"""The base of every manifest model: camelCase field names, strict types, unknown fields
refused, frozen values. Below ``model``, ``kube``, ``network`` and ``probes``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class _Model(BaseModel):
    """The base of every manifest model: camelCase field names, strict types, unknown
    fields refused, frozen values."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
    )
