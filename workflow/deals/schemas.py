"""Validated input and the answers of deal tracking; money as decimal strings (subsidy.schemas Yuan/Money)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from models.tables import ContractType, DealState
from subsidy.schemas import Money, StoredYuan
from workflow.schemas import StrictIn, UtcDateTime

RowId = Annotated[int, Field(ge=1, le=2**31 - 1)]


class DealCreate(StrictIn):
    """Open a deal on a need and an achievement: from a lead its recipient answered with interest, or by staff."""

    need_id: RowId
    achievement_id: RowId
    lead_id: RowId | None = None
    agency_id: RowId | None = None
    # The event, centre or base it came through (staff); from a lead of an event's push batch, that event.
    carrier_id: RowId | None = None
    note: str = Field(default="", max_length=2000)


class TransitionIn(StrictIn):
    to: DealState
    note: str = Field(default="", max_length=2000)


class ContractIn(StrictIn):
    """The deal's technology contract; registration_no and registered_on once it is registered (登记备案)."""

    type: ContractType
    amount_yuan: StoredYuan
    signed_on: date
    registration_no: str | None = Field(default=None, min_length=1, max_length=100)
    registered_on: date | None = None


class PaymentIn(StrictIn):
    paid_on: date
    amount_yuan: StoredYuan


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_state: DealState | None
    to_state: DealState
    actor: str
    note: str
    at: UtcDateTime


class ContractOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    type: ContractType
    amount_yuan: Money
    signed_on: date
    registration_no: str | None
    registered_on: date | None


class PaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    paid_on: date
    amount_yuan: Money
    created_at: UtcDateTime


class DealOut(BaseModel):
    id: int
    state: DealState
    need_id: int
    achievement_id: int
    lead_id: int | None
    buyer_id: int | None
    seller_id: int | None
    agency_id: int | None
    carrier_id: int | None = None
    state_changed_at: UtcDateTime
    created_at: UtcDateTime
    allowed: list[DealState]
    contract: ContractOut | None
    payments: list[PaymentOut]
    paid_yuan: Money
    history: list[EventOut]
