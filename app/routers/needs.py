"""Technical needs (技术需求): publish, read, list, update, withdraw, and their matching achievements."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import IdPath, IndexesDep, NeedPublisherDep, PublicDep, RuntimeDep, SessionDep, StorableQuery
from app.errors import BODY_RESPONSES, PROBLEM_RESPONSES
from app.runtime import Runtime
from app.schemas import MatchResponse, NeedOut, NeedPage, NeedWriteOut
from catalog import service
from catalog.match import matches_for_need
from catalog.schemas import NeedCreate, NeedUpdate
from models.tables import ListingStatus, Need, Visibility

router = APIRouter(prefix="/api/v1/needs", tags=["needs"], responses=PROBLEM_RESPONSES, dependencies=[StorableQuery])


@router.post("", status_code=201, responses=BODY_RESPONSES, response_model=NeedWriteOut)
def create_need(body: NeedCreate, session: SessionDep, runtime: RuntimeDep, actor: NeedPublisherDep) -> NeedWriteOut:
    """Publish a need; `searchable` says whether matching sees it yet (normally within a second)."""
    written = service.create_need(session=session, data=body, actor=actor)
    session.commit()
    return _written(runtime, written)


@router.get("", response_model=NeedPage)
def list_needs(
    session: SessionDep,
    viewer: PublicDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 20,
    status: ListingStatus | None = None,
    field: str | None = None,
    region: str | None = None,
    visibility: Visibility | None = None,
    source: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> NeedPage:
    """A page of needs: published public ones, your organisation's own, and everything for staff."""
    filters = {"status": status, "field": field, "region": region, "visibility": visibility, "source": source}
    got = service.list_needs(session=session, page=page, page_size=page_size, filters=filters, query=q, viewer=viewer)
    return NeedPage(
        items=[NeedOut.model_validate(r) for r in got.items], total=got.total, page=got.page, page_size=got.page_size
    )


@router.get("/{need_id}", response_model=NeedOut)
def get_need(need_id: IdPath, session: SessionDep, viewer: PublicDep) -> NeedOut:
    """One need (a private need is not found but by its own organisation and staff)."""
    return NeedOut.model_validate(service.get_need(session=session, need_id=need_id, viewer=viewer))


@router.patch("/{need_id}", responses=BODY_RESPONSES, response_model=NeedWriteOut)
def update_need(
    need_id: IdPath, body: NeedUpdate, session: SessionDep, runtime: RuntimeDep, actor: NeedPublisherDep
) -> NeedWriteOut:
    """Change a need; the index follows."""
    written = service.update_need(session=session, need_id=need_id, data=body, actor=actor)
    session.commit()
    return _written(runtime, written)


@router.post("/{need_id}/withdraw", response_model=NeedWriteOut)
def withdraw_need(need_id: IdPath, session: SessionDep, runtime: RuntimeDep, actor: NeedPublisherDep) -> NeedWriteOut:
    """Withdraw a need from matching."""
    written = service.withdraw_need(session=session, need_id=need_id, actor=actor)
    session.commit()
    return _written(runtime, written)


@router.get("/{need_id}/matches", response_model=MatchResponse)
def need_matches(
    need_id: IdPath,
    session: SessionDep,
    indexes: IndexesDep,
    runtime: RuntimeDep,
    viewer: PublicDep,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> MatchResponse:
    """The best achievements for this need, explained."""
    hits = matches_for_need(session=session, indexes=indexes, need_id=need_id, k=k, viewer=viewer)
    return MatchResponse.of(hits, ranker_version=runtime.ranker_version)


def _written(runtime: Runtime, written: service.Written[Need]) -> NeedWriteOut:
    """The committed row, after waiting (briefly) for the index to apply the change."""
    searchable = runtime.follower.wait_for("needs", written.seq, timeout=runtime.settings.write_visible_timeout)
    out = NeedOut.model_validate(written.row).model_dump()
    return NeedWriteOut(**out, change_seq=written.seq, searchable=searchable)
