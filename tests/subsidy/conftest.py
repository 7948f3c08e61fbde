"""Helpers for the subsidy tests: requests from plain dicts, a minimal HTTP app with the subsidies router."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from core.errors import DomainError
from subsidy.parameters import PolicyParameters, default_parameters
from subsidy.schemas import EvaluateRequest

CASES = Path(__file__).resolve().parent / "cases"


def request_of(data: dict[str, Any]) -> EvaluateRequest:
    """A validated request from a plain dict."""
    return EvaluateRequest.model_validate(data)


def draft_yaml() -> dict[str, Any]:
    """The packaged parameter file as plain data, to derive variants from."""
    from subsidy.parameters import DEFAULT_PARAMS_FILE

    data = yaml.safe_load(DEFAULT_PARAMS_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    """Dump data as YAML to path."""
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def params() -> PolicyParameters:
    """The packaged draft parameters."""
    return default_parameters()


def _install_fallback_handlers(app: FastAPI) -> None:
    # The same mapping as the app's handler (app/errors.py), for when that module is not importable.
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(exc.to_problem(), status_code=exc.status, media_type="application/problem+json")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        loc = [p for p in exc.errors()[0]["loc"] if p != "body"]
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        return JSONResponse(
            {"status": 422, "field": field, "detail": exc.errors()[0]["msg"]},
            status_code=422,
            media_type="application/problem+json",
        )


@pytest.fixture(scope="session")
def http_app() -> FastAPI:
    """A bare FastAPI app with only the subsidies router and the problem+json handlers."""
    from app.routers.subsidies import router

    app = FastAPI()
    try:
        from app.errors import install
    except ImportError:  # pragma: no cover - the app's handlers are absent
        _install_fallback_handlers(app)
    else:
        install(app)
    app.include_router(router)
    return app
