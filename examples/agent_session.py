"""A scripted agent session: what an AI agent does with crm-mcp, minus the LLM.

It starts `crm-mcp serve --sandbox` (GoHighLevel simulator + throwaway database) and talks to it
over stdio with the official MCP client, the way Claude Desktop would. It seeds a few bookings
(one of them for a calendar that does not exist, so something fails) and a few leads, then
answers three questions an operator asks, and does what a booking agent does:

  1. What failed today and why?            get_sync_status + list_dead_letters
  2. Which leads should sales call first?  search_contacts + qualify_lead (+ apply for the top one)
  3. Is my GoHighLevel connection healthy? check_integration_health
  4. Book, find it by email, reschedule, cancel and rebook
                                           create_appointment + list_appointments
                                           + update_appointment_status

Run:  python examples/agent_session.py   (or pass another server command after `--`)
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mcp import Client, StdioServerParameters

NEEDED = {
    "create_appointment",
    "upsert_contact",
    "search_contacts",
    "qualify_lead",
    "get_sync_status",
    "list_dead_letters",
    "check_integration_health",
    "list_appointments",
    "update_appointment_status",
}
LEADS = [  # first name, last name, email, phone, source, budget, move-in in days
    ("Avery", "Stone", "avery@example.com", "+15550100001", "referral", 6000, 5),
    ("Blake", None, "blake@example.com", None, "facebook", 900, 120),
    ("Casey", "Moss", "casey@example.com", "+15550100003", "website", 2500, 20),
    ("Devon", None, "devon@example.com", None, None, None, None),
]


def say(text: str = "") -> None:
    print(text, flush=True)


async def call(client: Client, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await client.call_tool(tool, args or {})
    if result.is_error:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        raise RuntimeError(f"{tool} failed: {text}")
    return dict(result.structured_content or {})


async def wait_delivered(client: Client, within_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        status = await call(client, "get_sync_status")
        totals = status["totals"]
        if not totals.get("pending") and not totals.get("in_flight"):
            return status
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not finish in {within_s:.0f}s: {totals}")
        await asyncio.sleep(0.2)


async def seed(client: Client) -> None:
    say("== Seeding: 4 bookings, 1 booking for a calendar that does not exist, 4 leads")
    start = datetime.now(UTC).replace(hour=15, minute=0, second=0, microsecond=0) + timedelta(days=3)
    for i, name in enumerate(["Erin", "Finn", "Gale"]):  # plus Avery's below
        when = (start + timedelta(days=i)).isoformat()
        await call(
            client,
            "create_appointment",
            {
                "first_name": name,
                "email": f"{name.lower()}@example.com",
                "start_time": when,
                "title": "Property tour",
            },
        )
    await call(
        client,
        "create_appointment",
        {
            "first_name": "Hana",
            "email": "hana@example.com",
            "start_time": start.isoformat(),
            "calendar_id": "NoSuchCalendar000001",
        },
    )
    for first, last, email, phone, source, budget, move_in in LEADS:
        fields: dict[str, Any] = {}
        if budget:
            fields["budget"] = budget
        if move_in:
            fields["move_in_date"] = (date.today() + timedelta(days=move_in)).isoformat()
        args: dict[str, Any] = {
            "first_name": first,
            "email": email,
            "custom_fields": fields,
            "tags": ["lead"],
        }
        args.update({k: v for k, v in (("last_name", last), ("phone", phone), ("source", source)) if v})
        await call(client, "upsert_contact", args)
    # Avery also booked a viewing: an upcoming appointment counts for the lead score
    await call(
        client,
        "create_appointment",
        {
            "first_name": "Avery",
            "last_name": "Stone",
            "email": "avery@example.com",
            "start_time": (start + timedelta(days=4)).isoformat(),
        },
    )
    await wait_delivered(client)
    say("   delivered by the sync worker.")


async def what_failed(client: Client) -> None:
    say("\n== Q1: What failed today and why?")
    status = await call(client, "get_sync_status")
    dead = await call(client, "list_dead_letters", {"limit": 10})
    t = status["totals"]
    say(
        f"   {t.get('succeeded', 0)} operation(s) delivered, {t.get('dead', 0)} failed for good; "
        f"sync verdict: {status['verdict']}."
    )
    for e in dead["entries"]:
        what = f"{e['action']} for {e['entity_type']} {e['entity_id']}"
        say(f"   FAILED {what} after {e['attempts']} attempt(s):")
        say(f"     why: {e['reason']}")
    for rec in status["recommendations"]:
        say(f"   next: {rec}")


async def who_to_call(client: Client) -> None:
    say("\n== Q2: Which leads should sales call first?")
    found = await call(client, "search_contacts", {"tag": "lead", "limit": 50})
    ranked = []
    for c in found["contacts"]:
        q = await call(client, "qualify_lead", {"contact_id": c["id"]})
        top = sorted(q["factors"], key=lambda f: -f["points"])[:2]
        ranked.append((q["score"], q["band"], c["name"], c["id"], "; ".join(f["evidence"] for f in top)))
    ranked.sort(key=lambda r: (-r[0], r[2] or ""))
    for i, (score, band, name, _cid, why) in enumerate(ranked, 1):
        say(f"   {i}. {name:<12} score {score:>3} ({band}) - {why}")
    if ranked and ranked[0][1] == "hot":
        score, _band, name, cid, _why = ranked[0]
        applied = await call(
            client,
            "qualify_lead",
            {"contact_id": cid, "apply": True, "idempotency_key": f"agent-session-{cid}"},
        )
        await wait_delivered(client)
        say(
            f"   Call {name} first: tagged {applied['tags']} and a follow-up task was queued "
            f"(operation {applied['sync_operation_id']})."
        )


async def is_healthy(client: Client) -> None:
    say("\n== Q3: Is my GoHighLevel connection healthy?")
    report = await call(client, "check_integration_health", {})
    for c in report["connections"]:
        say(
            f"   {c['connection']}: verdict: {c['verdict']}; credentials valid: {c['credentials_valid']}; "
            f"latency {c['latency_ms']} ms; burst quota left {c['burst_remaining']}/{c['burst_limit']}; "
            f"breaker {c['breaker_state']}; dead letters {c['dead_letters']}"
        )
        for reason in c["reasons"]:
            say(f"     because: {reason}")
        for rec in c["recommendations"]:
            say(f"     do: {rec}")


def show(appointment: dict[str, Any]) -> str:
    a = appointment
    crm = f"CRM id {a['crm_id']}" if a.get("crm_id") else "not in the CRM yet"
    return f"{a['id']} at {a['start_time']}: {a['status']}, {crm}, sync {a['sync_state']}"


async def book_and_change(client: Client) -> None:
    say("\n== Q4: Book Jane, find her appointment by email, reschedule, cancel and rebook")
    day = (datetime.now(ZoneInfo("America/New_York")) + timedelta(days=5)).date()
    booking = {
        "first_name": "Jane",
        "last_name": "Doe",
        "email": "jane@example.com",
        "start_time": f"{day}T14:00:00",
        "timezone": "America/New_York",
        "title": "Property tour",
    }
    booked = await call(client, "create_appointment", booking)
    say(f"   1. create_appointment: {booked['message']} (local id {booked['appointment']['id']})")
    await wait_delivered(client)

    found = (await call(client, "list_appointments", {"email": "jane@example.com"}))["appointments"]
    say(f"   2. list_appointments(email=jane@example.com): {len(found)} found")
    say(f"      {show(found[0])}")

    crm_id = found[0]["crm_id"]
    moved = await call(
        client,
        "update_appointment_status",
        {"appointment_id": crm_id, "action": "update", "start_time": f"{day}T16:00:00"},
    )
    say(f"   3. update_appointment_status(CRM id {crm_id}, update): now {moved['appointment']['start_time']}")
    await wait_delivered(client)

    cancelled = await call(
        client,
        "update_appointment_status",
        # confirm: the user said so; a client with elicitation support is asked instead
        {
            "appointment_id": found[0]["id"],
            "action": "cancel",
            "reason": "Jane cannot make it",
            "confirm": True,
        },
    )
    say(f"   4. update_appointment_status(cancel): {cancelled['appointment']['status']}")
    await wait_delivered(client)

    again = await call(client, "create_appointment", booking)  # the very same request as in step 1
    say(f"   5. create_appointment again, same arguments: {again['message']}")
    await wait_delivered(client)

    final = (await call(client, "list_appointments", {"email": "jane@example.com"}))["appointments"]
    say(f"   6. list_appointments(email=jane@example.com): {len(final)} found")
    for a in final:
        say(f"      {show(a)}")


def server_params(command: list[str]) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env.update(
        {
            "CRM_MCP_STATE_DIR": tempfile.mkdtemp(prefix="crm-mcp-agent-"),
            "CRM_MCP_LOG_LEVEL": "ERROR",
            "CRM_MCP_POLL_INTERVAL_SECONDS": "0.05",
            "CRM_MCP_SYNC_BACKOFF_BASE_SECONDS": "0.1",
            "CRM_MCP_SYNC_BACKOFF_CAP_SECONDS": "0.3",
            "CRM_MCP_SYNC_MAX_ATTEMPTS": "3",
        }
    )
    return StdioServerParameters(command=command[0], args=command[1:], env=env)


async def main(command: list[str]) -> int:
    async with Client(server_params(command), cache=None) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        missing = sorted(NEEDED - names)
        if missing:
            say(f"The server does not offer {missing}; is this crm-mcp with the agent toolbox?")
            return 3
        await seed(client)
        await what_failed(client)
        await who_to_call(client)
        await is_healthy(client)
        await book_and_change(client)
    return 0


if __name__ == "__main__":
    argv = sys.argv[1:]
    cmd = (
        argv[argv.index("--") + 1 :]
        if "--" in argv
        else [sys.executable, "-m", "crm_mcp", "serve", "--sandbox"]
    )
    sys.exit(asyncio.run(main(cmd)))
