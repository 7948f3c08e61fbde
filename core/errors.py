"""One error family for the whole service; the app maps it to application/problem+json."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every expected failure; carries a stable code and an HTTP status."""

    code: str = "domain_error"
    status: int = 400
    title: str = "Request could not be processed"

    def __init__(self, detail: str, *, field: str | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra or {}

    def to_problem(self) -> dict[str, Any]:
        """RFC 9457 body."""
        body: dict[str, Any] = {
            "type": f"https://techmatch.local/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return body


class NotFound(DomainError):
    code = "not_found"
    status = 404
    title = "Not found"


class InvalidInput(DomainError):
    code = "invalid_input"
    status = 422
    title = "Invalid input"


class Conflict(DomainError):
    code = "conflict"
    status = 409
    title = "Conflict"


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class TooManyRequests(DomainError):
    code = "too_many_requests"
    status = 429
    title = "Too many requests"
