"""Zoho CRM Notifications API callbacks: verify the channel token, bind to the channel, turn
record events into neutral changes.

A channel is enabled with `POST /actions/watch` (channel_id, events such as `Leads.all`,
notify_url, token). Zoho POSTs JSON to notify_url: `channel_id`, `token` (the value we gave,
echoed back — the only proof of origin; Zoho signs nothing), `module`, `operation` (insert,
update, delete), `ids`, `affected_fields`, `server_time` (epoch ms) and, when the channel asked
for them, `affected_values`. So:
- `verify` compares the token (constant time) with the connection's `channel_token` and refuses
  a `server_time` more than 5 minutes away (a replay);
- the tenant is the channel: an event for another `channel_id` is refused (fail closed);
- one event per record id, with the id `channel:module:operation:server_time:record`, stable
  across Zoho's retries of the same callback; the token is never stored with the payload.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from crm_mcp.connectors.webhooks import (
    IncomingEvent,
    RemoteChange,
    SignatureRejected,
    Verified,
    check_fresh,
    parse_timestamp,
)

from . import wire
from .spec import APPOINTMENT_STATUS_FROM_WIRE, LEAD_STATUS_FROM_WIRE, PERSON_MODULES

_PERSON_FIELDS = {"First_Name": "first_name", "Last_Name": "last_name", "Email": "email", "Phone": "phone"}
_PERSON_FIELDS |= {"Lead_Source": "source"}
_EVENT_FIELDS = {"Start_DateTime": "start_time", "End_DateTime": "end_time", "Event_Title": "title"}
_EVENT_FIELDS |= {"Description": "notes"}


def _body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SignatureRejected("the notification body is not JSON, so it carries no channel token") from None
    if not isinstance(data, dict):
        raise SignatureRejected("the notification body is not an object")
    return data


class ZohoWebhooks:
    """The WebhookAdapter for Zoho CRM (see `crm_mcp.connectors.webhooks.WebhookAdapter`)."""

    provider = "zoho"
    tenant_option = "channel_id"
    tenant_label = "notification channel"
    busy_status = 503

    def verify(
        self,
        options: Mapping[str, Any],
        *,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime,
    ) -> Verified:
        expected = options.get("channel_token")
        if not expected:
            raise SignatureRejected("no Zoho channel_token is configured for this connection")
        data = _body(body)
        given = str(data.get("token") or "")
        if not hmac.compare_digest(given.encode(), str(expected).encode()):
            raise SignatureRejected("the notification's channel token is not this connection's")
        when = parse_timestamp(data.get("server_time"))
        if when is None:
            raise SignatureRejected("the notification has no server_time")
        check_fresh(when, now)
        return Verified(scheme="zoho-channel-token", timestamp=when)

    def events(self, data: Any, body: bytes, verified: Verified, now: datetime) -> list[IncomingEvent]:
        if not isinstance(data, dict):
            raise ValueError("a Zoho notification must be an object")
        ids = data.get("ids")
        if not isinstance(ids, list) or not ids:
            raise ValueError("the Zoho notification names no record ids")
        values = {str(v.get("id")): v for v in data.get("affected_values") or [] if isinstance(v, dict)}
        shared = {k: v for k, v in data.items() if k not in ("token", "ids", "affected_values")}
        out = []
        for rid in ids:
            parts = (
                data.get("channel_id"),
                data.get("module"),
                data.get("operation"),
                data.get("server_time"),
                rid,
            )
            event_id = ":".join("" if p is None else str(p) for p in parts)
            payload = {**shared, "id": str(rid), "values": values.get(str(rid), {})}
            kind = f"{data.get('module')}.{data.get('operation')}"
            out.append(IncomingEvent(event_id[:255], kind, payload))
        return out

    def tenant(self, payload: Mapping[str, Any]) -> str | None:
        channel = payload.get("channel_id")
        return None if channel is None else str(channel)

    def changes(
        self, event: IncomingEvent, *, field_ids: Mapping[str, Collection[str]]
    ) -> list[RemoteChange]:
        p = event.payload
        module, operation, rid = str(p.get("module") or ""), str(p.get("operation") or ""), str(p.get("id"))
        when = parse_timestamp(p.get("server_time"))
        raw = p.get("values")
        values: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if module in PERSON_MODULES:
            cid = wire.person_id(module, rid)
            if operation == "delete":
                return [RemoteChange("contact", cid, {}, when, deleted=True)]
            fields = {_PERSON_FIELDS[k]: v for k, v in values.items() if k in _PERSON_FIELDS}
            status_keys = {"Lead_Status", *field_ids.get("lead_status", ())}
            for key in status_keys & values.keys():
                neutral = LEAD_STATUS_FROM_WIRE.get(str(values[key] or "").lower())
                if neutral:
                    fields["status"] = neutral
            return [RemoteChange("contact", cid, fields, when, created=operation == "insert")]
        if module == "Events":
            if operation == "delete":
                return [RemoteChange("appointment", rid, {}, when, deleted=True)]
            fields = {_EVENT_FIELDS[k]: v for k, v in values.items() if k in _EVENT_FIELDS}
            for key in ("start_time", "end_time"):
                if key in fields:
                    fields[key] = wire.from_wire_time(fields[key])
            status = APPOINTMENT_STATUS_FROM_WIRE.get(str(values.get("Appointment_Status") or "").lower())
            if status:
                fields["status"] = status
            return [RemoteChange("appointment", rid, fields, when, created=operation == "insert")]
        return []
