"""The ``/_sandbox`` control plane: drive the simulator over HTTP from another process.

The same endpoints as the GoHighLevel simulator (``state``, ``stats``, ``faults``, ``reset``,
``limits``) so a benchmark or the demo drives either the same way, plus ``oauth`` (grant counts;
expire or revoke tokens) and ``events`` (the webhook events API writes would have emitted).
Control calls are never counted in the stats, rate limited or faulted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:  # only for annotations: the sandbox module imports this one
    from crm_mcp.providers.hubspot.sandbox.sandbox import HubSpotSandbox


async def _json(request: Request) -> dict[str, Any]:
    body = await request.json()
    if not isinstance(body, dict):
        raise TypeError("expected a JSON object")
    return body


def control_routes(sb: HubSpotSandbox) -> list[Route]:
    async def state(request: Request) -> Response:
        return JSONResponse(sb.snapshot())

    async def stats(request: Request) -> Response:
        return JSONResponse(sb.stats)

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            sb.faults.clear()
        elif request.method == "POST":
            try:
                kwargs = await _json(request)
                sb.faults.set(kwargs.pop("kind"), **kwargs)
            except (ValueError, TypeError, KeyError) as exc:
                return JSONResponse({"error": f"bad fault: {exc}"}, status_code=400)
        return JSONResponse(sb.faults.describe())

    async def reset(request: Request) -> Response:
        sb.reset()
        return JSONResponse({"ok": True})

    async def limits(request: Request) -> Response:
        try:
            sb.set_limits(**(await _json(request)))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": f"bad limits: {exc}"}, status_code=400)
        return JSONResponse(sb.limit_settings())

    async def oauth(request: Request) -> Response:
        """``POST {"action": "expire" | "revoke"}``; both answer the grant counters."""
        if request.method == "POST":
            try:
                action = (await _json(request))["action"]
            except (ValueError, TypeError, KeyError) as exc:
                return JSONResponse({"error": f"bad command: {exc}"}, status_code=400)
            if action == "expire":
                sb.oauth.expire_access_tokens()
            elif action == "revoke":
                sb.oauth.revoke()
            else:
                return JSONResponse({"error": f"unknown action {action!r}"}, status_code=400)
        return JSONResponse({"grants": dict(sb.oauth.grants)})

    async def events(request: Request) -> Response:
        """``GET`` the recorded webhook events; ``DELETE`` takes them (drains the queue)."""
        taken = sb.events.drain() if request.method == "DELETE" else sb.events.recorded()
        return JSONResponse({"events": taken})

    return [
        Route("/_sandbox/state", state, methods=["GET"]),
        Route("/_sandbox/stats", stats, methods=["GET"]),
        Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/limits", limits, methods=["POST"]),
        Route("/_sandbox/oauth", oauth, methods=["GET", "POST"]),
        Route("/_sandbox/events", events, methods=["GET", "DELETE"]),
    ]
