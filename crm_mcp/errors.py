"""The one error tree of crm-mcp, grouped by how the caller recovers.

```
CRMError
├── ConfigurationError            bad or missing settings; never retried
│   └── CapabilityError(provider, capability)   the connection's CRM cannot do that at all
├── ConnectorError(provider, status, request_id)
│   ├── AuthError                 refresh failed / revoked
│   ├── NotFoundError
│   ├── InvalidRequestError       4xx the caller must fix (message says which field)
│   ├── RetryableError
│   │   ├── RateLimitedError(retry_after)
│   │   └── UpstreamUnavailableError   5xx, timeouts, resets
│   └── CircuitOpenError(until, retry_after)
├── SignatureRejected             webhook not proven to come from the provider (connectors/webhooks.py)
└── StateError
    ├── ConflictError             two sides changed the same field; see conflict rules
    ├── IdempotencyError          same key, different request
    └── LeaseLostError            another worker owns the operation now (state/outbox.py)
```

Every error carries a message that is already redacted: no secret may reach a log, a tool result
or the dead-letter queue through an exception. `redact()` is the one helper that scrubs text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SECRET_PATTERNS = [
    # any scheme word before the credential (Bearer, a provider's own such as "<name>-oauthtoken")
    re.compile(r"(?i)(authorization\s*[:=]\s*)(bearer\s+|[a-z]+-oauthtoken\s+)?[^\s,;\"']+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(
        r"(?i)((?:access|refresh)_?token|client_secret|api_?key|secret|password)(\"?\s*[:=]\s*\"?)[^\s,;\"'&]+"
    ),
]

_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a configured secret so that `redact` scrubs it wherever it appears."""
    if value and len(value) >= 6:
        _known_secrets.add(value)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove bearer tokens, key=value secrets and every registered secret from `text`."""
    out = text
    for secret in sorted({*_known_secrets, *secrets}, key=len, reverse=True):
        if secret:
            out = out.replace(secret, "***")
    out = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2) or ''}***", out)
    out = _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)}***", out)
    out = _SECRET_PATTERNS[2].sub(lambda m: f"{m.group(1)}{m.group(2)}***", out)
    return out


class CRMError(Exception):
    """Root of every error crm-mcp raises on purpose."""

    retryable: bool = False
    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = redact(message)
        if hint is not None:
            self.hint = hint
        super().__init__(self.message)


class ConfigurationError(CRMError):
    hint = "Fix the configuration (CRM_MCP_* env vars or crm-mcp.toml), then call again."


class CapabilityError(ConfigurationError):
    """The connection's provider has no such capability (e.g. free slots on a CRM without
    calendars). Never retried: another connection, or another tool, is the way forward."""

    hint = "Use a connection whose CRM has it; check_integration_health lists each one's capabilities."

    def __init__(self, message: str, *, provider: str = "", capability: str = "", hint: str | None = None):
        self.provider = provider
        self.capability = capability
        super().__init__(message, hint=hint)


class ConnectorError(CRMError):
    """A call to a provider failed. Carries the provider, HTTP status and request/trace id.

    `sent` is False when the request provably never reached the provider (the connection was
    refused), None when that is unknown: the sync engine then assumes a write may have landed.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        request_id: str | None = None,
        hint: str | None = None,
        sent: bool | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.request_id = request_id
        self.sent = sent
        super().__init__(message, hint=hint)

    def __str__(self) -> str:
        parts = [self.message]
        if self.provider:
            parts.append(f"provider={self.provider}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " ".join(parts)


class AuthError(ConnectorError):
    hint = "The CRM refused the credentials: reconnect or replace the token, then retry."


class NotFoundError(ConnectorError):
    hint = "The record does not exist in the CRM; check the id or search first."


class InvalidRequestError(ConnectorError):
    hint = "The CRM rejected the input; fix the named field and call again. Retrying unchanged will not help."


class RetryableError(ConnectorError):
    retryable = True
    hint = "Temporary failure: call again shortly; queued writes are retried by the sync worker on their own."


class RateLimitedError(RetryableError):
    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class UpstreamUnavailableError(RetryableError):
    pass


class CircuitOpenError(ConnectorError):
    retryable = True
    hint = "The CRM has been failing; calls are paused until the breaker's probe succeeds."

    def __init__(
        self, message: str, *, until: float | None = None, retry_after: float | None = None, **kw: object
    ) -> None:
        self.until = until
        # seconds until the breaker lets a probe through (`until` is on the breaker's own clock)
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class StateError(CRMError):
    pass


class ConflictError(StateError):
    hint = "Both sides changed the record; see the conflict in validate_sync and resolve it."


class IdempotencyError(StateError):
    hint = "Use a new idempotency key for a different request, or wait for the first one to finish."
