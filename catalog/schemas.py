"""Validated input for needs and achievements, shared by the API (and any other writer)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.base import storable
from models.tables import ListingStatus, MaturityStage, TransferMode, Visibility

# Money: non-negative, at most two decimal places (fen); pydantic parses "12.30" exactly.
Yuan = Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=2)]
ShortText = Annotated[str, Field(min_length=1, max_length=500)]
# Row ids are 32-bit (PostgreSQL INTEGER): a larger one is invalid input, not an overflow in the driver.
OrganisationId = Annotated[int, Field(ge=1, le=2**31 - 1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_float_money(cls, v: Any, info: Any) -> Any:
        # A JSON float (12.3) is already binary-rounded; money must arrive as a string or an integer.
        if info.field_name and info.field_name.endswith("_yuan") and isinstance(v, float):
            raise ValueError('money must be a decimal string such as "12.30" or an integer, not a float')
        return v

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, v: Any) -> Any:
        return storable(v)


class NeedCreate(_Strict):
    """A new technical need (技术需求)."""

    title: ShortText
    description: str = Field(default="", max_length=20_000)
    field: str | None = Field(default=None, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    budget_yuan: Yuan | None = None
    deadline: date | None = None
    visibility: Visibility = Visibility.public
    status: ListingStatus = ListingStatus.published
    external_id: str | None = Field(default=None, max_length=200)
    owner_id: OrganisationId | None = None


def _null_not_offered(schema: dict[str, Any]) -> None:
    # The JSON schema of a kept() field: the value's own type only, and no default (absent means "keep").
    branches = [b for b in schema.pop("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches
    schema.pop("default", None)


def kept(**constraints: Any) -> Any:
    """An update's field whose column is NOT NULL: left out, the value stays; sent as null, it is invalid input."""
    return Field(default=None, json_schema_extra=_null_not_offered, **constraints)


class _Update(_Strict):
    """Fields to change; absent fields stay."""

    @field_validator("*", mode="after")
    @classmethod
    def _not_null(cls, v: Any, info: Any) -> Any:
        # Runs only for fields that were sent (defaults are not validated): an explicit null, not an absent field.
        if v is None and cls.model_fields[info.field_name].json_schema_extra is _null_not_offered:
            raise ValueError(f"{info.field_name} cannot be null; leave it out to keep it")
        return v


class NeedUpdate(_Update):
    """Fields of a need to change; absent fields stay."""

    title: ShortText | None = kept()
    description: str | None = kept(max_length=20_000)
    field: str | None = Field(default=None, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    budget_yuan: Yuan | None = None
    deadline: date | None = None
    visibility: Visibility | None = kept()
    status: ListingStatus | None = kept()


class AchievementCreate(_Strict):
    """A new research achievement (科技成果)."""

    title: ShortText
    abstract: str = Field(default="", max_length=50_000)
    keywords: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=50)
    field: str | None = Field(default=None, max_length=100)
    maturity_stage: MaturityStage | None = None
    transfer_modes: list[TransferMode] = Field(default_factory=list)
    price_yuan: Yuan | None = None
    patent_numbers: list[Annotated[str, Field(min_length=1, max_length=50)]] = Field(default_factory=list)
    status: ListingStatus = ListingStatus.published
    external_id: str | None = Field(default=None, max_length=200)
    owner_id: OrganisationId | None = None


class AchievementUpdate(_Update):
    """Fields of an achievement to change; absent fields stay."""

    title: ShortText | None = kept()
    abstract: str | None = kept(max_length=50_000)
    keywords: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = kept()
    field: str | None = Field(default=None, max_length=100)
    maturity_stage: MaturityStage | None = None
    transfer_modes: list[TransferMode] | None = kept()
    price_yuan: Yuan | None = None
    patent_numbers: list[Annotated[str, Field(min_length=1, max_length=50)]] | None = kept()
    status: ListingStatus | None = kept()
