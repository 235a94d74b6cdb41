"""GoHighLevel's quirks as data: hosts, version headers, rate-limit headers, words and field keys.

Everything here comes from the official OpenAPI files (shared/specs/gohighlevel) and the API
reference (crm-apis.md §1); the connector, the webhook adapter and the setup template read it.
"""

from __future__ import annotations

from crm_mcp.connectors.base import ProviderSpec

DEFAULT_BASE_URL = "https://services.leadconnectorhq.com"
CONTACTS_VERSION = "2021-07-28"
CALENDARS_VERSION = "2021-04-15"

# neutral appointment status -> GoHighLevel `appointmentStatus`, and back (`invalid` reads as cancelled)
STATUS_TO_WIRE = {
    "scheduled": "new",
    "confirmed": "confirmed",
    "cancelled": "cancelled",
    "completed": "showed",
    "no_show": "noshow",
}
STATUS_FROM_WIRE = {
    **{wire: neutral for neutral, wire in STATUS_TO_WIRE.items()},
    "invalid": "cancelled",
    "booked": "confirmed",
    "active": "confirmed",
    "completed": "completed",
}

GHL_SPEC = ProviderSpec(
    name="gohighlevel",
    default_base_url=DEFAULT_BASE_URL,
    version_headers={"Version": CONTACTS_VERSION},
    remaining_header="X-RateLimit-Remaining",
    limit_header="X-RateLimit-Max",
    interval_ms_header="X-RateLimit-Interval-Milliseconds",
    daily_remaining_header="X-RateLimit-Daily-Remaining",
    daily_limit_header="X-RateLimit-Limit-Daily",
    request_id_body_field="traceId",
    burst_limit=100,
    burst_interval_s=10.0,
    daily_limit=200_000,
    logical_fields={
        "appointment_status": "contact.appointment_status",
        "next_appointment_date": "contact.next_appointment_date",
        "lead_score": "contact.lead_score",
        "lead_status": "contact.lead_status",
    },
    tenant_option="location_id",
    tenant_label="location",
    ping_checks_tenant=True,  # ping is GET /locations/{location_id}
)
