"""Subsidies (补助测算): evaluate a year's deals and awards against the policy's money rules."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import OpenDep
from app.errors import BODY_RESPONSES, PROBLEM_RESPONSES
from subsidy import service
from subsidy.schemas import EvaluateRequest, EvaluateResponse

router = APIRouter(prefix="/api/v1/subsidies", tags=["subsidies"])


@router.post(
    "/evaluate",
    response_model=EvaluateResponse,
    responses={**BODY_RESPONSES, 422: PROBLEM_RESPONSES[422]},
    summary="Evaluate subsidies for one year",
)
def evaluate_subsidies(body: EvaluateRequest, _: OpenDep) -> EvaluateResponse:
    """Every item each party is entitled to, one per (measure, party), with a trace; and every rejection."""
    # A calculator over the request alone (no stored data): open to everyone, like the policy text it applies.
    return service.evaluate(request=body)
