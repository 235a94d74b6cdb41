"""What a RingCentral connection needs, for `generate_connector_config` and `crm-mcp config generate`:
app permissions per tool, the limits that apply, the options it takes.

Permissions are the OAS's `x-app-permission` of each operation the connector calls:
`ReadCallLog` (the company call log), `ReadCallRecording` (recording content on the media host),
`ReadAccounts` (the identity check).
"""

from __future__ import annotations

from crm_mcp.connectors.provider import SetupTemplate

_LOG, _REC, _ACCOUNTS = "ReadCallLog", "ReadCallRecording", "ReadAccounts"

SETUP = SetupTemplate(
    scopes={
        "sync_call_logs": (_LOG, _REC, _ACCOUNTS),
        "check_integration_health": (_ACCOUNTS,),
    },
    webhook_events=(),
    limits=(
        "usage-plan groups per user and app, each a sliding 60 s window: Light 50, Medium 40, Heavy 10, "
        "Auth 5 requests (X-Rate-Limit-Group/-Limit/-Remaining/-Window headers); the call log and "
        "recordings are Heavy. Over a limit: 429 with Retry-After and a 60 s penalty that restarts on "
        "every request sent during it. Access tokens live 1 hour; refresh tokens 7 days, single use"
    ),
    required_options=("client_id", "client_secret", "jwt"),
    optional_options=("refresh_token", "base_url", "media_url", "account_id"),
    auth_note="A RingCentral app (developers.ringcentral.com) with the permissions above: for a "
    "server-to-server app, its client id and secret and a JWT credential (jwt); for an OAuth "
    "install, client id, secret and refresh_token instead of jwt. base_url "
    "https://platform.devtest.ringcentral.com selects the developer sandbox.",
    option_patterns={"account_id": (r"~|[0-9]{1,20}", "~")},
)
