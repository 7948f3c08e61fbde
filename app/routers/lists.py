"""Demand lists and key-achievement lists (measure 1): compile (staff), read, export to XLSX, import back."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Response, UploadFile
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from app.deps import IdPath, SessionDep, SignedInDep, StaffDep, read_upload
from app.errors import BODY_RESPONSES, PROBLEM_RESPONSES
from models.base import storable
from models.tables import CatalogueList, IngestKind
from workflow.lists import service
from workflow.xlsx import XLSX

router = APIRouter(prefix="/api/v1/lists", tags=["lists"], responses=PROBLEM_RESPONSES)
Text = Annotated[str, AfterValidator(storable)]


class ListCreate(BaseModel):
    """Compile a list for a period from published (and, for needs, public) listings: by field, region and date,
    or exactly the given listings."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: IngestKind
    title: Text = Field(min_length=1, max_length=200)
    period: Text = Field(min_length=1, max_length=100)
    fields: list[Annotated[Text, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=100)
    regions: list[Annotated[Text, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=100)
    since: date | None = None
    listing_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(default_factory=list, max_length=5000)


def _out(session: Session, catalogue: CatalogueList, *, with_items: bool = True) -> dict[str, Any]:
    kind = "needs" if catalogue.kind == IngestKind.needs else "achievements"
    out: dict[str, Any] = {
        "id": catalogue.id,
        "kind": kind,
        "title": catalogue.title,
        "period": catalogue.period,
        "version": catalogue.version,
        "counts": service.counts(session, catalogue),
    }
    if with_items:
        out["items"] = [
            {
                "id": item.id,
                "listing_id": item.listing_id,
                "title": title,
                "field": item.field,
                "region": item.region,
                "industry_chain": item.industry_chain,
                "common_problem": item.common_problem,
                "co_signers": item.co_signers,
                "note": item.note,
                "matches": f"/api/v1/{kind}/{item.listing_id}/matches",
            }
            for item, title in service.items_of(session, catalogue)
        ]
    return out


@router.post("", status_code=201, responses=BODY_RESPONSES)
def compile_list(body: ListCreate, session: SessionDep, actor: StaffDep) -> dict[str, Any]:
    """Compile a demand list (needs) or a key-achievement list (achievements) for a period (staff)."""
    catalogue = service.compile_list(
        session=session,
        kind=body.kind,
        title=body.title,
        period=body.period,
        fields=body.fields,
        regions=body.regions,
        since=body.since,
        listing_ids=body.listing_ids,
        actor=actor,
    )
    return _out(session, catalogue)


@router.get("")
def list_lists(session: SessionDep, _: SignedInDep) -> list[dict[str, Any]]:
    """Every list, newest first, with counts per field."""
    return [_out(session, c, with_items=False) for c in service.list_lists(session=session)]


@router.get("/{list_id}.xlsx", responses={200: {"content": {XLSX: {}}}})
def export_list(list_id: IdPath, session: SessionDep, _: SignedInDep) -> Response:
    """The list as a workbook: a cover sheet with counts, one sheet per field; edit it and import it back."""
    catalogue = service.get_list(session=session, list_id=list_id)
    body = service.export_xlsx(session, catalogue)
    headers = {"Content-Disposition": f'attachment; filename="list-{catalogue.id}-v{catalogue.version}.xlsx"'}
    return Response(body, media_type=XLSX, headers=headers)


@router.get("/{list_id}")
def get_list(list_id: IdPath, session: SessionDep, _: SignedInDep) -> dict[str, Any]:
    """One list with its items, each linked to its matches."""
    return _out(session, service.get_list(session=session, list_id=list_id))


@router.get("/{list_id}/versions")
def list_versions(list_id: IdPath, session: SessionDep, _: StaffDep) -> list[dict[str, Any]]:
    """The list's earlier versions, newest first: the items as they were before each change (staff)."""
    service.get_list(session=session, list_id=list_id)
    return [
        {"version": v.version, "reason": v.reason, "by": v.created_by, "at": v.created_at.isoformat(), "items": v.items}
        for v in service.versions(session=session, list_id=list_id)
    ]


@router.post("/{list_id}/import", responses=BODY_RESPONSES)
async def import_list(list_id: IdPath, session: SessionDep, actor: StaffDep, file: UploadFile) -> dict[str, Any]:
    """Import an edited export (XLSX, staff): per-row results; good rows apply, each bad row is named with its
    sheet, row, column and why."""
    _, data = await read_upload(file, suffixes=(".xlsx",), what="the list")
    catalogue = service.get_list(session=session, list_id=list_id)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "list.xlsx"
        path.write_bytes(data)
        return service.import_xlsx(session=session, catalogue=catalogue, path=path, actor=actor)
