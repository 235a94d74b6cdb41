"""Tool-call latency over stdio: median of get_sync_status vs the bare server's trivial tool.

Both servers run at once; calls alternate between them so machine noise hits both alike.
Target (issue 2): ratio <= 1.5.
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
    tools = {"bare": "ping", "crm-mcp": "get_sync_status"}
    times: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for server in servers.values():
            server.initialize()
        for _ in range(10):  # warm-up: the first crm-mcp call waits for the database to open
            for name, server in servers.items():
                server.request("tools/call", {"name": tools[name], "arguments": {}})
        for _ in range(args.calls):
            for name, server in servers.items():
                t0 = time.perf_counter()
                reply = server.request("tools/call", {"name": tools[name], "arguments": {}})
                times[name].append(time.perf_counter() - t0)
                assert not reply.get("result", {}).get("isError"), reply
    finally:
        for server in servers.values():
            server.close()
    bare, ours = median(times["bare"]), median(times["crm-mcp"])
    print(
        f"tool call median: bare ping {bare * 1000:.2f} ms, crm-mcp get_sync_status {ours * 1000:.2f} ms "
        f"({args.calls} calls each)"
    )
    print(f"latency_ratio = {ours / bare:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
