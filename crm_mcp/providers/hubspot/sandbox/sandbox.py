"""``HubSpotSandbox``: one simulated HubSpot portal, its HTTP app and its test-side controls.

What ties the parts together: the records (:mod:`.store`), the endpoints (:mod:`.api`), the
request pipeline — faults, auth, limits, stats — (:mod:`.pipeline`), OAuth (:mod:`.oauth`), rate
limits (:mod:`.limits`) and webhook events (:mod:`.webhooks`). Tests use the Python accessors
(``stats``, ``contacts()``, ``faults``, ``webhook_delivery``); other processes use ``/_sandbox``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from crm_mcp.providers.hubspot.sandbox.api import HubSpotApi
from crm_mcp.providers.hubspot.sandbox.config import HubSpotSandboxConfig
from crm_mcp.providers.hubspot.sandbox.control import control_routes
from crm_mcp.providers.hubspot.sandbox.errors import error_body
from crm_mcp.providers.hubspot.sandbox.limits import RateLimits
from crm_mcp.providers.hubspot.sandbox.oauth import HubSpotOAuth
from crm_mcp.providers.hubspot.sandbox.object_types import CONTACTS, OBJECT_TYPES
from crm_mcp.providers.hubspot.sandbox.pipeline import Pipeline
from crm_mcp.providers.hubspot.sandbox.render import render_full
from crm_mcp.providers.hubspot.sandbox.stats import Stats
from crm_mcp.providers.hubspot.sandbox.store import ObjectStore
from crm_mcp.providers.hubspot.sandbox.values import validate_properties
from crm_mcp.providers.hubspot.sandbox.webhooks import WebhookEvents, delivery
from crm_mcp.sandbox.faults import FaultInjector


class HubSpotSandbox:
    """One simulated HubSpot portal with a private app and an OAuth app installed."""

    def __init__(self, config: HubSpotSandboxConfig | None = None) -> None:
        self.config = config or HubSpotSandboxConfig()
        self.lock = threading.RLock()
        self.faults = FaultInjector(seed=self.config.seed)
        self.counters = Stats()
        self.limits = RateLimits(self.config)
        self.oauth = HubSpotOAuth(self.config)
        self.events = WebhookEvents(self.config)
        self.store = ObjectStore(lambda: self.config.clock(), listener=self.events.on_change)
        self.api = HubSpotApi(self.store, self.counters, self.config, self.lock)
        self.app = Starlette(
            routes=[*control_routes(self), *self.oauth.routes(), *self.api.routes()],
            middleware=[Middleware(Pipeline, sandbox=self)],
            exception_handlers={HTTPException: self._http_error},
        )

    # ------------------------------------------------------------------ reading state
    @property
    def stats(self) -> dict[str, Any]:
        return self.counters.as_dict(dict(self.oauth.grants))

    def contact_count(self) -> int:
        with self.lock:
            return len(self.store.live(CONTACTS))

    def contacts(self) -> list[dict[str, Any]]:
        """Live contacts in id order, each as ``SimplePublicObject`` with every property it holds."""
        with self.lock:
            return [render_full(r) for r in self.store.live(CONTACTS)]

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            objects = {name: [render_full(r) for r in self.store.live(t)] for name, t in OBJECT_TYPES.items()}
        return {**objects, "stats": self.stats}

    # ------------------------------------------------------------------ changing state
    def seed_contacts(self, records: Iterable[Mapping[str, str]]) -> list[str]:
        """Store contacts directly (validated, no HTTP, no stats, no webhook events); their ids.

        Raises:
            ApiError: for a record HubSpot would refuse (unknown property, duplicate email, …).
        """
        ids: list[str] = []
        with self.lock:
            listener, self.store.listener = self.store.listener, None
            try:
                for props in records:
                    clean = validate_properties(CONTACTS, dict(props), creating=True)
                    ids.append(self.store.create(CONTACTS, clean)["id"])
            finally:
                self.store.listener = listener
        return ids

    def reset(self) -> None:
        """Clear records, stats, limits, faults, tokens and recorded events."""
        with self.lock:
            self.store.clear()
        self.counters.reset()
        self.limits.reset()
        self.faults.clear()
        self.oauth.reset()
        self.events.clear()

    def set_limits(
        self,
        burst_max: int | None = None,
        burst_interval_ms: int | None = None,
        daily_limit: int | None = None,
        search_per_second: int | None = None,
        retry_after_on_429: bool | None = None,
    ) -> None:
        changes = {
            "burst_max": burst_max,
            "burst_interval_ms": burst_interval_ms,
            "daily_limit": daily_limit,
            "search_per_second": search_per_second,
            "retry_after_on_429": retry_after_on_429,
        }
        for name, value in changes.items():
            if value is not None:
                setattr(self.config, name, value)

    def limit_settings(self) -> dict[str, Any]:
        c = self.config
        return {
            "burst_max": c.burst_max,
            "burst_interval_ms": c.burst_interval_ms,
            "daily_limit": c.daily_limit,
            "search_per_second": c.search_per_second,
            "retry_after_on_429": c.retry_after_on_429,
        }

    # ------------------------------------------------------------------ webhooks
    def webhook_delivery(
        self, url: str, events: Iterable[Mapping[str, Any]], timestamp: datetime | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Body bytes and headers of a delivery HubSpot would POST to ``url``, signed v3 with the
        app's client secret at ``timestamp`` (default: the sandbox clock's now)."""
        when = timestamp or datetime.fromtimestamp(self.config.clock(), UTC)
        return delivery(url, events, self.config.client_secret, when)

    def contact_event(
        self,
        contact_id: str,
        subscription_type: str = "contact.propertyChange",
        property_name: str | None = None,
        property_value: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """An event dict for a stored contact (``change_source``, ``attempt_number``,
        ``occurred_at_ms`` may be passed as options).

        Raises:
            KeyError: when no contact has that id.
            ValueError: for an unsupported subscription type or a propertyChange without a name.
        """
        with self.lock:
            record = self.store.tables["contacts"].get(str(contact_id))
            if record is None:
                raise KeyError(f"no contact {contact_id}")
            return self.events.event(
                record,
                subscription_type,
                property_name=property_name,
                property_value=property_value,
                **options,
            )

    def recorded_events(self) -> list[dict[str, Any]]:
        """The webhook events HubSpot would have emitted for contact writes made through the API."""
        return self.events.recorded()

    # ------------------------------------------------------------------ plumbing
    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        cid = request.state.correlation_id
        message = f"Unable to route {request.method} {request.url.path}"
        if status == 405:
            message = f"HTTP {request.method} is not supported by {request.url.path}"
        category = "METHOD_NOT_ALLOWED" if status == 405 else "OBJECT_NOT_FOUND"
        return JSONResponse(error_body(message, category, cid), status_code=status)
