"""Every webhook signature scheme accepts exactly what its provider signs and nothing else.

Bodies are signed with `crm_mcp.sandbox.webhook_signer` (written separately from the verifier),
plus the published Standard Webhooks test vector.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm_mcp.connectors.webhooks import (
    SignatureRejected,
    check_fresh,
    parse_timestamp,
    verify_rsa_sha256,
    verify_standard,
)
from crm_mcp.providers.gohighlevel.sandbox.signer import GHLWebhookSigner
from crm_mcp.providers.gohighlevel.webhooks import GHL_RSA_PUBLIC_KEY_PEM, verify_gohighlevel
from crm_mcp.providers.hubspot.sandbox.signer import hubspot_v3_headers
from crm_mcp.providers.hubspot.webhooks import verify_hubspot_v3
from crm_mcp.sandbox.webhook_signer import (
    new_standard_secret,
    standard_webhook_headers,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BODY = b'{"type":"ContactCreate","id":"c1","webhookId":"w1"}'


@pytest.fixture(scope="module")
def ghl() -> GHLWebhookSigner:
    return GHLWebhookSigner(rsa_bits=2048)


@pytest.fixture(scope="module")
def other_ghl() -> GHLWebhookSigner:
    return GHLWebhookSigner(rsa_bits=2048)


# -- GoHighLevel ------------------------------------------------------------------------------


def test_ghl_rsa_signature_accepted(ghl: GHLWebhookSigner) -> None:
    v = verify_gohighlevel(BODY, ghl.headers(BODY, ed25519_sig=False), rsa_public_key=ghl.rsa_public_pem)
    assert v.scheme == "ghl-rsa"


def test_ghl_rsa_4096_like_production(ghl: GHLWebhookSigner) -> None:
    big = GHLWebhookSigner()  # 4096 bits, the size of GoHighLevel's published key
    sig = big.sign_rsa(BODY)
    assert len(sig) == 684
    assert verify_rsa_sha256(BODY, sig, big.rsa_public_pem)


@pytest.mark.parametrize("key_form", ["pem", "raw"])
def test_ghl_ed25519_signature_accepted(ghl: GHLWebhookSigner, key_form: str) -> None:
    key = ghl.ed25519_public_pem if key_form == "pem" else ghl.ed25519_public_raw_b64
    v = verify_gohighlevel(BODY, ghl.headers(BODY, rsa_sig=False), ed25519_public_key=key)
    assert v.scheme == "ghl-ed25519"


def test_ghl_either_signature_is_enough(ghl: GHLWebhookSigner, other_ghl: GHLWebhookSigner) -> None:
    # a valid RSA signature next to an Ed25519 one from a key we do not hold (rotation window)
    headers = {"x-wh-signature": ghl.sign_rsa(BODY), "X-GHL-Signature": other_ghl.sign_ed25519(BODY)}
    v = verify_gohighlevel(
        BODY, headers, rsa_public_key=ghl.rsa_public_pem, ed25519_public_key=ghl.ed25519_public_pem
    )
    assert v.scheme == "ghl-rsa"


@pytest.mark.parametrize("scheme", ["rsa", "ed25519"])
def test_ghl_tampered_body_rejected(ghl: GHLWebhookSigner, scheme: str) -> None:
    headers = ghl.headers(BODY, rsa_sig=scheme == "rsa", ed25519_sig=scheme == "ed25519")
    tampered = BODY.replace(b"c1", b"c2")
    with pytest.raises(SignatureRejected):
        verify_gohighlevel(
            tampered, headers, rsa_public_key=ghl.rsa_public_pem, ed25519_public_key=ghl.ed25519_public_pem
        )


@pytest.mark.parametrize("scheme", ["rsa", "ed25519"])
def test_ghl_wrong_key_rejected(ghl: GHLWebhookSigner, other_ghl: GHLWebhookSigner, scheme: str) -> None:
    headers = other_ghl.headers(BODY, rsa_sig=scheme == "rsa", ed25519_sig=scheme == "ed25519")
    with pytest.raises(SignatureRejected):
        verify_gohighlevel(
            BODY, headers, rsa_public_key=ghl.rsa_public_pem, ed25519_public_key=ghl.ed25519_public_pem
        )


def test_ghl_default_key_is_the_published_one(ghl: GHLWebhookSigner) -> None:
    # Without configuration the production key is used, so a sandbox-signed body is refused.
    with pytest.raises(SignatureRejected, match="invalid"):
        verify_gohighlevel(BODY, ghl.headers(BODY, ed25519_sig=False))
    assert "MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAokvo" in GHL_RSA_PUBLIC_KEY_PEM


def test_ghl_missing_or_garbage_signature(ghl: GHLWebhookSigner) -> None:
    with pytest.raises(SignatureRejected, match="missing signature"):
        verify_gohighlevel(BODY, {}, rsa_public_key=ghl.rsa_public_pem)
    with pytest.raises(SignatureRejected):
        verify_gohighlevel(BODY, {"x-wh-signature": "not base64!!"}, rsa_public_key=ghl.rsa_public_pem)
    with pytest.raises(SignatureRejected, match="no webhook_ed25519_public_key"):
        verify_gohighlevel(BODY, {"X-GHL-Signature": ghl.sign_ed25519(BODY)})


# -- HubSpot v3 -------------------------------------------------------------------------------

URI = "https://crm.example.com/webhooks/hubspot/hubspot?x=1"


def test_hubspot_v3_accepted() -> None:
    headers = hubspot_v3_headers("s3cret-app", "POST", URI, BODY, timestamp=NOW)
    v = verify_hubspot_v3(
        method="POST", uri=URI, body=BODY, headers=headers, client_secret="s3cret-app", now=NOW
    )
    assert v.scheme == "hubspot-v3" and v.timestamp == NOW


def test_hubspot_v3_decodes_escapes_in_uri() -> None:
    encoded = "https://crm.example.com/webhooks/hubspot/hubspot?next=%3A%2F"
    headers = hubspot_v3_headers(
        "k", "POST", encoded.replace("%3A", ":").replace("%2F", "/"), BODY, timestamp=NOW
    )
    verify_hubspot_v3(method="POST", uri=encoded, body=BODY, headers=headers, client_secret="k", now=NOW)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("body", "invalid"),
        ("secret", "invalid"),
        ("method", "invalid"),
        ("uri", "invalid"),
        ("stale", "stale"),
        ("future", "future"),
    ],
)
def test_hubspot_v3_rejections(change: str, match: str) -> None:
    ts = (
        NOW - timedelta(minutes=6)
        if change == "stale"
        else NOW + timedelta(minutes=6)
        if change == "future"
        else NOW
    )
    headers = hubspot_v3_headers("right", "POST", URI, BODY, timestamp=ts)
    with pytest.raises(SignatureRejected, match=match):
        verify_hubspot_v3(
            method="PUT" if change == "method" else "POST",
            uri=URI + "&y=2" if change == "uri" else URI,
            body=BODY + b" " if change == "body" else BODY,
            headers=headers,
            client_secret="wrong" if change == "secret" else "right",
            now=NOW,
        )


def test_hubspot_v3_within_window_accepted() -> None:
    headers = hubspot_v3_headers("k", "POST", URI, BODY, timestamp=NOW - timedelta(minutes=4, seconds=59))
    verify_hubspot_v3(method="POST", uri=URI, body=BODY, headers=headers, client_secret="k", now=NOW)


# -- Standard Webhooks ------------------------------------------------------------------------

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_HEADERS = {
    "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "webhook-timestamp": "1614265330",
    "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_NOW = datetime.fromtimestamp(1614265330, UTC)


def test_standard_webhooks_reference_vector() -> None:
    v = verify_standard(VECTOR_BODY, VECTOR_HEADERS, secrets=[VECTOR_SECRET], now=VECTOR_NOW)
    assert v.event_id == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    assert v.timestamp == VECTOR_NOW


def test_standard_signer_matches_reference_vector() -> None:
    h = standard_webhook_headers(
        VECTOR_SECRET, VECTOR_BODY, msg_id=VECTOR_HEADERS["webhook-id"], timestamp=1614265330
    )
    assert h["webhook-signature"] == VECTOR_HEADERS["webhook-signature"]


def test_standard_vector_stale_and_future() -> None:
    with pytest.raises(SignatureRejected, match="stale"):
        verify_standard(
            VECTOR_BODY, VECTOR_HEADERS, secrets=[VECTOR_SECRET], now=VECTOR_NOW + timedelta(minutes=6)
        )
    with pytest.raises(SignatureRejected, match="future"):
        verify_standard(
            VECTOR_BODY, VECTOR_HEADERS, secrets=[VECTOR_SECRET], now=VECTOR_NOW - timedelta(minutes=6)
        )


def test_standard_tampered_and_wrong_secret() -> None:
    with pytest.raises(SignatureRejected, match="invalid"):
        verify_standard(b'{"test": 2432232315}', VECTOR_HEADERS, secrets=[VECTOR_SECRET], now=VECTOR_NOW)
    with pytest.raises(SignatureRejected, match="invalid"):
        verify_standard(VECTOR_BODY, VECTOR_HEADERS, secrets=[new_standard_secret()], now=VECTOR_NOW)
    forged_id = {**VECTOR_HEADERS, "webhook-id": "msg_other"}
    with pytest.raises(SignatureRejected, match="invalid"):
        verify_standard(VECTOR_BODY, forged_id, secrets=[VECTOR_SECRET], now=VECTOR_NOW)


def test_standard_rotation_two_secrets_each_way() -> None:
    old, new = new_standard_secret(), new_standard_secret()
    # sender already on the new secret, receiver still accepting both
    h = standard_webhook_headers(new, BODY, msg_id="msg_1", timestamp=NOW)
    assert verify_standard(BODY, h, secrets=[old, new], now=NOW).event_id == "msg_1"
    # sender signing with both during the switch, receiver only knows one of them
    h2 = standard_webhook_headers([old, new], BODY, msg_id="msg_2", timestamp=NOW)
    assert len(h2["webhook-signature"].split()) == 2
    verify_standard(BODY, h2, secrets=[new], now=NOW)
    verify_standard(BODY, h2, secrets=[old], now=NOW)
    with pytest.raises(SignatureRejected):
        verify_standard(BODY, h2, secrets=[new_standard_secret()], now=NOW)


def test_standard_ignores_other_versions_and_needs_headers() -> None:
    secret = new_standard_secret()
    h = standard_webhook_headers(secret, BODY, msg_id="m", timestamp=NOW)
    only_v1a = {**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v1a,")}
    with pytest.raises(SignatureRejected):
        verify_standard(BODY, only_v1a, secrets=[secret], now=NOW)
    with pytest.raises(SignatureRejected, match="missing signature"):
        verify_standard(BODY, {"webhook-id": "m"}, secrets=[secret], now=NOW)
    with pytest.raises(SignatureRejected, match="no webhook secret"):
        verify_standard(BODY, h, secrets=[], now=NOW)


# -- time -------------------------------------------------------------------------------------


def test_freshness_window_edges() -> None:
    check_fresh(NOW - timedelta(minutes=5), NOW)
    check_fresh(NOW + timedelta(minutes=5), NOW)
    with pytest.raises(SignatureRejected):
        check_fresh(NOW - timedelta(minutes=5, seconds=1), NOW)
    with pytest.raises(SignatureRejected):
        check_fresh(NOW + timedelta(minutes=5, seconds=1), NOW)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-01-28T14:35:00Z", datetime(2025, 1, 28, 14, 35, tzinfo=UTC)),
        ("2023-09-25T16:00:00+05:30", datetime(2023, 9, 25, 10, 30, tzinfo=UTC)),
        (1614265330, datetime.fromtimestamp(1614265330, UTC)),
        (1614265330000, datetime.fromtimestamp(1614265330, UTC)),
        ("1614265330", datetime.fromtimestamp(1614265330, UTC)),
        ("yesterday", None),
        (None, None),
        (True, None),
    ],
)
def test_parse_timestamp(value: object, expected: datetime | None) -> None:
    assert parse_timestamp(value) == expected
