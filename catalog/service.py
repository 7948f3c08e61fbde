"""Needs and achievements services: keyword-only functions over a Session; the caller commits."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from accounts import audit
from accounts.policy import SYSTEM, Principal
from catalog.schemas import AchievementCreate, AchievementUpdate, NeedCreate, NeedUpdate
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from matching.text import tidy
from models.base import utcnow
from models.changes import record_changes
from models.content import HASHED_COLUMNS, MODERATION_COLUMNS, listing_hash
from models.tables import Achievement, IngestKind, ListingStatus, Need, Organisation, Visibility

Listing = TypeVar("Listing", Need, Achievement)

# Free-text fields are normalised once, here at the boundary (traditional → simplified, full-width → half-width).
_TEXT_FIELDS = {"title", "description", "abstract", "field", "region"}

_FILTERABLE: dict[type, tuple[str, ...]] = {
    Need: ("status", "field", "region", "visibility", "source", "owner_id"),
    Achievement: ("status", "field", "maturity_stage", "source", "owner_id"),
}


@dataclass(frozen=True)
class Page:
    """One page of a listing."""

    items: list[Any]
    total: int
    page: int
    page_size: int


def _normalised(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in _TEXT_FIELDS and isinstance(value, str):
            value = tidy(value)
        elif key == "keywords" and value is not None:
            value = [tidy(k) for k in value]
        out[key] = value
    return out


def _check_owner(session: Session, owner_id: int | None) -> None:
    if owner_id is not None and session.get(Organisation, owner_id) is None:
        raise InvalidInput(f"organisation {owner_id} does not exist", field="owner_id")


def _row_hash(row: Need | Achievement) -> str:
    return listing_hash(type(row), {name: getattr(row, name) for name in HASHED_COLUMNS[type(row)]})


@dataclass(frozen=True)
class Written(Generic[Listing]):
    """A row after a write, and the change-feed position of that write (the index applies it at this seq)."""

    row: Listing
    seq: int


def _feed(session: Session, row: Need | Achievement) -> Written[Any]:
    kind = IngestKind.needs if isinstance(row, Need) else IngestKind.achievements
    seq = record_changes(session=session, kind=kind, ids=[row.id])
    assert seq is not None
    return Written(row=row, seq=seq)


def _create(session: Session, model: type[Listing], data: dict[str, Any], actor: Principal) -> Written[Listing]:
    data = _normalised(data)
    if not actor.is_staff:
        # A publisher publishes for its own organisation.
        if data.get("owner_id") not in (None, actor.organisation_id):
            raise Forbidden(f"you publish for your own organisation ({actor.organisation_id})", field="owner_id")
        data["owner_id"] = actor.organisation_id
    _check_owner(session, data.get("owner_id"))
    source = data.pop("source", None) or "api"
    external_id = data.pop("external_id", None) or uuid.uuid4().hex
    exists = session.scalar(select(model.id).where(model.source == source, model.external_id == external_id))
    if exists is not None:
        raise Conflict(
            f"{model.__tablename__} with source {source!r} and external_id {external_id!r} exists (id {exists})",
            field="external_id",
        )
    row = model(source=source, external_id=external_id, **data)
    row.content_hash = _row_hash(row)
    session.add(row)
    session.flush()
    _audit(session, actor, "create", row, None)
    return _feed(session, row)


def _get(session: Session, model: type[Listing], row_id: int, viewer: Principal = SYSTEM) -> Listing:
    row = session.get(model, row_id)
    if row is None or not can_see(viewer, row):
        raise NotFound(f"{model.__tablename__[:-1]} {row_id} not found")
    return row


def _update(
    session: Session, model: type[Listing], row_id: int, data: dict[str, Any], actor: Principal
) -> Written[Listing]:
    row = _get(session, model, row_id, actor)
    if not actor.is_staff and not actor.owns(row.owner_id):
        raise Forbidden(f"{model.__tablename__[:-1]} {row_id} belongs to another organisation")
    before = audit.snapshot(row)
    data = _normalised(data)
    if "owner_id" in data:
        if not actor.is_staff and data["owner_id"] != actor.organisation_id:
            raise Forbidden("only staff move a listing to another organisation", field="owner_id")
        _check_owner(session, data["owner_id"])
    moderated = any(key in data and data[key] != getattr(row, key) for key in MODERATION_COLUMNS[model])
    for key, value in data.items():
        setattr(row, key, value)
    if moderated:
        row.moderated_at = utcnow()
    row.content_hash = _row_hash(row)
    session.flush()
    _audit(session, actor, "withdraw" if data == {"status": ListingStatus.withdrawn} else "update", row, before)
    return _feed(session, row)


def _audit(
    session: Session, actor: Principal, verb: str, row: Need | Achievement, before: dict[str, Any] | None
) -> None:
    kind = "need" if isinstance(row, Need) else "achievement"
    audit.record(
        session=session,
        actor=actor,
        action=f"{kind}.{verb}",
        target_kind=kind,
        target_id=row.id,
        before=before,
        after=audit.snapshot(row),
    )


def _list(
    session: Session,
    model: type[Listing],
    *,
    page: int,
    page_size: int,
    filters: Mapping[str, Any],
    query: str | None,
    viewer: Principal,
) -> Page:
    stmt: Select[Any] = select(model)
    if not viewer.is_staff:
        stmt = stmt.where(visible_to(model, viewer))
    for key, value in filters.items():
        if value is None:
            continue
        if key not in _FILTERABLE[model]:
            raise InvalidInput(f"cannot filter on {key!r}; allowed: {', '.join(_FILTERABLE[model])}", field=key)
        stmt = stmt.where(getattr(model, key) == value)
    if query:
        stmt = stmt.where(model.title.contains(tidy(query), autoescape=True))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    items = session.scalars(stmt.order_by(model.id).offset((page - 1) * page_size).limit(page_size)).all()
    return Page(items=list(items), total=total, page=page, page_size=page_size)


def create_need(
    *, session: Session, data: NeedCreate, source: str | None = None, actor: Principal = SYSTEM
) -> Written[Need]:
    """Publish (or draft) a need; a non-staff publisher's need belongs to its organisation."""
    return _create(session, Need, {**data.model_dump(), "source": source}, actor)


def get_need(*, session: Session, need_id: int, viewer: Principal = SYSTEM) -> Need:
    """One need the viewer may see, or NotFound (a private need of another organisation is not found)."""
    return _get(session, Need, need_id, viewer)


def list_needs(
    *,
    session: Session,
    page: int = 1,
    page_size: int = 20,
    filters: Mapping[str, Any] | None = None,
    query: str | None = None,
    viewer: Principal = SYSTEM,
) -> Page:
    """A page of the needs the viewer may see, filtered on exact attributes and a title substring."""
    return _list(session, Need, page=page, page_size=page_size, filters=filters or {}, query=query, viewer=viewer)


def update_need(*, session: Session, need_id: int, data: NeedUpdate, actor: Principal = SYSTEM) -> Written[Need]:
    """Change the given fields of a need (its own organisation's users, or staff)."""
    return _update(session, Need, need_id, data.model_dump(exclude_unset=True), actor)


def withdraw_need(*, session: Session, need_id: int, actor: Principal = SYSTEM) -> Written[Need]:
    """Withdraw a need: it leaves the search index but stays on record."""
    return _update(session, Need, need_id, {"status": ListingStatus.withdrawn}, actor)


def create_achievement(
    *, session: Session, data: AchievementCreate, source: str | None = None, actor: Principal = SYSTEM
) -> Written[Achievement]:
    """Publish (or draft) an achievement; a non-staff publisher's achievement belongs to its organisation."""
    return _create(session, Achievement, {**data.model_dump(mode="python"), "source": source}, actor)


def get_achievement(*, session: Session, achievement_id: int, viewer: Principal = SYSTEM) -> Achievement:
    """One achievement the viewer may see, or NotFound."""
    return _get(session, Achievement, achievement_id, viewer)


def list_achievements(
    *,
    session: Session,
    page: int = 1,
    page_size: int = 20,
    filters: Mapping[str, Any] | None = None,
    query: str | None = None,
    viewer: Principal = SYSTEM,
) -> Page:
    """A page of the achievements the viewer may see, filtered on exact attributes and a title substring."""
    return _list(
        session, Achievement, page=page, page_size=page_size, filters=filters or {}, query=query, viewer=viewer
    )


def update_achievement(
    *, session: Session, achievement_id: int, data: AchievementUpdate, actor: Principal = SYSTEM
) -> Written[Achievement]:
    """Change the given fields of an achievement (its own organisation's users, or staff)."""
    return _update(session, Achievement, achievement_id, data.model_dump(exclude_unset=True, mode="python"), actor)


def withdraw_achievement(*, session: Session, achievement_id: int, actor: Principal = SYSTEM) -> Written[Achievement]:
    """Withdraw an achievement: it leaves the search index but stays on record."""
    return _update(session, Achievement, achievement_id, {"status": ListingStatus.withdrawn}, actor)


def can_see(viewer: Principal, row: Need | Achievement) -> bool:
    """Whether the viewer may see a row: staff everything, an organisation its own, everyone the public ones."""
    return viewer.is_staff or viewer.owns(row.owner_id) or visible_to_public(row)


def visible_to(model: type[Need] | type[Achievement], viewer: Principal) -> ColumnElement[bool]:
    """The rows a viewer without staff rights may see, as SQL: the published public ones and their organisation's own
    (`can_see` on a loaded row)."""
    public: ColumnElement[bool] = model.status == ListingStatus.published
    if model is Need:
        public = and_(public, Need.visibility == Visibility.public)
    if viewer.organisation_id is None:
        return public
    return or_(public, model.owner_id == viewer.organisation_id)


def visible_to_public(row: Need | Achievement) -> bool:
    """Whether a row may be shown to someone without staff rights."""
    if row.status != ListingStatus.published:
        return False
    return not (isinstance(row, Need) and row.visibility == Visibility.private)


def published_title_abstracts(*, session: Session) -> list[tuple[str, str]]:
    """(title, abstract) of every published achievement with an abstract: what encoder adaptation learns from."""
    stmt = select(Achievement.title, Achievement.abstract).where(
        Achievement.status == ListingStatus.published, Achievement.abstract != ""
    )
    return [(title, abstract) for title, abstract in session.execute(stmt.order_by(Achievement.id))]
