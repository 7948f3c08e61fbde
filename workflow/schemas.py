"""What every workflow's input and answers share: strict input whose text the database can hold, UTC timestamps."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator

from models.base import as_utc, storable

# Answered with its offset (RFC 3339 date-time), whichever database the row came from.
UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]


class StrictIn(BaseModel):
    """Input: unknown fields refused, text stripped, no value the database cannot store (NUL)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, v: Any) -> Any:
        return storable(v)
