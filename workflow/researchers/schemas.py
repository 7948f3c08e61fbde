"""Validated input and the answers of researcher profiles, programmes' selection rounds and placements."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from models.base import storable
from models.tables import PlacementState, ProgrammeKind
from workflow.schemas import StrictIn, UtcDateTime

RowId = Annotated[int, Field(ge=1, le=2**31 - 1)]
Text = Annotated[str, AfterValidator(storable)]


class ResearcherCreate(StrictIn):
    """A researcher's profile: name, affiliation (staff name it; a university user's is their own), title, fields,
    their published achievements, and what they offer in their own words."""

    name: Text = Field(min_length=1, max_length=100)
    organisation_id: RowId | None = None
    title: Text = Field(default="", max_length=100)
    fields: list[Annotated[Text, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=20)
    self_description: Text = Field(default="", max_length=5000)
    achievement_ids: list[RowId] = Field(default_factory=list, max_length=200)


class ResearcherUpdate(StrictIn):
    title: Text | None = Field(default=None, max_length=100)
    fields: list[Annotated[Text, Field(min_length=1, max_length=100)]] | None = Field(default=None, max_length=20)
    self_description: Text | None = Field(default=None, max_length=5000)
    achievement_ids: list[RowId] | None = Field(default=None, max_length=200)
    active: bool | None = None


class ResearcherOut(BaseModel):
    id: int
    name: str
    organisation_id: int
    title: str
    fields: list[str]
    self_description: str
    achievement_ids: list[int]
    active: bool
    created_at: UtcDateTime


class ResearcherHit(BaseModel):
    """A researcher for a need: the fused score, and why — their achievements the need matched (the achievements'
    own ranking) and how close their profile reads (dense similarity), each with its rank."""

    researcher: ResearcherOut
    score: float
    reasons: dict[str, Any]


class ProgrammeCreate(StrictIn):
    name: Text = Field(min_length=1, max_length=200)
    kind: ProgrammeKind
    year: int = Field(ge=2000, le=2100)
    per_enterprise: int = Field(default=1, ge=1, le=50)
    per_researcher: int = Field(default=1, ge=1, le=50)


class CandidatesIn(StrictIn):
    researcher_ids: list[RowId] = Field(max_length=5000)


class RequestIn(StrictIn):
    """An enterprise joins the round with the need a researcher should help with."""

    need_id: RowId


class PreferenceIn(StrictIn):
    """3 first choice, 2 preferred, 1 acceptable, 0 refuse (回避). Staff name the enterprise."""

    researcher_id: RowId
    level: int = Field(ge=0, le=3)
    organisation_id: RowId | None = None


class TransitionIn(StrictIn):
    to: PlacementState
    on: date | None = None  # the day it happened (default today): starts and ends of service
    note: Text = Field(default="", max_length=2000)


class PlacementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    programme_id: int
    researcher_id: int
    organisation_id: int
    need_id: int | None
    state: PlacementState
    basis: dict[str, Any]
    enterprise_agreed_at: UtcDateTime | None
    researcher_agreed_at: UtcDateTime | None
    started_on: date | None
    ended_on: date | None
    state_changed_at: UtcDateTime
    created_at: UtcDateTime


class PlacementEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_state: PlacementState | None
    to_state: PlacementState
    actor: str
    note: str
    at: UtcDateTime


class ProgrammeOut(BaseModel):
    id: int
    name: str
    kind: ProgrammeKind
    year: int
    per_enterprise: int
    per_researcher: int
    status: str
    candidates: list[int]
    requests: list[dict[str, int]]
    preferences: list[dict[str, int]]
    placements: list[PlacementOut]
    unplaced: list[dict[str, Any]] = []
