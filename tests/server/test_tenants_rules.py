"""The pure rules behind tenants and limits: who a token is, what it may use, and the buckets."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp.server.auth.provider import AccessToken

from crm_mcp.errors import ConfigurationError
from crm_mcp.scope import LOCAL, acting_as, current_principal, scoped_key, write_refusal
from crm_mcp.server.limits import TokenBuckets, tool_calls_in
from crm_mcp.server.principals import principal_for
from crm_mcp.settings import PrincipalSettings, load_settings


def token(name: str, *scopes: str) -> AccessToken:
    return AccessToken(token="***", client_id=name, scopes=list(scopes))


def test_no_tables_means_one_tenant_and_any_table_means_fail_closed() -> None:
    both = ("crm:read", "crm:write")
    assert principal_for(None, {}) is LOCAL
    open_ = principal_for(token("alice", *both), {})
    assert open_.unrestricted and open_.can_write
    mapping = {"alice": PrincipalSettings(connections=["a"], scopes=["crm:read"])}
    alice = principal_for(token("alice", *both), mapping)
    assert alice.visible(["a", "b"]) == ["a"] and not alice.can_write  # the table is a ceiling
    stranger = principal_for(token("mallory", *both), mapping)
    assert stranger.visible(["a", "b"]) == []


def test_write_refusal_follows_the_current_principal() -> None:
    assert write_refusal("upsert_contact") is None  # the local user
    with acting_as(principal_for(token("auditor", "crm:read"), {})):
        assert current_principal().name == "auditor"
        message = write_refusal("upsert_contact")
        assert message is not None and "crm:write" in message
    assert current_principal() is LOCAL


def test_tenants_keep_their_idempotency_keys_apart() -> None:
    assert scoped_key("order-1") == "order-1"  # the local user: keys as given
    with acting_as(principal_for(token("alice", "crm:write"), {"alice": PrincipalSettings()})):
        alice = scoped_key("order-1")
    with acting_as(principal_for(token("bob", "crm:write"), {"bob": PrincipalSettings()})):
        bob = scoped_key("order-1")
    assert len({alice, bob, "order-1"}) == 3 and alice.endswith(":order-1")


def test_buckets_refill_at_the_rate_and_say_when() -> None:
    now = [0.0]
    buckets = TokenBuckets(per_minute=60, burst=2, clock=lambda: now[0])
    assert buckets.take("a") is None and buckets.take("a") is None
    assert buckets.take("a") == pytest.approx(1.0)  # one token a second
    assert buckets.take("b") is None  # per key
    now[0] = 1.0
    assert buckets.take("a") is None


def test_only_tool_calls_count() -> None:
    assert tool_calls_in(b'{"jsonrpc":"2.0","id":1,"method":"tools/call"}') == [1]
    batch = b'[{"id":1,"method":"tools/list"},{"id":2,"method":"tools/call"},{"method":"tools/call","id":3}]'
    assert tool_calls_in(batch) == [2, 3]
    assert tool_calls_in(b"not json") == []


def test_a_table_naming_an_unknown_connection_is_refused(tmp_path: Path) -> None:
    toml = tmp_path / "crm-mcp.toml"
    toml.write_text('[principals.alice]\nconnections = ["nope"]\n', encoding="utf-8")
    settings = load_settings(_env_file=None, config_file=toml, state_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="names no configured connection 'nope'"):
        settings.principals()
