"""Helpers for the subsidy tests: requests from plain dicts, a minimal HTTP app with the subsidies router."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI

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


@pytest.fixture(scope="session")
def http_app() -> FastAPI:
    """A bare FastAPI app with only the subsidies router and the problem+json handlers."""
    from app.errors import install
    from app.routers.subsidies import router

    app = FastAPI()
    install(app)
    app.include_router(router)
    return app
