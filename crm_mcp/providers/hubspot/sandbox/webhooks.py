"""HubSpot app webhooks (v3 subscriptions): the events, and deliveries signed as HubSpot signs them.

A delivery is a JSON **array** of events (HubSpot batches them) POSTed to the app's target URL with
``X-HubSpot-Signature-v3`` (HMAC-SHA256 over method + URI + body + timestamp, keyed with the app's
client secret) and ``X-HubSpot-Request-Timestamp`` in ms, plus the legacy v1 headers HubSpot still
sends next to them. Signing reuses :func:`.signer.hubspot_v3_headers`, which is written
apart from the verifier in ``crm_mcp.providers.hubspot.webhooks`` so the two check each other.

The recorder is the store's change listener: every contact created, changed or archived through
the API becomes the ``contact.creation`` / ``contact.propertyChange`` (one per property) /
``contact.deletion`` event HubSpot would have emitted, for a test to deliver or inspect.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from crm_mcp.providers.hubspot.sandbox.config import HubSpotSandboxConfig
from crm_mcp.providers.hubspot.sandbox.object_types import ObjectType
from crm_mcp.providers.hubspot.sandbox.signer import hubspot_v3_headers
from crm_mcp.providers.hubspot.sandbox.store import Record

SUBSCRIPTION_IDS = {"contact.creation": 1001, "contact.propertyChange": 1002, "contact.deletion": 1003}
_FLAGS = {"contact.creation": "NEW", "contact.deletion": "DELETED"}


def delivery(
    url: str, events: Iterable[Mapping[str, Any]], client_secret: str, timestamp: datetime
) -> tuple[bytes, dict[str, str]]:
    """The exact body bytes and headers of one delivery (sign these bytes, send these bytes)."""
    body = json.dumps([dict(e) for e in events], separators=(",", ":")).encode()
    headers = hubspot_v3_headers(client_secret, "POST", url, body, timestamp=timestamp)
    headers["X-HubSpot-Signature-Version"] = "v1"
    headers["X-HubSpot-Signature"] = hashlib.sha256(client_secret.encode() + body).hexdigest()
    return body, headers


class WebhookEvents:
    """Builds events for stored contacts and records the ones API writes would have emitted."""

    def __init__(self, config: HubSpotSandboxConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._recorded: list[dict[str, Any]] = []

    def event(
        self,
        record: Record,
        subscription_type: str,
        *,
        property_name: str | None = None,
        property_value: str | None = None,
        change_source: str = "CRM",
        attempt_number: int = 0,
        occurred_at_ms: int | None = None,
    ) -> dict[str, Any]:
        """One event dict in the delivery shape.

        Raises:
            ValueError: for a subscription type other than contact creation/propertyChange/deletion,
                or a propertyChange without a property name.
        """
        if subscription_type not in SUBSCRIPTION_IDS:
            raise ValueError(f"unsupported subscription type {subscription_type!r}")
        with self._lock:
            event_id = next(self._ids)
        out: dict[str, Any] = {
            "eventId": event_id,
            "subscriptionId": SUBSCRIPTION_IDS[subscription_type],
            "portalId": self.config.portal_id,
            "appId": self.config.app_id,
            "occurredAt": occurred_at_ms if occurred_at_ms is not None else int(self.config.clock() * 1000),
            "subscriptionType": subscription_type,
            "attemptNumber": attempt_number,
            "objectId": int(record["id"]),
            "changeSource": change_source,
        }
        if subscription_type in _FLAGS:
            out["changeFlag"] = _FLAGS[subscription_type]
        if subscription_type == "contact.propertyChange":
            if not property_name:
                raise ValueError("a contact.propertyChange event needs a property_name")
            value = property_value if property_value is not None else record["props"].get(property_name)
            out.update(propertyName=property_name, propertyValue="" if value is None else value)
        return out

    # -- the store's change listener ----------------------------------------------------------------
    def on_change(self, kind: str, otype: ObjectType, record: Record, changed: dict[str, str | None]) -> None:
        if otype.name != "contacts":
            return
        api = "INTEGRATION"  # what HubSpot reports for a change made through an app's API calls
        events = (
            [self.event(record, f"contact.{kind}", change_source=api)] if kind != "propertyChange" else []
        )
        for name, value in changed.items():
            if name in (otype.created_prop, otype.modified_prop, "hs_object_id"):
                continue
            change = "contact.propertyChange"
            events.append(
                self.event(record, change, property_name=name, property_value=value or "", change_source=api)
            )
        for e in events:
            e["sourceId"] = str(self.config.app_id)
        with self._lock:
            self._recorded.extend(events)

    def recorded(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._recorded]

    def drain(self) -> list[dict[str, Any]]:
        """The recorded events, forgotten once returned (a delivery loop takes each event once)."""
        with self._lock:
            out, self._recorded = self._recorded, []
            return out

    def clear(self) -> None:
        with self._lock:
            self._recorded.clear()
