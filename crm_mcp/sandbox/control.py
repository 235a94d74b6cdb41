"""The ``/_sandbox`` control routes the simulators share: drive one over HTTP from another process.

``state``, ``stats``, ``faults``, ``reset``, ``limits`` and ``oauth`` behave the same on every
simulator that has them, so a benchmark or the demo drives any of them the same way; a simulator
adds its own routes (call seeding, webhook events...) next to these. Control calls are never
counted, rate limited or faulted: the simulators' edges pass ``/_sandbox`` paths straight through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_mcp.sandbox.faults import FaultInjector


class OAuthControl(Protocol):
    """What the ``oauth`` route drives: a simulator's token server."""

    @property
    def grants(self) -> Mapping[str, int]: ...

    def expire_access_tokens(self) -> None: ...

    def revoke(self) -> None: ...


async def json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object body; an empty body is ``{}``."""
    body = await request.json() if (await request.body()).strip() else {}
    if not isinstance(body, dict):
        raise TypeError("expected a JSON object")
    return body


def _bad(what: str, exc: Exception) -> Response:
    return JSONResponse({"error": f"bad {what}: {exc}"}, status_code=400)


def faults_route(injector: FaultInjector) -> Route:
    """``GET`` the active faults; ``POST {"kind": ..., ...}`` adds one; ``DELETE`` clears them."""

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            injector.clear()
        elif request.method == "POST":
            try:
                kwargs = await json_object(request)
                injector.set(kwargs.pop("kind"), **kwargs)
            except (ValueError, TypeError, KeyError) as exc:
                return _bad("fault", exc)
        return JSONResponse(injector.describe())

    return Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"])


def control_routes(
    *,
    state: Callable[[], Any],
    faults: FaultInjector,
    reset: Callable[[], None],
    stats: Callable[[], Any],
    limits: Callable[[dict[str, Any]], Any],
    oauth: OAuthControl | None = None,
) -> list[Route]:
    """The shared control routes.

    ``limits`` applies a ``POST``ed object and answers the limits now in force (raising
    ``ValueError`` or ``TypeError`` on a bad one); ``oauth``, when given, adds
    ``POST {"action": "expire" | "revoke"}`` (both answer the grant counters).
    """

    async def state_(request: Request) -> Response:
        return JSONResponse(state())

    async def stats_(request: Request) -> Response:
        return JSONResponse(stats())

    async def reset_(request: Request) -> Response:
        reset()
        return JSONResponse({"ok": True})

    async def limits_(request: Request) -> Response:
        try:
            return JSONResponse(limits(await json_object(request)))
        except (ValueError, TypeError) as exc:
            return _bad("limits", exc)

    routes = [
        Route("/_sandbox/state", state_, methods=["GET"]),
        Route("/_sandbox/stats", stats_, methods=["GET"]),
        faults_route(faults),
        Route("/_sandbox/reset", reset_, methods=["POST"]),
        Route("/_sandbox/limits", limits_, methods=["POST"]),
    ]
    if oauth is None:
        return routes
    tokens = oauth

    async def oauth_(request: Request) -> Response:
        if request.method == "POST":
            try:
                action = (await json_object(request))["action"]
            except (ValueError, TypeError, KeyError) as exc:
                return _bad("command", exc)
            if action == "expire":
                tokens.expire_access_tokens()
            elif action == "revoke":
                tokens.revoke()
            else:
                return JSONResponse({"error": f"unknown action {action!r}"}, status_code=400)
        return JSONResponse({"grants": dict(tokens.grants)})

    return [*routes, Route("/_sandbox/oauth", oauth_, methods=["GET", "POST"])]
