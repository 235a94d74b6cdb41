"""HubSpot's error bodies, built in one place so every path of the simulator answers alike.

Shapes from the official OpenAPI files (``Error``: ``category``, ``correlationId``, ``message``
required, optional ``subCategory``/``context``/``errors``/``links``; ``StandardError`` for the
per-item errors of a batch), plus the ``"status": "error"`` key HubSpot puts on every error. The
429 body is a different, older shape (``errorType``/``policyName``) and lives here too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

VALIDATION_ERROR = "VALIDATION_ERROR"
OBJECT_NOT_FOUND = "OBJECT_NOT_FOUND"
CONFLICT = "CONFLICT"


def new_correlation_id() -> str:
    return str(uuid.uuid4())


def error_body(
    message: str,
    category: str,
    correlation_id: str,
    *,
    errors: Sequence[Mapping[str, Any]] | None = None,
    context: Mapping[str, list[str]] | None = None,
    sub_category: str | None = None,
) -> dict[str, Any]:
    """The ``Error`` schema as HubSpot sends it (optional keys only when they carry something)."""
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "correlationId": correlation_id,
        "category": category,
    }
    if sub_category:
        body["subCategory"] = sub_category
    if context:
        body["context"] = dict(context)
    if errors:
        body["errors"] = [dict(e) for e in errors]
    return body


def standard_error(category: str, message: str, context: Mapping[str, list[str]]) -> dict[str, Any]:
    """One entry of a batch response's ``errors[]`` (``StandardError``: all six keys required)."""
    return {
        "status": "error",
        "category": category,
        "message": message,
        "context": dict(context),
        "errors": [],
        "links": {},
    }


def rate_limit_body(message: str, policy: str, correlation_id: str) -> bytes:
    """HubSpot's 429 body: not the ``Error`` schema but ``errorType``/``policyName``."""
    body = {
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id,
        "policyName": policy,
    }
    return json.dumps(body).encode()


class ApiError(Exception):
    """Raised by a handler; the endpoint wrapper turns it into an ``Error`` body and status."""

    def __init__(
        self,
        status: int,
        message: str,
        category: str,
        *,
        errors: Sequence[Mapping[str, Any]] | None = None,
        context: Mapping[str, list[str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.category = category
        self.errors = list(errors or [])
        self.context = dict(context or {})

    def body(self, correlation_id: str) -> dict[str, Any]:
        return error_body(
            self.message, self.category, correlation_id, errors=self.errors, context=self.context
        )


def validation(message: str, **context: list[str]) -> ApiError:
    return ApiError(400, message, VALIDATION_ERROR, context=context or None)


def not_found() -> ApiError:
    return ApiError(404, "resource not found", OBJECT_NOT_FOUND)


class PropertyErrors(ApiError):
    """HubSpot's "Property values were not valid: [...]" 400, one entry per bad property.

    The message embeds the JSON list HubSpot embeds; ``errors[]`` repeats it as ``ErrorDetail``s
    so a client need not parse the message. ``problems`` keeps the raw entries for batch items.
    """

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        listing = json.dumps(problems, separators=(",", ":"))
        details = [{"message": p["message"], "code": p["error"], "in": p["name"]} for p in problems]
        super().__init__(400, f"Property values were not valid: {listing}", VALIDATION_ERROR, errors=details)
        self.problems = problems


def property_problem(name: str, error: str, message: str) -> dict[str, Any]:
    return {
        "isValid": False,
        "message": message,
        "error": error,
        "name": name,
        "localizedErrorMessage": message,
    }
