"""The `/_sandbox` control plane: drive the simulator over HTTP from another process.

The same endpoints as the other simulators (`state`, `stats`, `faults`, `reset`, `limits`,
`oauth`: `crm_mcp.sandbox.control`), plus `calls` (POST `{"calls": 500, "days": 3}` re-seeds the
call history; GET describes it) and `recordings` (POST makes every processing recording ready).
Control calls are never counted, rate limited or faulted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_mcp.sandbox import control
from crm_mcp.sandbox.control import json_object

if TYPE_CHECKING:
    from .sandbox import RingCentralSandbox


def control_routes(sb: RingCentralSandbox) -> list[Route]:
    def limits(body: dict[str, Any]) -> dict[str, int]:
        """POST `{"heavy": 100}` (or `{"all": 1000}`); answers the limits per group."""
        return sb.set_limits(**{k: int(v) for k, v in body.items()})

    async def calls(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(sb.describe())
        try:
            body = await json_object(request)
            n, days = int(body.get("calls", sb.config.calls)), int(body.get("days", sb.config.days))
            pending = body.get("pending_recordings")
            if n < 0 or n > 100_000 or days < 1:
                raise ValueError("calls must be 0..100000 and days >= 1")
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": f"bad seed: {exc}"}, status_code=400)
        return JSONResponse(sb.seed_calls(n, days, None if pending is None else int(pending)))

    async def recordings(request: Request) -> Response:
        return JSONResponse({"released": sb.release_recordings(), **sb.describe()})

    return [
        *control.control_routes(
            state=lambda: {**sb.describe(), "limits": dict(sb.config.group_limits), "stats": sb.stats},
            stats=lambda: sb.stats,
            faults=sb.faults,
            reset=sb.reset,
            limits=limits,
            oauth=sb.oauth,
        ),
        Route("/_sandbox/calls", calls, methods=["GET", "POST"]),
        Route("/_sandbox/recordings", recordings, methods=["POST"]),
    ]
