"""Validated input for organisations, users and tokens."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from accounts.passwords import MIN_LENGTH
from models.base import storable
from models.tables import OrgKind, Role

Username = Annotated[str, Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")]
Password = Annotated[str, Field(min_length=MIN_LENGTH, max_length=200)]
# Where pushed leads are delivered: an http(s) URL, its signing secret, an e-mail address (one @, a dotted domain).
WebhookUrl = Annotated[str, Field(max_length=500, pattern=r"^https?://[^\s/?#]+[^\s]*$")]
WebhookSecret = Annotated[str, Field(min_length=16, max_length=200)]
Email = Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, v: Any) -> Any:
        return storable(v)


class OrganisationCreate(_Strict):
    """A new organisation (enterprise, university, institute, new R&D institution or agency)."""

    name: str = Field(min_length=1, max_length=200)
    kind: OrgKind
    region: str | None = Field(default=None, max_length=100)
    in_weihai: bool = False
    # The facts the subsidy engine reads about a party (its Party's names and meanings); None: not recorded.
    has_rd_activity: bool | None = None
    public_institution: bool | None = None
    filed: bool | None = None
    tech_sme: bool | None = None
    early_stage_assessed: bool | None = None
    # Deliveries of pushed leads besides the inbox (the secret signs each webhook body; it is never shown back).
    webhook_url: WebhookUrl | None = None
    webhook_secret: WebhookSecret | None = None
    notify_email: Email | None = None


class OrganisationUpdate(_Strict):
    """Changed fields of an organisation (staff): what is absent stays; null clears a fact back to unrecorded."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    region: str | None = Field(default=None, max_length=100)
    in_weihai: bool | None = None
    has_rd_activity: bool | None = None
    public_institution: bool | None = None
    filed: bool | None = None
    tech_sme: bool | None = None
    early_stage_assessed: bool | None = None
    # Deliveries of pushed leads besides the inbox (the secret signs each webhook body; it is never shown back).
    webhook_url: WebhookUrl | None = None
    webhook_secret: WebhookSecret | None = None
    notify_email: Email | None = None


class UserCreate(_Strict):
    """A new user; enterprise, university and agency users belong to an organisation of their kind."""

    username: Username
    password: Password
    role: Role
    organisation_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    display_name: str = Field(default="", max_length=200)
    expertise: str = Field(default="", max_length=5000)


class TokenRequest(_Strict):
    """Username and password, exchanged for a bearer token."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)
