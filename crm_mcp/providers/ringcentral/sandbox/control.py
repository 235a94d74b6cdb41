"""The `/_sandbox` control plane: drive the simulator over HTTP from another process.

The same endpoints as the other simulators (`state`, `stats`, `faults`, `reset`, `limits`,
`oauth`), plus `calls` (POST `{"calls": 500, "days": 3}` re-seeds the call history; GET
describes it) and `recordings` (POST makes every processing recording ready). Control calls are
never counted, rate limited or faulted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from .sandbox import RingCentralSandbox


async def _json(request: Request) -> dict[str, Any]:
    body = await request.json() if (await request.body()).strip() else {}
    if not isinstance(body, dict):
        raise TypeError("expected a JSON object")
    return body


def control_routes(sb: RingCentralSandbox) -> list[Route]:
    async def state(request: Request) -> Response:
        return JSONResponse({**sb.describe(), "limits": dict(sb.config.group_limits), "stats": sb.stats})

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
        """POST `{"heavy": 100}` (or `{"all": 1000}`); answers the limits per group."""
        try:
            values = {k: int(v) for k, v in (await _json(request)).items()}
            return JSONResponse(sb.set_limits(**values))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": f"bad limits: {exc}"}, status_code=400)

    async def oauth(request: Request) -> Response:
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

    async def calls(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(sb.describe())
        try:
            body = await _json(request)
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
        Route("/_sandbox/state", state, methods=["GET"]),
        Route("/_sandbox/stats", stats, methods=["GET"]),
        Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/limits", limits, methods=["POST"]),
        Route("/_sandbox/oauth", oauth, methods=["GET", "POST"]),
        Route("/_sandbox/calls", calls, methods=["GET", "POST"]),
        Route("/_sandbox/recordings", recordings, methods=["POST"]),
    ]
