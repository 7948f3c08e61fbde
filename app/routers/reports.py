"""Yearly reports (measures 3 and 9: the platform's records as evidence): per organisation and per agency."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from app.deps import IdPath, LeadRecipientDep, SessionDep, StaffDep
from app.errors import PROBLEM_RESPONSES
from core.errors import NotFound
from models.tables import OrgKind
from workflow.reports import service
from workflow.xlsx import XLSX

router = APIRouter(prefix="/api/v1", tags=["reports"], responses=PROBLEM_RESPONSES)
Year = Annotated[int, Query(ge=2000, le=2100, description="The calendar year")]


@router.get("/reports")
def reports(session: SessionDep, _: StaffDep, year: Year, kind: OrgKind | None = None) -> dict[str, Any]:
    """Per organisation (of a kind, e.g. `agency`), the year's leads received and answered by code, its listings
    pushed to others, deals by state and role, contracts and payments, and subsidies from the ledger (staff)."""
    return {"year": year, "kind": kind, "rows": service.yearly(session, year, kind=kind)}


@router.get("/reports.xlsx", responses={200: {"content": {XLSX: {}}}})
def reports_xlsx(session: SessionDep, _: StaffDep, year: Year, kind: OrgKind | None = None) -> Response:
    """The same report as a workbook (staff)."""
    body = service.xlsx(service.yearly(session, year, kind=kind), year)
    name = f"report-{year}{'-' + kind.value if kind else ''}.xlsx"
    return Response(body, media_type=XLSX, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/reports/organisations/{organisation_id}")
def organisation_report(
    organisation_id: IdPath, session: SessionDep, viewer: LeadRecipientDep, year: Year
) -> dict[str, Any]:
    """One organisation's year, from its side (its own users, or staff)."""
    if not viewer.is_staff and viewer.organisation_id != organisation_id:
        raise NotFound(f"organisation {organisation_id} not found")
    (row,) = service.yearly(session, year, organisation_id=organisation_id)
    return row
