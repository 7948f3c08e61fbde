"""Validated input for needs and achievements, shared by the API (and any other writer)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.tables import ListingStatus, MaturityStage, TransferMode, Visibility

# Money: non-negative, at most two decimal places (fen); pydantic parses "12.30" exactly.
Yuan = Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=2)]
ShortText = Annotated[str, Field(min_length=1, max_length=500)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_float_money(cls, v: Any, info: Any) -> Any:
        # A JSON float (12.3) is already binary-rounded; money must arrive as a string or an integer.
        if info.field_name and info.field_name.endswith("_yuan") and isinstance(v, float):
            raise ValueError('money must be a decimal string such as "12.30" or an integer, not a float')
        return v


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
    owner_id: int | None = None


class NeedUpdate(_Strict):
    """Fields of a need to change; absent fields stay."""

    title: ShortText | None = None
    description: str | None = Field(default=None, max_length=20_000)
    field: str | None = Field(default=None, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    budget_yuan: Yuan | None = None
    deadline: date | None = None
    visibility: Visibility | None = None
    status: ListingStatus | None = None


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
    owner_id: int | None = None


class AchievementUpdate(_Strict):
    """Fields of an achievement to change; absent fields stay."""

    title: ShortText | None = None
    abstract: str | None = Field(default=None, max_length=50_000)
    keywords: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = None
    field: str | None = Field(default=None, max_length=100)
    maturity_stage: MaturityStage | None = None
    transfer_modes: list[TransferMode] | None = None
    price_yuan: Yuan | None = None
    patent_numbers: list[Annotated[str, Field(min_length=1, max_length=50)]] | None = None
    status: ListingStatus | None = None
