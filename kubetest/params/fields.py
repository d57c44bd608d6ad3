"""What every params section is built from: the model that refuses unknown keys, the
constrained number types, and the http(s) URL check."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
NonNegative = Annotated[float, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _check_http_url(value: str | None, *, allow_embedded: bool = False) -> str | None:
    if value is None or (allow_embedded and value == "embedded"):
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        hint = "'embedded' or " if allow_embedded else ""
        raise ValueError(f"must be {hint}an http(s):// URL with a host, got {value!r}")
    return value
