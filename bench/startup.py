"""Cold start: spawn `crm-mcp serve` (stdio) to its initialize response, against a bare MCP server.

Runs both alternately in the same run (the machine is noisy) and prints the ratio of medians.
Target (issue 2): ratio <= 1.2.

Both start from byte-code, as installed packages do: the SDK's was compiled by pip, and this
checkout's `crm_mcp` is compiled first (as `make install` does). Without that, where Python may
not write `__pycache__` (PYTHONDONTWRITEBYTECODE=1, as on these machines) every start compiled
~60 modules from source, some 45 ms that a pip-installed server never pays.
"""

from __future__ import annotations

import argparse
import compileall

from _common import ROOT, StdioServer, commands, median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    compileall.compile_dir(ROOT / "crm_mcp", quiet=1)
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
