"""What a Zoho CRM connection needs, for `generate_connector_config` and `crm-mcp config generate`:
OAuth scopes per tool (ZohoCRM.modules.* / ZohoCRM.settings.fields.READ, crm-oas common.json),
the notification events to watch, the limits that apply, the options it takes.
"""

from __future__ import annotations

from crm_mcp.connectors.provider import SetupTemplate

_PEOPLE_R = ("ZohoCRM.modules.leads.READ", "ZohoCRM.modules.contacts.READ")
_PEOPLE_W = ("ZohoCRM.modules.leads.ALL", "ZohoCRM.modules.contacts.ALL")
_FIELDS = ("ZohoCRM.settings.fields.READ",)
_ORG = ("ZohoCRM.org.READ",)

SETUP = SetupTemplate(
    scopes={
        "search_contacts": _PEOPLE_R,
        "get_contact": _PEOPLE_R,
        "upsert_contact": (*_PEOPLE_W, *_FIELDS),
        "add_contact_note": (*_PEOPLE_R, "ZohoCRM.modules.notes.ALL"),
        "create_appointment": (*_PEOPLE_R, "ZohoCRM.modules.events.ALL"),
        "update_appointment_status": (*_PEOPLE_R, "ZohoCRM.modules.events.ALL"),
        "qualify_lead": (*_PEOPLE_W, *_FIELDS),
        "analyze_crm_schema": _FIELDS,
        "validate_sync": _PEOPLE_R,
        "sync_records": (*_PEOPLE_W, *_FIELDS),
        "sync_call_logs": (
            *_PEOPLE_W,
            "ZohoCRM.modules.calls.ALL",
            "ZohoCRM.modules.tasks.ALL",
            "ZohoCRM.modules.attachments.ALL",
        ),
        "check_integration_health": _ORG,
    },
    webhook_events=("Leads.all", "Contacts.all", "Events.all"),
    limits=(
        "API credits per org per rolling 24 h (Free 5,000; paid editions 50,000 + a per-user "
        "allowance), 1 credit per call and 1 per 10 records on writes, X-API-CREDITS-REMAINING once "
        "half is used; concurrent calls per org (Free 5, Standard 10, Professional 15, Enterprise 20, "
        "Ultimate 25); 429 with no Retry-After over either; 100 records per write; 10 access tokens "
        "per refresh token per 10 minutes"
    ),
    required_options=("client_id", "client_secret", "refresh_token"),
    optional_options=(
        "data_centre",
        "accounts_url",
        "api_domain",
        "api_version",
        "token",
        "channel_id",
        "channel_token",
        "plan",
        "concurrency",
        "daily_credits",
    ),
    auth_note="A Server-based or Self Client in the Zoho API console of the org's data centre "
    "(data_centre: US, EU, IN, AU, CN, JP, CA or SA) with the scopes above, and its refresh token "
    "(access_type=offline). Events need a picklist field Appointment_Status (Scheduled, Confirmed, "
    "Cancelled, Completed, No Show). channel_id / channel_token are the Notifications API channel "
    "(actions/watch) whose callbacks are accepted at /webhooks/zoho/<connection>.",
    option_patterns={
        "data_centre": (r"US|EU|IN|AU|CN|JP|CA|SA", "EU"),
        "api_version": (r"v7|v8", "v8"),
        "channel_id": (r"[0-9]{1,20}", "1000000068001"),
    },
)
