"""The whole OpenAPI schema, property-tested: no 5xx, every answer as declared, every error problem+json.

Schemathesis generates cases for every operation (valid and invalid input, boundary values such as explicit nulls
and integers past 64 bits) from the app's own /openapi.json, sends them in-process to the app the `client` fixture
runs (a real database and the real embedding model), and checks each answer against the schema. Every operation is
tried twice: with the bootstrap admin token (everything is allowed, so the bodies reach the services) and anonymous.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.app.conftest import STAFF

pytestmark = pytest.mark.slow

PROBLEM = "application/problem+json"
# Bounded and reproducible: a fixed seed, derandomised generation and a few examples per operation and phase.
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 20_240_601,
        # A busy CI machine generates slowly; the speed of generation is not what this tests.
        "suppress-health-check": ["too_slow"],
        "generation": {
            "mode": "all",
            "max-examples": 15,
            "deterministic": True,
            "database": "none",
            # The caller is the test's choice (the admin token, or none): no generated bearer tokens.
            "with-security-parameters": False,
        },
        "phases": {"stateful": {"enabled": False}},
    }
)

Message = dict[str, Any]
ASGIApp = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class _AlreadyStarted:
    """The app the `client` fixture has started: schemathesis' own lifespan run must not start or stop it again."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def errors_are_problems(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx and 5xx answer is application/problem+json with its own status in the body."""
    if response.status_code < 400:
        return None
    media_type = (response.headers.get("content-type") or [""])[0].split(";")[0].strip()
    assert media_type == PROBLEM, f"{response.status_code} answered {media_type!r}, not {PROBLEM}"
    body = response.json()
    assert body.get("status") == response.status_code, f"problem body {body!r} names another status"
    assert body.get("title") and body.get("detail"), f"problem body {body!r} lacks a title or detail"
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    errors_are_problems,
]


@pytest.fixture(scope="module")
def api_schema(client: TestClient, people: dict[str, dict]) -> OpenApiSchema:
    """The app's schema, over a database with a few real rows for the id-taking routes to find."""
    org = people["orgs"]["ent_a"]
    need = {"title": "海水淡化膜组件国产化", "description": "反渗透膜通量衰减快。", "owner_id": org}
    r = client.post("/api/v1/needs", json=need, headers=STAFF)
    assert r.status_code == 201, r.text
    achievement = {"title": "高通量反渗透复合膜", "abstract": "界面聚合制备抗污染复合膜。", "keywords": ["反渗透"]}
    r = client.post("/api/v1/achievements", json=achievement, headers=STAFF)
    assert r.status_code == 201, r.text
    return schemathesis.openapi.from_asgi("/openapi.json", _AlreadyStarted(client.app), config=CONFIG)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32 labels each operation's subtest by rewriting `node._nodeid`, which pytest 9.2 no longer has
    # (it keeps a NodeId in `_id`): give it the attribute to rewrite; pytest's own ids are untouched.
    request.node._nodeid = request.node.nodeid


@schema.parametrize()
def test_as_admin(case: schemathesis.Case) -> None:
    # The bootstrap admin token is no stored token, so POST /tokens/revoke answers 404 and the token keeps working.
    case.call_and_validate(headers=STAFF, checks=CHECKS)


@schema.parametrize()
def test_anonymous(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)
