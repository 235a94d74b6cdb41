"""Zoho CRM's quirks as data: paths, limits, words, and the error body's per-record shape.

Sources: Zoho's official OpenAPI description (zoho/crm-oas, v8.0: record.json, notes.json,
attachments.json, fields.json, notifications.json) and crm-apis.md §2. Where the OAS is silent
(the Calls, Tasks and Events modules' fields, multipart uploads, the refresh limit) the facts come
from Zoho's documentation as quoted in crm-apis.md, and are marked so.
"""

from __future__ import annotations

from typing import Any

from crm_mcp.connectors.base import ProviderSpec

from .settings import DEFAULT_API_DOMAIN

TOKEN_PATH = "/oauth/v2/token"  # noqa: S105 - a URL path, not a secret
LEADS, CONTACTS = "Leads", "Contacts"
PERSON_MODULES = (LEADS, CONTACTS)  # a neutral contact is a lead (default) or a contact
BATCH_MAX = 100  # records per insert / update / upsert call
PAGE_MAX = 200  # per_page
PAGE_WINDOW = 2000  # `page` reaches the first 2,000 records; past them `page_token`
SEARCH_CRITERIA_MAX = 10  # criteria per search
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024  # larger files are refused (413/415)
# Zoho accounts: at most 10 access tokens per refresh token in 10 minutes, then blocked
REFRESH_LIMIT, REFRESH_WINDOW_S = 10, 600.0
ACCESS_TOKEN_TTL_S = 3600

# fields read for a person; `fields` is mandatory on list reads (at most 50)
PERSON_FIELDS = (
    "First_Name",
    "Last_Name",
    "Full_Name",
    "Email",
    "Phone",
    "Mobile",
    "Company",
    "Lead_Source",
    "Lead_Status",
    "Lead_Score",
    "Appointment_Status",
    "Next_Appointment_Date",
    "Tag",
    "Created_Time",
    "Modified_Time",
    "Owner",
)

# neutral lead status -> Zoho's default Lead_Status options, and back (an org's own options still
# win: a value its picklist does not offer is skipped by the field resolver)
LEAD_STATUS_TO_WIRE = {
    "new": "Not Contacted",
    "contacted": "Contacted",
    "qualified": "Pre-Qualified",
    "tour_scheduled": "Contact in Future",
    "application": "Pre-Qualified",
    "leased": "Pre-Qualified",
    "lost": "Lost Lead",
}
LEAD_STATUS_FROM_WIRE = {
    "not contacted": "new",
    "attempted to contact": "contacted",
    "contacted": "contacted",
    "contact in future": "tour_scheduled",
    "pre-qualified": "qualified",
    "not qualified": "lost",
    "lost lead": "lost",
    "junk lead": "lost",
}
# neutral appointment status <-> the Events module's Appointment_Status picklist (created by setup)
APPOINTMENT_STATUS_TO_WIRE = {
    "scheduled": "Scheduled",
    "confirmed": "Confirmed",
    "cancelled": "Cancelled",
    "completed": "Completed",
    "no_show": "No Show",
}
APPOINTMENT_STATUS_FROM_WIRE = {v.lower(): k for k, v in APPOINTMENT_STATUS_TO_WIRE.items()}
# Calls: Call_Type is Inbound, Outbound or Missed (Zoho's picklist)
CALL_TYPES = {"inbound": "Inbound", "outbound": "Outbound"}
MISSED_CALL_TYPE = "Missed"


def error_message(body: Any) -> str:
    """A readable message for Zoho's error bodies: the whole-request `{code, message, details}`
    or, when every record of a write failed, the first per-record error of `data` (naming its
    field: `INVALID_DATA on Email: invalid data`)."""
    if not isinstance(body, dict):
        return ""
    item: Any = body
    data = body.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict):
        item = data[0]
    code, message = item.get("code"), item.get("message")
    if not code and not message:
        return ""
    details = item.get("details") if isinstance(item.get("details"), dict) else {}
    field = details.get("api_name") or details.get("param_name")
    where = f" on {field}" if field else ""
    return f"{code or 'ERROR'}{where}: {message or ''}".strip()


ZOHO_SPEC = ProviderSpec(
    name="zoho",
    default_base_url=DEFAULT_API_DOMAIN,
    # sent only once half of the rolling 24 h credits are used (crm-apis.md §2.11)
    daily_remaining_header="X-API-CREDITS-REMAINING",
    # Zoho has no per-window burst limit, only concurrency (kept by the connector) and credits
    burst_limit=100,
    burst_interval_s=1.0,
    daily_limit=50_000,
    logical_fields={
        "appointment_status": "Appointment_Status",
        "next_appointment_date": "Next_Appointment_Date",
        "lead_score": "Lead_Score",
        "lead_status": "Lead_Status",
    },
    tenant_option="channel_id",
    tenant_label="notification channel",
    error_message=error_message,
)
