"""The simulated account's call history: a deterministic generator and the call-log records.

`generate(n, days, seed, now)` makes `n` calls spread over the `days` before `now`, the same ones
for the same arguments: inbound calls answered, missed or sent to voicemail; calls to a queue
that ring several members (one record per member, one telephony session); outbound calls;
repeat callers (a pool of about a quarter as many numbers as calls); phone numbers in E.164 and,
now and then, as RingCentral sometimes returns them (`(415) 555-0123`); recordings on most
answered calls of 30 s or more (RingCentral keeps none shorter), the newest still processing.

`records(call, base, account, detailed)` renders a call as `CallLogRecord`s (OAS), with `legs[]`
in the Detailed view.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

EXTENSIONS = [(str(101 + i), 62264425008 + i, name) for i, name in enumerate(
    ["Avery Chen", "Blake Ortiz", "Casey Novak", "Devon Price", "Emery Shah", "Finley Ross"]
)]  # fmt: skip
QUEUE = ("800", 62264429000, "Sales Queue")
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass
class SimRecording:
    id: str
    duration: int
    pending: bool = False
    kind: str = "Automatic"


@dataclass
class SimLeg:
    """One member's (or the only) ringing of a call: what its record says."""

    record_id: str
    ext: tuple[str, int, str]
    result: str
    duration: int


@dataclass
class SimCall:
    telephony_session_id: str
    session_id: str
    start: float
    direction: str  # Inbound | Outbound
    external: str  # the outside party, E.164
    kind: str  # answered | missed | voicemail | queue_answered | queue_missed | queue_voicemail | outbound
    legs: list[SimLeg] = field(default_factory=list)
    recording: SimRecording | None = None
    formatted: bool = False  # the outside number as RingCentral sometimes formats it

    @property
    def answered(self) -> bool:
        return any(leg.result in ("Accepted", "Call connected") for leg in self.legs)


def _rid(rng: random.Random, n: int = 15) -> str:
    return "".join(rng.choice(_B62) for _ in range(n))


def generate(n: int, days: int, seed: int, now: float, pending: int = 0) -> list[SimCall]:
    """`n` calls over the `days` before `now`, oldest first, the `pending` newest recordings
    still processing; the same calls for the same arguments."""
    rng = random.Random(seed)
    pool = [f"+1{rng.choice(['415', '650', '212', '312', '646'])}555{rng.randrange(10000):04d}"
            for _ in range(max(5, n // 4))]  # fmt: skip
    span = days * 86400
    starts = sorted({int(now - 120 - rng.random() * span) for _ in range(n)})
    while len(starts) < n:  # two calls in one second: nudge apart
        starts.append(starts[-1] - 1 - len(starts))
    starts = sorted(starts)[:n]
    calls = [_call(rng, start, pool) for start in starts]
    recorded = [c.recording for c in calls if c.recording is not None]
    for recording in recorded[len(recorded) - pending :] if pending else []:
        recording.pending = True
    return calls


def _call(rng: random.Random, start: float, pool: list[str]) -> SimCall:
    external = rng.choice(pool)
    roll = rng.random()
    kinds = [(0.36, "answered"), (0.50, "missed"), (0.60, "voicemail"), (0.72, "queue_answered"),
             (0.80, "queue_missed"), (0.84, "queue_voicemail"), (1.01, "outbound")]  # fmt: skip
    kind = next(k for p, k in kinds if roll < p)
    call = SimCall(
        telephony_session_id="s-" + "".join(rng.choice("0123456789abcdef") for _ in range(32)),
        session_id=str(rng.randrange(10**12, 10**13)),
        start=float(start),
        direction="Outbound" if kind == "outbound" else "Inbound",
        external=external,
        kind=kind,
        formatted=rng.random() < 0.2,
    )
    talk = rng.choice([12, 45, 75, 140, 260, 420])
    ring = rng.randrange(8, 30)
    if kind.startswith("queue"):
        members = rng.sample(EXTENSIONS, rng.randrange(2, 5))
        taker = members[rng.randrange(len(members))] if kind == "queue_answered" else None
        for ext in members:
            result, dur = ("Accepted", talk) if ext is taker else ("Missed", ring)
            call.legs.append(SimLeg(_rid(rng), ext, result, dur))
        if kind == "queue_voicemail":
            call.legs.append(SimLeg(_rid(rng), QUEUE, "Voicemail", rng.randrange(10, 60)))
    else:
        ext = rng.choice(EXTENSIONS)
        word = {"answered": "Accepted", "missed": rng.choice(["Missed", "Missed", "No Answer", "Busy"]),
                "voicemail": "Voicemail"}.get(kind)  # fmt: skip
        if kind == "outbound":
            word = rng.choice(["Call connected", "Call connected", "Call connected", "No Answer", "Busy"])
        assert word is not None
        result = word
        dur = talk if result in ("Accepted", "Call connected") else ring
        call.legs.append(SimLeg(_rid(rng), ext, result, dur))
    if call.answered and talk >= 30 and rng.random() < 0.75:
        kind_of = rng.choice(["Automatic", "OnDemand"])
        call.recording = SimRecording(str(rng.randrange(10**9, 10**10)), talk, kind=kind_of)
    return call


def iso(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _format_us(e164: str) -> str:
    d = e164[2:]
    return f"({d[:3]}) {d[3:6]}-{d[6:]}"


def records(call: SimCall, base: str, account: str, main_number: str, detailed: bool) -> list[dict[str, Any]]:
    """The call as RingCentral's account call log lists it: one record per leg that rang."""
    api = f"{base}/restapi/v1.0/account/{account}"
    outside = _format_us(call.external) if call.formatted else call.external.lstrip("+")
    out: list[dict[str, Any]] = []
    for leg in call.legs:
        number, ext_id, name = leg.ext
        ours = {"phoneNumber": main_number, "extensionNumber": number, "name": name}
        theirs = {"phoneNumber": outside, "location": "San Francisco, CA"}
        frm, to = (ours, theirs) if call.direction == "Outbound" else (theirs, ours)
        rec: dict[str, Any] = {
            "uri": f"{api}/call-log/{leg.record_id}?view={'Detailed' if detailed else 'Simple'}",
            "id": leg.record_id,
            "sessionId": call.session_id,
            "telephonySessionId": call.telephony_session_id,
            "startTime": iso(call.start),
            "duration": leg.duration,
            "durationMs": leg.duration * 1000,
            "type": "Voice",
            "internalType": "LocalNumber",
            "direction": call.direction,
            "action": "VoIP Call" if call.direction == "Outbound" else "Phone Call",
            "result": leg.result,
            "from": frm,
            "to": to,
            "extension": {"uri": f"{api}/extension/{ext_id}", "id": ext_id},
            "transport": "PSTN",
        }
        if leg.result == "Voicemail":
            rec["message"] = {"id": str(ext_id) + leg.record_id[:4], "type": "VoiceMail",
                              "uri": f"{api}/extension/{ext_id}/message-store/{leg.record_id}"}  # fmt: skip
        recording = call.recording
        if recording is not None and leg.result in ("Accepted", "Call connected"):
            rec["recording"] = {
                "uri": f"{api}/recording/{recording.id}",
                "id": recording.id,
                "type": recording.kind,
                "contentUri": f"{base}/restapi/v1.0/account/{account}/recording/{recording.id}/content",
            }
            if recording.pending:
                rec["finished"] = False  # the recording is served once the call has concluded
        if detailed:
            rec["lastModifiedTime"] = iso(call.start + leg.duration + 30)
            rec["billing"] = {"costIncluded": 0.0, "costPurchased": 0.0}
            leg_type = "Hunting" if call.kind.startswith("queue") else "Accept"
            leg_info = {
                k: v
                for k, v in rec.items()
                if k not in ("uri", "id", "sessionId", "billing", "lastModifiedTime")
            }
            rec["legs"] = [{**leg_info, "legType": leg_type, "master": True}]
        out.append(rec)
    return out
