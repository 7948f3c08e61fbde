"""One exception handler family: every error answers application/problem+json."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import DomainError

log = logging.getLogger("techmatch")
PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _loc(loc: tuple[Any, ...]) -> str:
    # ("body", "contracts", 0, "amount_yuan") → "contracts[0].amount_yuan"
    out = ""
    for part in loc:
        if part in ("body", "query", "path", "header") and not out:
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def install(app: FastAPI) -> None:
    """Register the handlers."""

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(exc.to_problem(), status_code=exc.status, media_type=PROBLEM)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _loc(tuple(e.get("loc", ()))), "reason": e.get("msg", "invalid")} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "reason": "invalid"}
        return problem(
            422,
            "Invalid input",
            f"{first['field']}: {first['reason']}",
            code="invalid_input",
            field=first["field"],
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, "HTTP error", str(exc.detail), code=f"http_{exc.status_code}")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "Internal error", "an unexpected error occurred; it has been logged", code="internal")


# What every problem answer looks like (RFC 9457, plus the stable `code` and the offending `field`); some carry more
# members (`errors` for invalid input, `retry_after_seconds` for too many logins).
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "field": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}


def problem_response(description: str) -> dict[str, Any]:
    """An OpenAPI `responses=` entry answered as application/problem+json."""
    return {"description": description, "content": {PROBLEM: {"schema": PROBLEM_SCHEMA}}}


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: problem_response("Missing or wrong bearer token"),
    403: problem_response("Signed in, but outside the route's audience or the row's organisation"),
    404: problem_response("Not found"),
    409: problem_response("Conflict"),
    422: problem_response("Invalid input, naming the field"),
}
# A route that reads a JSON body: a body that cannot even be decoded (not UTF-8) is 400 (malformed JSON is 422).
BODY_RESPONSES: dict[int | str, dict[str, Any]] = {400: problem_response("The body could not be read as JSON text")}
