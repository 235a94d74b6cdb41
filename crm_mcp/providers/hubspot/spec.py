"""HubSpot CRM v3's quirks as data: host, rate-limit headers, limits, words and association types.

Sources: the official OpenAPI files (HubSpot/HubSpot-public-api-spec-collection: contacts, notes,
tasks, meetings, properties, associations v4, oauth, account-info) and crm-apis.md §3. Facts the
specs leave out are marked where they come from HubSpot's documentation instead (association type
ids, the search API's own limit and its 10,000-result ceiling, batch size).
"""

from __future__ import annotations

from crm_mcp.connectors.base import EndpointLimit, ProviderSpec

from .settings import DEFAULT_BASE_URL

TOKEN_PATH = "/oauth/v1/token"  # noqa: S105 - a URL path, not a secret
ACCOUNT_PATH = "/account-info/v3/details"
OBJECTS = "/crm/v3/objects"
PROPERTIES = "/crm/v3/properties"
ASSOCIATIONS = "/crm/v4/objects"

# The search API (POST /crm/v3/objects/{type}/search) has its own budget of 4 requests per second
# per account, not reported in the burst headers; its 429 names policy SECONDLY and carries no
# Retry-After (HubSpot's usage-details docs; crm-apis.md §3.8).
SEARCH_PER_SECOND = 4
SEARCH_POLICY = "SECONDLY"
SEARCH_MAX_LIMIT = 200  # PublicObjectSearchRequest.limit: "up to 200 objects"
SEARCH_CEILING = 10_000  # paging past 10,000 results of one query is a 400 (HubSpot docs)
BATCH_MAX = 100  # inputs per batch call (HubSpot docs; more is a 400 for the whole call)
ASSOCIATIONS_PAGE = 500  # v4 association read: default and maximum `limit`

# HubSpot-defined association type ids (directional): the activity -> its contact. Not in the
# OpenAPI files; HubSpot's association-type table (crm-apis.md §3.5/§3.6).
NOTE_TO_CONTACT = 202
TASK_TO_CONTACT = 204
MEETING_TO_CONTACT = 200
CALL_TO_CONTACT = 194

# neutral appointment status -> hs_meeting_outcome, and back
OUTCOME_TO_WIRE = {
    "scheduled": "SCHEDULED",
    "confirmed": "SCHEDULED",
    "cancelled": "CANCELED",
    "completed": "COMPLETED",
    "no_show": "NO_SHOW",
}
OUTCOME_FROM_WIRE = {
    "SCHEDULED": "scheduled",
    "RESCHEDULED": "scheduled",
    "CANCELED": "cancelled",
    "CANCELLED": "cancelled",
    "COMPLETED": "completed",
    "NO_SHOW": "no_show",
}
# neutral lead status -> hs_lead_status option (HubSpot's default options; a portal's own
# options still win: a value that is not offered is skipped by the field resolver)
LEAD_STATUS_TO_WIRE = {
    "new": "NEW",
    "contacted": "CONNECTED",
    "qualified": "OPEN",
    "tour_scheduled": "IN_PROGRESS",
    "application": "OPEN_DEAL",
    "leased": "OPEN_DEAL",
    "lost": "UNQUALIFIED",
}

# hs_lead_status option -> neutral lead status (what a webhook reports; lossy where HubSpot is coarser)
LEAD_STATUS_FROM_WIRE = {
    "NEW": "new",
    "ATTEMPTED_TO_CONTACT": "contacted",
    "CONNECTED": "contacted",
    "OPEN": "qualified",
    "IN_PROGRESS": "tour_scheduled",
    "OPEN_DEAL": "application",
    "UNQUALIFIED": "lost",
    "BAD_TIMING": "lost",
}

HUBSPOT_SPEC = ProviderSpec(
    name="hubspot",
    default_base_url=DEFAULT_BASE_URL,
    remaining_header="X-HubSpot-RateLimit-Remaining",
    limit_header="X-HubSpot-RateLimit-Max",
    interval_ms_header="X-HubSpot-RateLimit-Interval-Milliseconds",
    daily_remaining_header="X-HubSpot-RateLimit-Daily-Remaining",
    daily_limit_header="X-HubSpot-RateLimit-Daily",
    request_id_header="X-HubSpot-Correlation-Id",
    request_id_body_field="correlationId",
    burst_limit=100,
    burst_interval_s=10,
    daily_limit=250_000,
    logical_fields={
        "appointment_status": "crm_mcp_appointment_status",
        "next_appointment_date": "crm_mcp_next_appointment_date",
        "lead_score": "crm_mcp_lead_score",
        "lead_status": "hs_lead_status",
    },
    tenant_option="portal_id",
    tenant_label="portal",
    ping_checks_tenant=True,  # ping compares the account's portal id with portal_id
    endpoint_limits=(
        EndpointLimit(
            name="search",
            path_pattern=r"/crm/v3/objects/[^/]+/search",
            limit=SEARCH_PER_SECOND,
            interval_s=1.0,
            methods=("POST",),
            policies=(SEARCH_POLICY,),
        ),
    ),
    rate_limit_policy_field="policyName",
)
