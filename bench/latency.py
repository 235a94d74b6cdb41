"""Tool-call latency over stdio: median of get_sync_status vs the bare server's trivial tool.

Both servers run at once; calls alternate between them so machine noise hits both alike.
Target (issue 2): ratio <= 1.5. get_sync_status serves a snapshot cached per local write (at most
1 s old); the uncached figure (max_age_seconds=0: every call runs the status queries) is printed too.
"""

from __future__ import annotations

import argparse
import time

from _common import StdioServer, commands, median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    cmds = commands()
    servers = {name: StdioServer(argv, env) for name, (argv, env) in cmds.items()}
    calls = {
        "bare": ("bare", "ping", {}),
        "crm-mcp": ("crm-mcp", "get_sync_status", {}),
        "crm-mcp uncached": ("crm-mcp", "get_sync_status", {"max_age_seconds": 0}),
    }
    times: dict[str, list[float]] = {name: [] for name in calls}
    try:
        for server in servers.values():
            server.initialize()
        for _ in range(10):  # warm-up: the first crm-mcp call waits for the database to open
            for server_name, tool, arguments in calls.values():
                servers[server_name].request("tools/call", {"name": tool, "arguments": arguments})
        for _ in range(args.calls):
            for name, (server_name, tool, arguments) in calls.items():
                t0 = time.perf_counter()
                reply = servers[server_name].request("tools/call", {"name": tool, "arguments": arguments})
                times[name].append(time.perf_counter() - t0)
                assert not reply.get("result", {}).get("isError"), reply
    finally:
        for server in servers.values():
            server.close()
    bare, ours, uncached = (median(times[k]) for k in ("bare", "crm-mcp", "crm-mcp uncached"))
    print(
        f"tool call median: bare ping {bare * 1000:.2f} ms, crm-mcp get_sync_status {ours * 1000:.2f} ms, "
        f"uncached {uncached * 1000:.2f} ms ({args.calls} calls each)"
    )
    print(f"latency_ratio = {ours / bare:.2f}  (target <= 1.5)")
    print(f"latency_ratio_uncached = {uncached / bare:.2f}  (every call queries the database)")


if __name__ == "__main__":
    main()
