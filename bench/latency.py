"""Tool-call latency over stdio as a client sees it: median of get_sync_status vs a bare server's
trivial tool (async, returning a small dict) on the same SDK.

The headline (issue 13) goes through the SDK's own `mcp.Client` over stdio, which parses every
result into the SDK's models and validates its structured content against the tool's output
schema, as real clients do. Beside it, the same call as a raw JSON-RPC line (issue 2's figure),
where the client only reads the line. Target: client-side ratio <= 1.5.

Four servers run at once (bare and crm-mcp, one for each client). Calls alternate between them so
machine noise hits both alike, and no call follows one to the same process: a process that has
just answered answers faster (still awake, caches warm). Each round is
    client: bare, get_sync_status   raw: bare, get_sync_status   client: bare, detail=full
so the client's bare tool is timed twice a round. get_sync_status serves a snapshot cached per
local write (at most 1 s old). Also printed: its full answer (detail="full"), the uncached one
(max_age_seconds=0: every call runs the status queries; timed after the rounds, against the raw
bare tool, so its 10 ms of work does not sit next to the headline calls), and each reply's size.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import AsyncExitStack
from typing import Any

import anyio
from _common import ROOT, StdioServer, commands, median
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

Spec = tuple[str, str, str, dict[str, Any]]  # label, server, tool, arguments
Call = tuple[bool, str, str, str, dict[str, Any]]  # via the SDK's Client?, then a Spec
BARE: Spec = ("bare ping", "bare", "ping", {})
STATUS: Spec = ("get_sync_status", "crm-mcp", "get_sync_status", {})
FULL: Spec = ("get_sync_status detail=full", "crm-mcp", "get_sync_status", {"detail": "full"})
UNCACHED: Spec = ("get_sync_status uncached", "crm-mcp", "get_sync_status", {"max_age_seconds": 0})
ROUND: list[Call] = [
    (True, *BARE),
    (True, *STATUS),
    (False, *BARE),
    (False, *STATUS),
    (True, *BARE),
    (True, *FULL),
]
UNCACHED_ROUND: list[Call] = [(False, *BARE), (False, *UNCACHED)]
WARMUP = 10  # rounds; the first crm-mcp calls wait for the database to open

Times = dict[tuple[bool, str], list[float]]


async def run(calls: int, uncached_calls: int) -> tuple[Times, dict[str, int]]:
    times: Times = {(via, label): [] for via, label, *_ in [*ROUND, *UNCACHED_ROUND]}
    sizes: dict[str, int] = {}
    raw = {name: StdioServer(argv, env) for name, (argv, env) in commands().items()}  # own databases
    try:
        async with AsyncExitStack() as stack:
            devnull = stack.enter_context(open(os.devnull, "w"))  # noqa: ASYNC230, SIM115 - for stderr
            clients: dict[str, Client] = {}
            for name, (argv, env) in commands().items():
                params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=ROOT)
                clients[name] = await stack.enter_async_context(Client(stdio_client(params, errlog=devnull)))
            for proc in raw.values():
                proc.initialize()
            for client in clients.values():
                await client.list_tools()  # what a client does first; the output schemas are kept

            async def call(via_client: bool, server: str, tool: str, arguments: dict[str, Any]) -> float:
                t0 = time.perf_counter()
                if via_client:
                    result = await clients[server].call_tool(tool, arguments)
                    elapsed = time.perf_counter() - t0
                    assert not result.is_error, result
                else:
                    reply = raw[server].request("tools/call", {"name": tool, "arguments": arguments})
                    elapsed = time.perf_counter() - t0
                    assert not reply.get("result", {}).get("isError"), reply
                return elapsed

            for calls_, round_ in ((calls, ROUND), (uncached_calls, UNCACHED_ROUND)):
                for i in range(WARMUP + calls_):
                    for via_client, label, server, tool, arguments in round_:
                        elapsed = await call(via_client, server, tool, arguments)
                        if i >= WARMUP:
                            times[via_client, label].append(elapsed)
            for label, server, tool, arguments in (BARE, STATUS, FULL):
                reply = raw[server].request("tools/call", {"name": tool, "arguments": arguments})
                sizes[label] = len(json.dumps(reply, separators=(",", ":")).encode())
    finally:
        for proc in raw.values():
            proc.close()
    return times, sizes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=400, help="rounds of timed calls (default 400)")
    args = parser.parse_args()
    uncached_calls = max(10, args.calls // 4)
    times, sizes = anyio.run(run, args.calls, uncached_calls)
    ms = {key: median(values) * 1000 for key, values in times.items()}
    client_bare, raw_bare = ms[True, "bare ping"], ms[False, "bare ping"]
    client_status, client_full = ms[True, "get_sync_status"], ms[True, "get_sync_status detail=full"]
    raw_status, uncached = ms[False, "get_sync_status"], ms[False, "get_sync_status uncached"]
    print(
        f"through the SDK's Client (results validated against the output schema): p50 bare ping "
        f"{client_bare:.2f} ms, get_sync_status {client_status:.2f} ms, detail=full {client_full:.2f} ms "
        f"({args.calls} rounds)"
    )
    print(
        f"raw JSON-RPC: p50 bare ping {raw_bare:.2f} ms, get_sync_status {raw_status:.2f} ms "
        f"({args.calls} rounds); uncached {uncached:.2f} ms ({uncached_calls} rounds)"
    )
    print(
        f"reply size (JSON-RPC, bytes): bare ping {sizes['bare ping']:,}, get_sync_status "
        f"{sizes['get_sync_status']:,}, detail=full {sizes['get_sync_status detail=full']:,}"
    )
    print(f"latency_ratio = {client_status / client_bare:.2f}  (target <= 1.5; through the SDK's Client)")
    print(f"latency_ratio_full = {client_full / client_bare:.2f}  (detail=full, through the SDK's Client)")
    print(f"latency_ratio_raw = {raw_status / raw_bare:.2f}  (raw JSON-RPC)")
    print(
        f"latency_ratio_uncached = {uncached / raw_bare:.2f}  (raw JSON-RPC; every call queries the database)"
    )


if __name__ == "__main__":
    main()
