"""Switchable faults for the provider simulators.

Connectors and the sync engine must survive what real CRMs do on a bad day: 5xx bursts, 429s with
and without ``Retry-After``, requests that hang, slow answers, bodies that are not JSON and
connections that die mid-response. A :class:`FaultInjector` holds the rules; :func:`apply_fault`
plays one out at the ASGI level, which is the only way to produce a *broken* HTTP exchange (a
reset) rather than merely an unhappy status code.

Rules are decided with a seeded RNG so a flaky-network test replays identically.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal, get_args

from starlette.types import Send

FaultKind = Literal["error", "rate_limit", "timeout", "slow", "malformed", "reset"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

DEFAULT_TIMEOUT_DELAY_S = 30.0


@dataclass
class Fault:
    """One active rule. ``remaining`` is None for "until cleared"."""

    kind: FaultKind
    status: int = 503
    remaining: int | None = None
    probability: float = 1.0
    retry_after: float | None = None
    delay_s: float = 0.0
    path: str | None = None
    applied: int = 0

    def matches(self, path: str) -> bool:
        return self.path is None or re.search(self.path, path) is not None

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "status": self.status,
            "count": self.remaining,
            "probability": self.probability,
            "retry_after": self.retry_after,
            "delay_s": self.delay_s,
            "path": self.path,
            "applied": self.applied,
        }


class FaultInjector:
    """Thread-safe set of fault rules, at most one per ``path`` pattern.

    ``set`` replaces the rule with the same ``path`` (so calling it twice without a path swaps the
    fault instead of stacking two), while rules for different paths coexist; the first matching
    rule, in insertion order, decides a request.
    """

    def __init__(self, seed: int = 0) -> None:
        self._seed = seed
        self._rng = random.Random(seed)
        self._rules: list[Fault] = []
        self._lock = threading.Lock()

    def set(
        self,
        kind: FaultKind,
        *,
        status: int = 503,
        count: int | None = None,
        probability: float = 1.0,
        retry_after: float | None = None,
        delay_s: float = 0.0,
        path: str | None = None,
    ) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if count is not None and count < 0:
            raise ValueError("count must be >= 0")
        if kind == "rate_limit":
            status = 429
        if path is not None:
            re.compile(path)
        if kind == "timeout" and not delay_s:
            delay_s = DEFAULT_TIMEOUT_DELAY_S
        rule = Fault(kind, status, count, probability, retry_after, delay_s, path)
        with self._lock:
            self._rules = [r for r in self._rules if r.path != path]
            if count != 0:
                self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._rng = random.Random(self._seed)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {"faults": [r.describe() for r in self._rules]}

    def take(self, path: str) -> Fault | None:
        """Decide whether this request is faulted, consuming one unit of a counted rule."""
        with self._lock:
            for rule in self._rules:
                if not rule.matches(path):
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    return None
                rule.applied += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                return rule
        return None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    head = [(b"content-type", b"application/json; charset=utf-8"), *headers]
    head.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def apply_fault(fault: Fault, send: Send, headers: list[tuple[bytes, bytes]]) -> int | None:
    """Play a fault out on the wire.

    Returns the status code sent, ``None`` for a dropped connection, or ``-1`` for ``slow``
    (meaning: the delay is served, now answer normally).
    """
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay_s)
        return -1
    if fault.kind == "timeout":
        # Nothing is applied: the request never reached the service (contrast with "slow", where
        # the write happens and only the answer is late — the ambiguous case reconciliation handles).
        await asyncio.sleep(fault.delay_s)
        body = json.dumps({"statusCode": 504, "message": "Gateway Timeout"}).encode()
        await _send(send, 504, body, headers)
        return 504
    if fault.kind == "malformed":
        await _send(send, 200, b'{"contact": {"id": "tRuNcAtEd', headers)
        return 200
    if fault.kind == "reset":
        # Promise more bytes than we send, then return: uvicorn closes the socket mid-body and the
        # client sees a protocol error, never a response it could mistake for success.
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"contact":', "more_body": True})
        return None
    if fault.kind == "rate_limit":
        extra = [(k, v) for k, v in headers if k.lower() != b"x-ratelimit-remaining"]
        extra.append((b"x-ratelimit-remaining", b"0"))
        if fault.retry_after is not None:
            ra = fault.retry_after
            extra.append((b"retry-after", (str(int(ra)) if float(ra).is_integer() else str(ra)).encode()))
        body = json.dumps({"statusCode": 429, "message": "Too Many Requests"}).encode()
        await _send(send, 429, body, extra)
        return 429
    body = json.dumps({"statusCode": fault.status, "message": _phrase(fault.status)}).encode()
    await _send(send, fault.status, body, headers)
    return fault.status


# The body of POST {sandbox}/_sandbox/faults, as `crm-mcp sandbox` prints it (docs/sandbox.md).
FAULTS_BODY_HELP = """\
POST {url}/_sandbox/faults  (JSON; one rule per "path"; GET lists them, DELETE clears all)
  {{"kind": "error", "status": 503, "probability": 0.3}}     30% of API calls answer 503
  {{"kind": "rate_limit", "retry_after": 5, "count": 10}}    the next 10 calls answer 429
  {{"kind": "timeout", "delay_s": 30}}  {{"kind": "reset"}}  {{"kind": "slow", "delay_s": 2}}
  keys: kind (error|rate_limit|timeout|slow|malformed|reset), status, probability (0..1),
        count (how many calls, default until cleared; 0 removes the rule), retry_after,
        delay_s, path (regex on the request path)"""


def fault_from_flag(fail: str, *, rate: float = 1.0, path: str | None = None) -> dict[str, Any]:
    """`--fail 503 --rate 0.3` as keyword arguments for `FaultInjector.set` (and the JSON body of
    POST /_sandbox/faults). `fail` is an HTTP status (429 means rate_limit) or a fault kind."""
    spec: dict[str, Any] = {"probability": rate}
    if path:
        spec["path"] = path
    if fail.isdigit():
        status = int(fail)
        if not 400 <= status <= 599:
            raise ValueError(
                f"--fail {fail}: give an error status (400-599) or one of {', '.join(FAULT_KINDS)}"
            )
        spec |= {"kind": "rate_limit"} if status == 429 else {"kind": "error", "status": status}
    elif fail in FAULT_KINDS:
        spec["kind"] = fail
    else:
        raise ValueError(
            f"--fail {fail!r}: give an HTTP status such as 503, or one of {', '.join(FAULT_KINDS)}"
        )
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"--rate {rate}: give a share between 0 and 1 (0.3 = 30% of calls)")
    return spec
