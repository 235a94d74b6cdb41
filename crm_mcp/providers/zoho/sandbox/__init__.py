"""A local Zoho CRM simulator (API v8 and v7), served over real HTTP by ``SandboxServer``.

One port serves every data centre by host-named path prefixes: the accounts servers at
``/<accounts host>/oauth/v2/token`` (``/accounts.zoho.eu/oauth/v2/token``) and the API at
``/<api host>/crm/<version>/…`` (``/www.zohoapis.eu/crm/v8/Leads``). The org lives in one data
centre (``US`` unless configured): its refresh token works only at that accounts server and its
access tokens only at that API host, as with Zoho. Quirks reproduced: the ``Zoho-oauthtoken``
header, one-hour tokens and 10 refreshes per 10 minutes, per-record statuses in 200/201/207
(400 when all fail), 204 on empty reads, ``page`` up to 2,000 records then ``page_token``, the
concurrency cap and rolling 24 h API credits (429 without Retry-After, X-API-CREDITS-REMAINING
once half is used), multipart attachments, Notifications channel callbacks, switchable faults.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from crm_mcp.providers.zoho.settings import DATA_CENTRES
from crm_mcp.sandbox.asgi import buffered
from crm_mcp.sandbox.control import faults_route
from crm_mcp.sandbox.faults import FaultInjector, apply_fault
from crm_mcp.sandbox.runner import SandboxServer

from .api import Api
from .oauth import ZohoAccounts
from .store import Store

SANDBOX_CLIENT_ID = "1000.SANDBOXCLIENT0000000000000000"
SANDBOX_CLIENT_SECRET = "sandbox-zoho-client-secret-0123456789"  # noqa: S105 - the simulator's own
SANDBOX_REFRESH_TOKEN = "1000.sandbox0refresh0token.0123456789abcdef"  # noqa: S105
SANDBOX_TOKEN = "1000.sandbox0static0access.0123456789abcdef"  # noqa: S105
SANDBOX_CHANNEL_ID = "1000000068001"
SANDBOX_CHANNEL_TOKEN = "sandbox-channel-token-4f1c"  # noqa: S105


class Credits:
    """API credits per rolling 24 h on the simulator's clock."""

    def __init__(self, clock: Callable[[], float], limit: int) -> None:
        self.clock, self.limit = clock, limit
        self._spent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def used(self) -> int:
        now = self.clock()
        while self._spent and self._spent[0][0] <= now - 86_400:
            self._spent.popleft()
        return sum(c for _, c in self._spent)

    def spend(self, cost: int) -> tuple[bool, dict[str, str]]:
        """(allowed, headers): X-API-CREDITS-REMAINING only once half the budget is used."""
        with self._lock:
            used = self.used()
            if used + cost > self.limit:
                return False, {"X-API-CREDITS-REMAINING": "0"}
            self._spent.append((self.clock(), cost))
            used += cost
        if used * 2 >= self.limit:
            return True, {"X-API-CREDITS-REMAINING": str(self.limit - used)}
        return True, {}

    def reset(self) -> None:
        with self._lock:
            self._spent.clear()


class _Faults:
    """The ASGI edge: switchable faults on API and token calls (not on /_sandbox)."""

    def __init__(self, app: ASGIApp, sim: ZohoSandbox) -> None:
        self.app, self.sim = app, sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        receive = await buffered(receive)
        fault = self.sim.faults.take(scope["path"])
        if fault is not None:
            status = await apply_fault(fault, send, [])
            if status != -1:
                return
        await self.app(scope, receive, send)


class ZohoSandbox:
    def __init__(
        self,
        *,
        data_centre: str = "US",
        clock: Callable[[], float] = time.time,
        credits: int = 50_000,
        concurrency: int = 20,
    ) -> None:
        self.data_centre, self.clock = data_centre, clock
        self.lock = threading.RLock()
        self.faults = FaultInjector()
        self.store = Store(clock)
        self.accounts = ZohoAccounts(
            clock=clock,
            data_centre=data_centre,
            client_id=SANDBOX_CLIENT_ID,
            client_secret=SANDBOX_CLIENT_SECRET,
            refresh_token=SANDBOX_REFRESH_TOKEN,
            static_token=SANDBOX_TOKEN,
        )
        self.credits = Credits(clock, credits)
        self.concurrency = concurrency
        self.in_flight = 0
        self.latency_s = 0.0
        self.max_attachment_bytes = 20 * 1024 * 1024
        self.stats: Counter[str] = Counter()
        self.api = Api(self)
        routes = [
            Route("/{host}/oauth/v2/token", self.accounts.token, methods=["POST"]),
            faults_route(self.faults),
            Route("/_sandbox/reset", self._reset, methods=["POST"]),
            Route("/_sandbox/state", self._state, methods=["GET"]),
            *self.api.routes(),
        ]
        self.app = _Faults(Starlette(routes=routes), self)

    def set_clock(self, clock: Callable[[], float]) -> None:
        """Run token expiry, credit windows and record times on `clock` (epoch seconds)."""
        self.clock = self.store.clock = self.credits.clock = self.accounts.clock = clock

    def hosts(self, url: str) -> tuple[str, str]:
        """(accounts URL, API domain) of the org's data centre on this server."""
        accounts, api = DATA_CENTRES[self.data_centre]
        return f"{url}/{accounts.split('://', 1)[1]}", f"{url}/{api.split('://', 1)[1]}"

    def reset(self) -> None:
        with self.lock:
            self.store.clear()
        self.accounts.reset()
        self.credits.reset()
        self.faults.clear()
        self.stats.clear()
        self.in_flight = 0

    def contact_count(self) -> int:
        return len(self.store.tables["Leads"]) + len(self.store.tables["Contacts"])

    def notification(
        self,
        module: str,
        operation: str,
        ids: list[str],
        *,
        channel_id: str = SANDBOX_CHANNEL_ID,
        token: str = SANDBOX_CHANNEL_TOKEN,
        when: datetime | None = None,
    ) -> bytes:
        """A Notifications API callback body as Zoho POSTs it to a channel's notify_url."""
        at = when or datetime.fromtimestamp(self.clock(), UTC)
        values = [
            {
                "id": i,
                **{
                    k: v
                    for k, v in self.store.tables.get(module, {}).get(i, {}).items()
                    if isinstance(v, str)
                },
            }
            for i in ids
        ]
        body = {
            "server_time": int(at.timestamp() * 1000),
            "query_params": {},
            "module": module,
            "resource_uri": f"https://www.zohoapis.com/crm/v8/{module}",
            "ids": ids,
            "affected_fields": [],
            "affected_values": values,
            "operation": operation,
            "channel_id": int(channel_id) if channel_id.isdigit() else channel_id,
            "token": token,
        }
        return json.dumps(body).encode()

    async def _state(self, request: Request) -> Response:
        """Record counts, calls per route, credits used and token grants (for people and benches)."""
        with self.lock:
            counts = {m: len(t) for m, t in self.store.tables.items()}
        counts["Attachments"] = len(self.store.attachments)
        return JSONResponse(
            {
                "data_centre": self.data_centre,
                "records": counts,
                "calls": dict(self.stats),
                "credits_used": self.credits.used(),
                "credits_limit": self.credits.limit,
                "token_grants": dict(self.accounts.grants),
            }
        )

    async def _reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"reset": True})


def start_zoho_sandbox(port: int = 0, **kwargs: Any) -> tuple[ZohoSandbox, SandboxServer]:
    """A started simulator and its server (call ``server.stop()`` when done)."""
    sim = ZohoSandbox(**kwargs)
    return sim, SandboxServer(sim.app, port=port).start()
