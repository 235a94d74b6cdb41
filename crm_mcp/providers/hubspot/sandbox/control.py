"""The ``/_sandbox`` control plane: drive the simulator over HTTP from another process.

The same endpoints as the other simulators (``state``, ``stats``, ``faults``, ``reset``,
``limits``, ``oauth``: ``crm_mcp.sandbox.control``) so a benchmark or the demo drives any of them
the same way, plus ``events`` (the webhook events API writes would have emitted). Control calls
are never counted in the stats, rate limited or faulted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_mcp.sandbox import control

if TYPE_CHECKING:  # only for annotations: the sandbox module imports this one
    from crm_mcp.providers.hubspot.sandbox.sandbox import HubSpotSandbox


def control_routes(sb: HubSpotSandbox) -> list[Route]:
    def limits(body: dict[str, Any]) -> dict[str, Any]:
        sb.set_limits(**body)
        return sb.limit_settings()

    async def events(request: Request) -> Response:
        """``GET`` the recorded webhook events; ``DELETE`` takes them (drains the queue)."""
        taken = sb.events.drain() if request.method == "DELETE" else sb.events.recorded()
        return JSONResponse({"events": taken})

    return [
        *control.control_routes(
            state=sb.snapshot,
            stats=lambda: sb.stats,
            faults=sb.faults,
            reset=sb.reset,
            limits=limits,
            oauth=sb.oauth,
        ),
        Route("/_sandbox/events", events, methods=["GET", "DELETE"]),
    ]
