"""What a HubSpot connection needs, for `generate_connector_config` and `crm-mcp config generate`:
scopes per tool, the webhook subscriptions to create, the limits that apply, the options it takes.

Scopes are the ones the official OpenAPI files require per endpoint: contacts, notes, tasks and
meetings (and the v4 associations between them) take `crm.objects.contacts.read` / `.write`;
the properties API `crm.schemas.contacts.read`; account details `oauth`.
"""

from __future__ import annotations

from crm_mcp.connectors.provider import SetupTemplate

_R_CONTACTS, _W_CONTACTS = "crm.objects.contacts.read", "crm.objects.contacts.write"
_R_SCHEMA, _ACCOUNT = "crm.schemas.contacts.read", "oauth"

SETUP = SetupTemplate(
    scopes={
        "search_contacts": (_R_CONTACTS,),
        "get_contact": (_R_CONTACTS, _R_SCHEMA),
        "upsert_contact": (_R_CONTACTS, _W_CONTACTS, _R_SCHEMA),
        "add_contact_note": (_R_CONTACTS, _W_CONTACTS),
        "create_appointment": (_R_CONTACTS, _W_CONTACTS, _R_SCHEMA),
        "update_appointment_status": (_R_CONTACTS, _W_CONTACTS, _R_SCHEMA),
        "qualify_lead": (_R_CONTACTS, _W_CONTACTS, _R_SCHEMA),
        "analyze_crm_schema": (_R_SCHEMA,),
        "validate_sync": (_R_CONTACTS,),
        "sync_records": (_R_CONTACTS, _W_CONTACTS, _R_SCHEMA),
        "check_integration_health": (_ACCOUNT,),
    },
    webhook_events=("contact.creation", "contact.propertyChange", "contact.deletion"),
    limits=(
        "100 requests per 10 s per app per portal (150-200 on Professional/Enterprise or with the API "
        "add-on) and, for private apps, 250,000 per day (X-HubSpot-RateLimit-* headers; OAuth apps have "
        "no daily limit); the search API 4 requests per second per portal; 100 inputs per batch call; "
        "search results stop at 10,000 per query"
    ),
    required_options=("token",),
    optional_options=("client_id", "client_secret", "refresh_token", "base_url", "portal_id", "app_secret"),
    auth_note="A private app's access token (Settings > Integrations > Private Apps) with the scopes "
    "above, or a public app install (client_id, client_secret, refresh_token). portal_id binds "
    "webhooks to the portal; app_secret (the app's client secret) verifies their v3 signatures.",
    # the Hub ID (account id) shown in the account menu: digits only
    option_patterns={"portal_id": (r"[0-9]{1,12}", "20385638")},
)
