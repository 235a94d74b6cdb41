"""Conflict rules: who wins when the local record and the CRM both changed a field since last sync.

A pure decision, so every rule can be tested (and property-tested) without a database. The inbox
processor calls `resolve` when a remote change arrives for a field that also has a local change
not yet delivered to the CRM; it logs every conflict with its resolution and reason.

Policies, per field:

- ``crm_wins`` / ``local_wins``: one side is authoritative for the field.
- ``newest_wins``: the later timestamp wins. A tie (or two missing timestamps) goes to the local
  side: the local change is still queued for the CRM, so keeping it leaves both sides agreeing,
  whereas taking the remote value would be overwritten by that queued delivery anyway.
- ``status_priority``: the status further along its lifecycle wins, so progress is never undone by
  a stale write. Leads: leased > application > tour_scheduled > qualified > contacted > new.
  Appointments: an outcome (completed / no_show) > confirmed > scheduled. ``cancelled`` is
  explicit: it beats scheduled and confirmed (a cancellation is a deliberate end; keeping the slot
  "confirmed" would send someone to a meeting that will not happen) but loses to an outcome (an
  appointment that already took place cannot be un-held; a late cancel is a stale cleanup).
  Equal ranks, or a status outside the ladder, fall back to newest_wins (said in the reason).
- ``manual_review``: nothing is applied; the local value stays and the conflict is parked with
  both values for a person to decide (``needs_review``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

logger = logging.getLogger(__name__)

Policy = Literal["crm_wins", "local_wins", "newest_wins", "status_priority", "manual_review"]
Winner = Literal["local", "remote", "same", "none"]
POLICIES: tuple[str, ...] = get_args(Policy)

LEAD_STATUS_ORDER = ("new", "contacted", "qualified", "tour_scheduled", "application", "leased")
APPOINTMENT_OUTCOMES = frozenset({"completed", "no_show"})
_APPOINTMENT_RANK = {"scheduled": 0, "confirmed": 1, **dict.fromkeys(APPOINTMENT_OUTCOMES, 3)}
_CANCELLED_RANK = 2  # above new/confirmed, below an outcome (see module docstring)

# Default policy per field: statuses by priority, everything else by recency.
DEFAULT_POLICIES: dict[str, Policy] = {
    "lead.status": "status_priority",
    "appointment.status": "status_priority",
}
DEFAULT_POLICY: Policy = "newest_wins"


@dataclass(frozen=True)
class Resolution:
    """The value to keep, which side it came from, and why (for logs and validate_sync)."""

    value: Any
    winner: Winner
    reason: str
    needs_review: bool = False


def policy_for(field: str, overrides: dict[str, Policy] | None = None) -> Policy:
    if overrides and field in overrides:
        return overrides[field]
    return DEFAULT_POLICIES.get(field, DEFAULT_POLICY)


def status_rank(field: str, status: Any) -> int | None:
    """Position of `status` in the field's lifecycle ladder; None when it is not on the ladder."""
    if not isinstance(status, str):
        return None
    s = status.strip().lower()
    if field == "lead.status":
        return LEAD_STATUS_ORDER.index(s) if s in LEAD_STATUS_ORDER else None
    if field == "appointment.status":
        return _CANCELLED_RANK if s == "cancelled" else _APPOINTMENT_RANK.get(s)
    return None


def _newest(
    local_value: Any, local_ts: datetime | None, remote_value: Any, remote_ts: datetime | None, why: str = ""
) -> Resolution:
    prefix = f"{why}; " if why else ""
    if remote_ts is not None and (local_ts is None or remote_ts > local_ts):
        return Resolution(remote_value, "remote", f"{prefix}the CRM change is newer")
    if local_ts is not None and (remote_ts is None or local_ts > remote_ts):
        return Resolution(local_value, "local", f"{prefix}the local change is newer")
    return Resolution(local_value, "local", f"{prefix}same time: the queued local change is kept")


def resolve(
    field: str,
    local_value: Any,
    local_ts: datetime | None,
    remote_value: Any,
    remote_ts: datetime | None,
    policy: Policy,
) -> Resolution:
    """Decide one field's value when both sides changed it. Pure and deterministic."""
    if local_value == remote_value:
        return Resolution(local_value, "same", "both sides hold the same value")
    if policy == "crm_wins":
        return Resolution(remote_value, "remote", f"policy crm_wins for {field}")
    if policy == "local_wins":
        return Resolution(local_value, "local", f"policy local_wins for {field}")
    if policy == "manual_review":
        return Resolution(
            local_value, "none", f"policy manual_review for {field}: parked with both values", True
        )
    if policy == "newest_wins":
        return _newest(local_value, local_ts, remote_value, remote_ts)
    if policy == "status_priority":
        lr, rr = status_rank(field, local_value), status_rank(field, remote_value)
        if lr is None or rr is None:
            off = local_value if lr is None else remote_value
            why = f"status {off!r} is not on the {field} ladder"
            return _newest(local_value, local_ts, remote_value, remote_ts, why)
        if rr > lr:
            return Resolution(
                remote_value, "remote", f"{remote_value!r} is further along than {local_value!r}"
            )
        if lr > rr:
            return Resolution(local_value, "local", f"{local_value!r} is further along than {remote_value!r}")
        why = f"{local_value!r} and {remote_value!r} rank equally"
        return _newest(local_value, local_ts, remote_value, remote_ts, why)
    raise ValueError(f"unknown conflict policy {policy!r}; expected one of {', '.join(POLICIES)}")


def log_conflict(
    field: str, record: str, local_value: Any, remote_value: Any, resolution: Resolution
) -> None:
    """One line per conflict: field, record, winner and reason (values only at debug level)."""
    logger.info(
        "sync conflict on %s of %s: winner=%s review=%s (%s)",
        field,
        record,
        resolution.winner,
        resolution.needs_review,
        resolution.reason,
    )
    logger.debug(
        "sync conflict values for %s of %s: local=%r remote=%r", field, record, local_value, remote_value
    )
