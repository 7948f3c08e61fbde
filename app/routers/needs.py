"""Technical needs (技术需求): publish, read, list, update, withdraw, and their matching achievements."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import IndexesDep, PrincipalDep, RuntimeDep, SessionDep, WriterDep
from app.errors import PROBLEM_RESPONSES
from app.runtime import Runtime
from app.schemas import MatchResponse, NeedOut, NeedPage, NeedWriteOut
from catalog import service
from catalog.match import matches_for_need
from catalog.schemas import NeedCreate, NeedUpdate
from core.errors import NotFound
from models.tables import ListingStatus, Need, Visibility

router = APIRouter(prefix="/api/v1/needs", tags=["needs"], responses=PROBLEM_RESPONSES)


@router.post("", status_code=201, response_model=NeedWriteOut)
def create_need(body: NeedCreate, session: SessionDep, runtime: RuntimeDep, _: WriterDep) -> NeedWriteOut:
    """Publish a need; `searchable` says whether matching sees it yet (normally within a second)."""
    written = service.create_need(session=session, data=body)
    session.commit()
    return _written(runtime, written)


@router.get("", response_model=NeedPage)
def list_needs(
    session: SessionDep,
    principal: PrincipalDep,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 20,
    status: ListingStatus | None = None,
    field: str | None = None,
    region: str | None = None,
    visibility: Visibility | None = None,
    source: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> NeedPage:
    """A page of needs; without staff rights only published public ones."""
    if not principal.is_staff:
        status, visibility = ListingStatus.published, Visibility.public
    filters = {"status": status, "field": field, "region": region, "visibility": visibility, "source": source}
    got = service.list_needs(session=session, page=page, page_size=page_size, filters=filters, query=q)
    return NeedPage(
        items=[NeedOut.model_validate(r) for r in got.items], total=got.total, page=got.page, page_size=got.page_size
    )


@router.get("/{need_id}", response_model=NeedOut)
def get_need(need_id: int, session: SessionDep, principal: PrincipalDep) -> NeedOut:
    """One need."""
    row = service.get_need(session=session, need_id=need_id)
    if not principal.is_staff and not service.visible_to_public(row):
        raise NotFound(f"need {need_id} not found")
    return NeedOut.model_validate(row)


@router.patch("/{need_id}", response_model=NeedWriteOut)
def update_need(need_id: int, body: NeedUpdate, session: SessionDep, runtime: RuntimeDep, _: WriterDep) -> NeedWriteOut:
    """Change a need; the index follows."""
    written = service.update_need(session=session, need_id=need_id, data=body)
    session.commit()
    return _written(runtime, written)


@router.post("/{need_id}/withdraw", response_model=NeedWriteOut)
def withdraw_need(need_id: int, session: SessionDep, runtime: RuntimeDep, _: WriterDep) -> NeedWriteOut:
    """Withdraw a need from matching."""
    written = service.withdraw_need(session=session, need_id=need_id)
    session.commit()
    return _written(runtime, written)


@router.get("/{need_id}/matches", response_model=MatchResponse)
def need_matches(
    need_id: int,
    session: SessionDep,
    indexes: IndexesDep,
    principal: PrincipalDep,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> MatchResponse:
    """The best achievements for this need, explained."""
    hits = matches_for_need(session=session, indexes=indexes, need_id=need_id, k=k, staff=principal.is_staff)
    return MatchResponse.model_validate({"results": [h.__dict__ for h in hits]})


def _written(runtime: Runtime, written: service.Written[Need]) -> NeedWriteOut:
    """The committed row, after waiting (briefly) for the index to apply the change."""
    searchable = runtime.follower.wait_for("needs", written.seq, timeout=runtime.settings.write_visible_timeout)
    out = NeedOut.model_validate(written.row).model_dump()
    return NeedWriteOut(**out, change_seq=written.seq, searchable=searchable)
