"""What a GoHighLevel connection needs, for `generate_connector_config` and `crm-mcp config generate`:
OAuth scopes per tool, the webhook events to register, the limits that apply, the options it takes.
"""

from __future__ import annotations

from crm_mcp.connectors.provider import SetupTemplate

_R_CONTACTS, _W_CONTACTS = "contacts.readonly", "contacts.write"
_R_CAL, _R_EVENTS, _W_EVENTS = "calendars.readonly", "calendars/events.readonly", "calendars/events.write"
_R_FIELDS, _R_LOCATION = "locations/customFields.readonly", "locations.readonly"
_GHL_ID = r"[A-Za-z0-9]{20}"

SETUP = SetupTemplate(
    scopes={
        "search_contacts": (_R_CONTACTS,),
        "get_contact": (_R_CONTACTS, _R_EVENTS, _R_FIELDS),
        "upsert_contact": (_W_CONTACTS, _R_FIELDS),
        "add_contact_note": (_R_CONTACTS, _W_CONTACTS),
        "find_free_slots": (_R_CAL,),
        "create_appointment": (_W_CONTACTS, _R_CAL, _R_EVENTS, _W_EVENTS, _R_FIELDS),
        "update_appointment_status": (_W_CONTACTS, _W_EVENTS, _R_FIELDS),
        "qualify_lead": (_R_CONTACTS, _W_CONTACTS, _R_EVENTS, _R_FIELDS),
        "analyze_crm_schema": (_R_FIELDS,),
        "validate_sync": (_R_CONTACTS, _R_EVENTS),
        "sync_records": (_R_CONTACTS, _W_CONTACTS, _R_FIELDS),
        "check_integration_health": (_R_LOCATION,),
    },
    webhook_events=(
        "ContactCreate",
        "ContactUpdate",
        "AppointmentCreate",
        "AppointmentUpdate",
        "AppointmentDelete",
    ),
    limits="100 requests per 10 s and 200,000 per day, per location (X-RateLimit-* headers)",
    required_options=("token", "location_id"),
    optional_options=("calendar_id", "base_url", "webhook_public_key", "webhook_ed25519_public_key"),
    auth_note="A Private Integration token (Settings > Private Integrations) of the sub-account, "
    "or a Marketplace app install (client_id, client_secret, refresh_token).",
    # GoHighLevel ids are 20 base62 characters
    option_patterns={
        "location_id": (_GHL_ID, "ve9EPM428h8vShlRW1KT"),
        "calendar_id": (_GHL_ID, "sV3BiXrjzbfo1tSUdyHO"),
    },
)
