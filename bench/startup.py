"""Cold start: spawn `crm-mcp serve` (stdio) to its initialize response, against a bare MCP server.

Runs both alternately in the same run (the machine is noisy) and prints the ratio of medians.
Target (issue 2): ratio <= 1.2.
"""

from __future__ import annotations

import argparse

from _common import StdioServer, commands, median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    cmds = commands()
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(args.runs):
        for name, (argv, env) in cmds.items():
            server = StdioServer(argv, env)
            try:
                times[name].append(server.initialize())
            finally:
                server.close()
    bare, ours = median(times["bare"]), median(times["crm-mcp"])
    print(
        f"cold start median: bare {bare * 1000:.0f} ms, crm-mcp {ours * 1000:.0f} ms ({args.runs} runs each)"
    )
    print(f"startup_ratio = {ours / bare:.2f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
