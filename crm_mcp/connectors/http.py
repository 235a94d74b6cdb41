"""`ResilientClient`: the only way out to the network, and the only place an HTTP client is built.

Per call, in this order (DESIGN §4): breaker check -> limiter acquire (waits, never drops) -> send
with timeouts -> `classify` -> limiter learns from headers -> retry only what is safe, with
exponential backoff + full jitter honouring Retry-After, bounded by attempts and total time ->
breaker records the outcome -> the response, or a typed, redacted error from `crm_mcp.errors`.

Connectors above this layer never see httpx2 exceptions or status codes they have to interpret;
they get a successful response or a `ConnectorError` subclass saying how to recover.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx2

from crm_mcp.errors import (
    AuthError,
    ConfigurationError,
    ConnectorError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    UpstreamUnavailableError,
    redact,
)
from crm_mcp.observability.tracing import RequestRecord, crm_request

from .auth import RefreshableAuth
from .base import EndpointLimit, ProviderSpec
from .breaker import CircuitBreaker
from .classify import Outcome, OutcomeKind, classify, counts_as_breaker_failure, may_resend
from .ratelimit import RateLimiter, RateLimiterLike

logger = logging.getLogger(__name__)

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# headers in which CRMs commonly name their request id (a spec's `request_id_header` comes first)
REQUEST_ID_HEADERS = ("X-Request-Id", "X-Correlation-Id", "Request-Id", "X-Amzn-RequestId", "X-Trace-Id")
_OVER_CAP = "crm_mcp.over_cap"  # response extension: a streamed body passed its `max_bytes`
_BODY_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})
FORBIDDEN_HINT = (
    "The CRM accepted the credentials but refused this request: check that the connection's "
    "account id (location, portal or org) belongs to the token, and that the token has the scopes "
    "this needs (generate_connector_config lists them); then retry."
)
_MESSAGE_FIELDS = ("message", "error_description", "error", "msg", "detail", "title")


def _message_from_body(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    for key in _MESSAGE_FIELDS:
        value = body.get(key)
        if isinstance(value, list) and value:
            return "; ".join(str(v) for v in value)
        if isinstance(value, str) and value:
            return value
    return ""


def _json_or_none(response: httpx2.Response) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return None


def backoff_delay(attempt: int, rng: random.Random, *, base_s: float = 0.5, cap_s: float = 8.0) -> float:
    """Full-jitter exponential backoff (AWS architecture blog): uniform(0, min(cap, base*2^(n-1)))."""
    return rng.uniform(0.0, min(cap_s, base_s * 2 ** max(0, attempt - 1)))


def check_base_url(url: str) -> str:
    """https anywhere; plain http only to loopback (the sandbox), so a token never crosses a network
    in clear text because of a typo in the configuration."""
    try:
        parsed = httpx2.URL(url)
    except Exception as exc:
        raise ConfigurationError(f"invalid base URL {url!r}: {exc}") from None
    if parsed.scheme == "https" and parsed.host:
        return url.rstrip("/")
    if parsed.scheme == "http" and parsed.host in _LOOPBACK_HOSTS:
        return url.rstrip("/")
    raise ConfigurationError(
        f"base URL {url!r} is not allowed: use an https:// URL (plain http:// only for 127.0.0.1/localhost)."
    )


async def fetch_json(url: str, *, timeout_s: float = 10.0, max_bytes: int = 512_000) -> Any:
    """GET a small public JSON document (OAuth authorization-server metadata, a JWKS) from an https
    URL (plain http on loopback only), without credentials, redirects or retries.

    Raises:
        ConfigurationError: the URL is not https (or loopback http).
        ValueError: not a 200, larger than `max_bytes`, or not JSON.
        httpx2.HTTPError: the server could not be reached.
    """
    check_base_url(url)
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(timeout_s), follow_redirects=False) as client,
        client.stream("GET", url, headers={"Accept": "application/json"}) as response,
    ):
        if response.status_code != 200:
            raise ValueError(f"{url} answered HTTP {response.status_code}")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise ValueError(f"{url} sent more than {max_bytes} bytes")
    try:
        return jsonlib.loads(bytes(body))
    except ValueError:
        raise ValueError(f"{url} did not answer JSON") from None


class ResilientClient:
    def __init__(
        self,
        spec: ProviderSpec,
        connection: str,
        *,
        base_url: str,
        auth: httpx2.Auth | None,
        transport: httpx2.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        limiter: RateLimiterLike | None = None,
        breaker: CircuitBreaker | None = None,
        max_attempts: int = 4,
        max_retry_time_s: float = 30.0,
        timeout_s: float = 15.0,
        rng: random.Random | None = None,
    ) -> None:
        self.spec = spec
        self.provider = spec.name
        self.connection = connection
        self._auth = auth
        self._secrets: tuple[str, ...] = tuple(getattr(auth, "secrets", ()))
        self._clock = clock
        self._sleep = sleep
        self.limiter: RateLimiterLike = limiter or RateLimiter.for_spec(spec, clock=clock, sleep=sleep)
        # endpoints with a budget of their own (spec.endpoint_limits): one local limiter each
        self.endpoint_limiters: list[tuple[EndpointLimit, re.Pattern[str], RateLimiter]] = []
        for lim in spec.endpoint_limits:
            own = RateLimiter(limit=lim.limit, interval_s=lim.interval_s, clock=clock, sleep=sleep)
            self.endpoint_limiters.append((lim, re.compile(lim.path_pattern), own))
        self.breaker = breaker or CircuitBreaker(f"{spec.name}:{connection}", clock=clock)
        self.max_attempts = max(1, max_attempts)
        self.max_retry_time_s = max_retry_time_s
        self._rng = rng or random.Random()
        self._client = httpx2.AsyncClient(
            base_url=base_url,
            auth=auth,
            transport=transport,
            timeout=httpx2.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            headers={"Accept": "application/json", "User-Agent": "crm-mcp/0.1", **spec.version_headers},
            follow_redirects=False,
        )

    # -- public API -------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        files: Mapping[str, Any] | None = None,
        max_bytes: int | None = None,
    ) -> httpx2.Response:
        """Send with retries; return a 2xx/3xx response or raise a typed ConnectorError.

        `files` sends a multipart/form-data body (httpx's `files`: name -> (filename, bytes, type)).
        `max_bytes` streams the body and refuses one larger than that (InvalidRequestError, status
        413) without reading the rest: for downloads (a `path` may then be an absolute URL).
        Each call is one span and one log line (`crm_mcp.observability.tracing.crm_request`).
        """
        with crm_request(self.provider, self.connection, method.upper(), path) as rec:
            response = await self._request(
                rec, method, path, params, json, headers, idempotent, files, max_bytes
            )
            rec.answered(response.status_code, self._request_id(response, None))
            return response

    async def _request(
        self,
        rec: RequestRecord,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        idempotent: bool | None,
        files: Mapping[str, Any] | None,
        max_bytes: int | None = None,
    ) -> httpx2.Response:
        method = method.upper()
        deadline = self._clock() + self.max_retry_time_s
        refreshed = False
        attempt = 0
        landed = False  # whether any exchange so far may have been processed by the provider
        extra = self._endpoint_limiter(method, path)
        while True:
            attempt += 1
            rec.attempts = attempt
            self.breaker.check(self.provider)
            waiting_since = self._clock()
            try:
                await self._acquire(extra)
            except BaseException:
                self.breaker.record_cancelled()
                raise
            rec.waited(self._clock() - waiting_since)
            response, error, reached = await self._send_once(
                method, path, params, json, headers, files, max_bytes
            )
            if extra is not None:
                extra.observe({})  # its budget is not reported in headers; the exchange is over
            if response is None:
                assert error is not None
                self.limiter.observe({})  # the exchange is over; nothing learned
                self.breaker.record_failure()
                outcome = Outcome(OutcomeKind.RETRY)
            else:
                outcome = classify(response.status_code, response.headers, method)
                self.limiter.observe(response.headers)
                spent = (
                    self._limiter_for_429(response, outcome.retry_after, extra)
                    if outcome.kind is OutcomeKind.RATE_LIMITED
                    else None
                )
                # a 429 on an endpoint's own budget says that budget is spent, not that the
                # provider is failing: it must not pause every other call through the breaker
                endpoint_429 = extra is not None and spent is extra
                if counts_as_breaker_failure(response.status_code) and not endpoint_429:
                    self.breaker.record_failure()
                else:
                    self.breaker.record_success()
                if outcome.kind is OutcomeKind.SUCCESS:  # logged by `request` (crm_request)
                    if response.extensions.get(_OVER_CAP):
                        raise self._too_large(method, path, response, max_bytes)
                    return response
                if spent is not None:
                    spent.note_429(outcome.retry_after)
                    reached = False  # refused before processing: safe to send again
                if (
                    outcome.kind is OutcomeKind.REFRESH_AUTH
                    and not refreshed
                    and isinstance(self._auth, RefreshableAuth)
                ):
                    refreshed = True
                    await self._auth.refresh()
                    continue
                error = self._error_for(method, path, response, outcome)
            landed = landed or reached
            if landed:
                error.sent = None  # an earlier try may have been processed, whatever this one did
            if not outcome.retryable or not may_resend(method, idempotent, request_reached_server=reached):
                raise error
            if attempt >= self.max_attempts:
                raise error
            delay = backoff_delay(attempt, self._rng)
            if outcome.retry_after is not None:
                delay = max(delay, outcome.retry_after)
            if self._clock() + delay > deadline:
                raise error
            logger.warning(
                "%s %s %s failed (%s); retry %d/%d in %.2fs",
                self.provider,
                method,
                self._safe(path),
                error.status if error.status is not None else type(error).__name__,
                attempt,
                self.max_attempts - 1,
                delay,
            )
            if outcome.kind is not OutcomeKind.RATE_LIMITED:
                await self._sleep(delay)
            # on 429 the limiter's penalty makes the next acquire() wait (or raise if too long)

    async def request_json(self, method: str, path: str, **kw: Any) -> Any:
        """`request` and decode the JSON body; a malformed body is an UpstreamUnavailableError."""
        response = await self.request(method, path, **kw)
        return self.decode(response, method, path)

    def decode(self, response: httpx2.Response, method: str = "", path: str = "") -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except (jsonlib.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise UpstreamUnavailableError(
                f"{self.provider} {method} {self._safe(path)}: response body is not valid JSON",
                provider=self.provider,
                status=response.status_code,
                request_id=self._request_id(response, None),
            ) from None

    async def refresh_shared(self) -> None:
        """Read the limiter's and breaker's state shared with other processes (a Redis-backed one
        answers `snapshot()` from what it last read; the in-memory ones are always current)."""
        for guard in (self.limiter, self.breaker):
            refresh = getattr(guard, "refresh", None)
            if refresh is not None:
                await refresh()

    def snapshot(self) -> dict[str, Any]:
        snap = {
            "provider": self.provider,
            "connection": self.connection,
            "limiter": self.limiter.snapshot(),
            "breaker": self.breaker.snapshot(),
        }
        if self.endpoint_limiters:
            snap["endpoint_limiters"] = {lim.name: rl.snapshot() for lim, _, rl in self.endpoint_limiters}
        return snap

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- internals --------------------------------------------------------------------------
    def _endpoint_limiter(self, method: str, path: str) -> RateLimiter | None:
        """The limiter of the first `spec.endpoint_limits` entry this request falls under."""
        for lim, pattern, limiter in self.endpoint_limiters:
            if method in lim.methods and pattern.fullmatch(path):
                return limiter
        return None

    async def _acquire(self, extra: RateLimiter | None) -> None:
        """A slot in the endpoint's own budget (if any), then in the connection's burst window."""
        if extra is None:
            await self.limiter.acquire()
            return
        await extra.acquire()
        try:
            await self.limiter.acquire()
        except BaseException:
            extra.observe({})  # give the endpoint slot back: nothing was sent
            raise

    def _limiter_for_429(
        self, response: httpx2.Response, retry_after: float | None, extra: RateLimiter | None
    ) -> RateLimiterLike:
        """Which budget a 429 spent: the endpoint's own when the body names its policy (or, with
        no policies declared, when no Retry-After came), else the connection's burst window."""
        if extra is None:
            return self.limiter
        lim = next(lim for lim, _, rl in self.endpoint_limiters if rl is extra)
        field = self.spec.rate_limit_policy_field
        if lim.policies and field:
            body = _json_or_none(response)
            policy = body.get(field) if isinstance(body, dict) else None
            return extra if policy in lim.policies else self.limiter
        return extra if retry_after is None else self.limiter

    async def _send_once(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        files: Mapping[str, Any] | None = None,
        max_bytes: int | None = None,
    ) -> tuple[httpx2.Response | None, ConnectorError | None, bool]:
        """One exchange. Returns (response, None, True) or (None, error, reached_server)."""
        try:
            if max_bytes is not None:
                return await self._capped(method, path, params, headers, max_bytes), None, True
            response = await self._client.request(
                method,
                path,
                params=params,
                json=json,
                headers=dict(headers) if headers else None,
                files=dict(files) if files else None,
            )
            await response.aread()
            return response, None, True
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
            return None, self._transport_error(method, path, exc, sent=False), False
        except httpx2.TimeoutException as exc:
            return None, self._transport_error(method, path, exc), True
        except httpx2.TransportError as exc:
            return None, self._transport_error(method, path, exc), True
        except BaseException:
            self.breaker.record_cancelled()
            raise

    async def _capped(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        max_bytes: int,
    ) -> httpx2.Response:
        """Stream a body up to `max_bytes`; past it, stop reading and return the head alone, marked
        `_OVER_CAP` (the caller refuses it once the exchange is classified)."""
        request = self._client.build_request(
            method, path, params=params, headers=dict(headers) if headers else None
        )
        response = await self._client.send(request, stream=True)
        chunks: list[bytes] = []
        size, over = 0, False
        try:
            declared = response.headers.get("content-length", "")
            over = response.is_success and declared.isdigit() and int(declared) > max_bytes
            if not over:
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if response.is_success and size > max_bytes:
                        over = True
                        break
                    chunks.append(chunk)
        finally:
            await response.aclose()
        head = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_HEADERS]
        return httpx2.Response(
            response.status_code,
            headers=head,
            content=b"".join(chunks),
            request=request,
            extensions={_OVER_CAP: over} if over else {},
        )

    def _too_large(
        self, method: str, path: str, response: httpx2.Response, max_bytes: int | None
    ) -> InvalidRequestError:
        return InvalidRequestError(
            self._redact(f"{self.provider} {method} {path}: the content is larger than {max_bytes} bytes"),
            provider=self.provider,
            status=413,
            request_id=self._request_id(response, None),
        )

    def _transport_error(
        self, method: str, path: str, exc: Exception, *, sent: bool | None = None
    ) -> ConnectorError:
        """`sent=False`: the connection was never made, so the request cannot have been processed."""
        kind = "timed out" if isinstance(exc, httpx2.TimeoutException) else "connection failed"
        url = self._client.base_url  # the host, so an unreachable CRM says which one
        where = f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return UpstreamUnavailableError(
            self._redact(f"{self.provider} {method} {path}: {kind} to {where} ({detail[:200]})"),
            provider=self.provider,
            sent=sent,
        )

    def _request_id(self, response: httpx2.Response, body: Any) -> str | None:
        """The CRM's own id for this exchange: its spec's header, a common one, or a body field."""
        for name in (self.spec.request_id_header, *REQUEST_ID_HEADERS):
            value = response.headers.get(name) if name else None
            if value:
                return value[:128]
        field = self.spec.request_id_body_field
        if field and isinstance(body, dict) and body.get(field):
            return str(body[field])
        return None

    def _error_for(
        self, method: str, path: str, response: httpx2.Response, outcome: Outcome
    ) -> ConnectorError:
        status = response.status_code
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        own = self.spec.error_message(body) if self.spec.error_message is not None else ""
        detail = own or _message_from_body(body) or response.reason_phrase or "error"
        message = self._redact(f"{self.provider} {method} {path} -> {status}: {detail}"[:1000])
        kw: dict[str, Any] = {
            "provider": self.provider,
            "status": status,
            "request_id": self._request_id(response, body),
        }
        if outcome.kind is OutcomeKind.RATE_LIMITED:
            return RateLimitedError(message, retry_after=outcome.retry_after, **kw)
        if status == 401:
            return AuthError(message, **kw)
        if status == 403:  # the credentials are good; this account or scope is not theirs
            return AuthError(message, hint=FORBIDDEN_HINT, **kw)
        if status == 404:
            return NotFoundError(message, **kw)
        if outcome.kind is OutcomeKind.RETRY or status >= 500:
            return UpstreamUnavailableError(message, **kw)
        return InvalidRequestError(message, **kw)

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _safe(self, path: str) -> str:
        return self._redact(path)


async def current_snapshot(connector: object) -> dict[str, Any] | None:
    """A connector's limiter and breaker snapshot (None if it has none), with the state it shares
    with other processes read first: what the health check and the published guards report."""
    client = getattr(connector, "client", None)
    if isinstance(client, ResilientClient):
        await client.refresh_shared()
    snapshot = getattr(connector, "snapshot", None)
    return snapshot() if callable(snapshot) else None
