"""`crm-mcp worker --webhooks-port N`: stdio deployments receive webhooks through the worker."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.server.test_transports import clean_env, free_port, serving_command

pytestmark = pytest.mark.anyio


async def test_worker_receives_signed_webhooks(tmp_path: Path) -> None:
    import httpx2

    from crm_mcp.providers.gohighlevel.sandbox.signer import GHLWebhookSigner, ghl_event_body

    signer = GHLWebhookSigner(rsa_bits=2048)
    env = clean_env(tmp_path)
    env.update(
        {
            "CRM_MCP_GHL_TOKEN": "not-used-by-this-test",
            "CRM_MCP_GHL_LOCATION_ID": "SbxLoc00000000000001",
            "CRM_MCP_GHL_WEBHOOK_PUBLIC_KEY": signer.rsa_public_pem,
            "CRM_MCP_WEBHOOK_RATE_LIMIT_PER_MINUTE": "1",
            "CRM_MCP_WEBHOOK_RATE_LIMIT_BURST": "2",
        }
    )
    port = free_port()
    body = ghl_event_body(
        {
            "type": "ContactCreate",
            "locationId": "SbxLoc00000000000001",
            "id": "WorkerHookContact001",
            "email": "worker-hook@example.com",
        },
        timestamp=datetime.now(UTC),
        webhook_id="w-1",
    )
    argv = [sys.executable, "-m", "crm_mcp", "worker", "--webhooks-port", str(port)]
    with serving_command(argv, env, port):
        async with httpx2.AsyncClient() as http:
            url = f"http://127.0.0.1:{port}/webhooks/gohighlevel/gohighlevel"
            ok = await http.post(url, content=body, headers=signer.headers(body, ed25519_sig=False))
            assert ok.status_code == 200, ok.text
            unknown = await http.post(
                f"http://127.0.0.1:{port}/webhooks/gohighlevel/nope",
                content=body,
                headers=signer.headers(body, ed25519_sig=False),
            )
            assert unknown.status_code == 404
            # the same rate as under `serve`: a burst of 2 per connection and source IP, then 429
            again = await http.post(url, content=body, headers=signer.headers(body, ed25519_sig=False))
            assert again.status_code == 200, again.text
            refused = await http.post(url, content=body, headers=signer.headers(body, ed25519_sig=False))
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["retry-after"]) >= 1
