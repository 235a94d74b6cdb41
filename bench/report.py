"""Run every benchmark and put the numbers on one page: bench/results.md and bench/results.png.

Each benchmark runs as its own process, exactly as `python bench/NAME.py` (its own output stays
the reference and is kept in results.md); this script reads the figures from that output and
sets each next to its same-run baseline and its target.

    python bench/report.py            # the full runs (what `make bench` does)
    python bench/report.py --quick    # smaller runs of the same benchmarks, for a loaded machine
    python bench/report.py --only quota startup
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent


@dataclass
class Figure:
    bench: str
    name: str
    value: float
    baseline: float | None
    baseline_label: str
    target: str  # e.g. "<= 1.2 x baseline", ">= 0.95"
    target_value: float | None
    met: bool | None
    unit: str = ""


@dataclass
class Bench:
    name: str
    full: list[str]
    quick: list[str]
    extract: Callable[[str], list[Figure]]


def _num(pattern: str, text: str, group: int = 1) -> float:
    m = re.search(pattern, text)
    if m is None:
        raise ValueError(f"pattern {pattern!r} not in the output")
    return float(m.group(group).replace(",", ""))


def _at_most(
    bench: str,
    name: str,
    value: float,
    limit: float,
    baseline: float | None = None,
    baseline_label: str = "",
    target: str = "",
    unit: str = "",
) -> Figure:
    """A figure met when `value <= limit`; its target reads `<= limit` unless `target` is given."""
    target = target or f"<= {limit:g}"
    return Figure(bench, name, value, baseline, baseline_label, target, limit, value <= limit, unit)


def _at_least(
    bench: str, name: str, value: float, limit: float, baseline: float | None = None, baseline_label: str = ""
) -> Figure:
    """A figure met when `value >= limit`."""
    return Figure(bench, name, value, baseline, baseline_label, f">= {limit:g}", limit, value >= limit)


def _startup(out: str) -> list[Figure]:
    bare = _num(r"cold start median: bare ([\d.]+) ms", out)
    ours = _num(r"crm-mcp ([\d.]+) ms \(", out)
    return [
        _at_most(
            "startup",
            "cold start to initialize",
            ours,
            1.2 * bare,
            bare,
            "bare MCP server",
            "<= 1.2 x baseline",
            "ms",
        )
    ]


def _latency(out: str) -> list[Figure]:
    figures = []
    for via, label in (("through the SDK's Client", "SDK Client"), ("raw JSON-RPC", "raw JSON-RPC")):
        bare = _num(rf"(?m)^{re.escape(via)}.*?bare ping ([\d.]+) ms", out)
        ours = _num(rf"(?m)^{re.escape(via)}.*?get_sync_status ([\d.]+) ms", out)
        figures.append(
            _at_most(
                "latency",
                f"tool call median (get_sync_status, {label})",
                ours,
                1.5 * bare,
                bare,
                "bare server's async tool",
                "<= 1.5 x baseline",
                "ms",
            )
        )
    return figures


def _quota(out: str) -> list[Figure]:
    ours = _num(r"(?m)^quota_use=([\d.]+)", out)
    ours429 = _num(r"(?m)^quota_use=[\d.]+ 429s=(\d+)", out)
    naive = _num(r"naive quota_use=([\d.]+)", out)
    naive429 = _num(r"naive quota_use=[\d.]+ 429s=(\d+)", out)
    return [
        _at_least("quota", "quota use", ours, 0.95, naive, "naive client (retry on 429)"),
        _at_most("quota", "429s received", ours429, 0, naive429, "naive client", target="0"),
    ]


def _faults(out: str) -> list[Figure]:
    ratio = _num(r"quota_use faults/baseline=([\d.]+)", out)
    dup = _num(r"every op terminal=\w+ duplicates=(\d+)", out)
    lost = _num(r"lost=(\d+) breaker", out)
    ok = "result: OK" in out
    return [
        Figure(
            "faults",
            "quota use under faults (share of fault-free)",
            ratio,
            1.0,
            "fault-free run",
            "all ops terminal, breaker recovers",
            None,
            ok,
        ),
        _at_most(
            "faults", "duplicates + lost under faults", dup + lost, 0, 0.0, "fault-free run", target="0"
        ),
    ]


def _outbox(out: str) -> list[Figure]:
    figures = []
    for m in re.finditer(r"delivery_ratio_c(\d+) = ([\d.]+)", out):
        c, ratio = m.group(1), float(m.group(2))
        bare = _num(rf"bare_client_ratio_c{c} = ([\d.]+)", out)
        figures.append(
            _at_least(
                "outbox",
                f"delivery vs ideal C/latency, C={c}",
                ratio,
                0.9,
                bare,
                "bare connector at the same C",
            )
        )
    for m in re.finditer(r"cpu_ms_per_request_c(\d+): engine ([\d.]+), bare connector ([\d.]+)", out):
        c, engine, bare = m.group(1), float(m.group(2)), float(m.group(3))
        figures.append(
            _at_most(
                "outbox",
                f"engine CPU per CRM request, C={c}",
                engine,
                1.3 * bare,
                bare,
                "bare connector, same requests",
                "<= 1.3 x baseline",
                "ms",
            )
        )
    batched = _num(r"enqueue_batched_ratio = ([\d.]+)", out)
    figures.append(_at_least("outbox", "batched enqueues / 5,000 per s", batched, 1.0))
    return figures


def _claims(out: str) -> list[Figure]:
    figures = []
    for m in re.finditer(r"(\w+): a claim of 4 beside \d+ quiet connections: ([\d.]+) ms with 50 queued "
                         r"on one connection, ([\d.]+) ms with 5,000", out):  # fmt: skip
        backend, small, large = m.group(1), float(m.group(2)), float(m.group(3))
        figures.append(
            _at_most(
                "claims",
                f"claim beside 5,000 queued ({backend})",
                large,
                1.5 * small,
                small,
                "the same beside 50",
                "<= 1.5 x baseline",
                "ms",
            )
        )
    return figures


def _requests(out: str) -> list[Figure]:
    per = _num(r"requests_per_booking = ([\d.]+)", out)
    target = _num(r"requests_per_booking = [\d.]+\s+\(target <= ([\d.]+)", out)
    minimum = _num(r"writes = ([\d.]+) per booking", out)
    guarded = _num(r"baseline with every guard read ([\d.]+)", out)
    label = f"minimum (writes served); every guard read: {guarded:.2f}"
    return [_at_most("requests_per_booking", "GoHighLevel requests per booking", per, target, minimum, label)]


def _sync_records(out: str) -> list[Figure]:
    per = _num(r"engine: .*?write_calls_per_record=([\d.]+)", out)
    target = _num(r"\(target <= ([\d.]+)\)", out)
    naive = _num(r"baseline: .*?write_calls_per_record=([\d.]+)", out)
    return [
        _at_most(
            "sync_records", "HubSpot write calls per record", per, target, naive, "upsert_contact one by one"
        )
    ]


def _calls(out: str) -> list[Figure]:
    per = _num(r"zoho_calls_per_entry\s*= ([\d.]+)", out)
    naive = _num(r"zoho_calls_per_entry\s*= [\d.]+\s+baseline ([\d.]+)", out)
    ratio = _num(r"ratio\s*= ([\d.]+)", out)
    target = _num(r"ratio\s*= [\d.]+\s+target <= ([\d.]+)", out)
    return [
        Figure(
            "calls",
            "Zoho calls per logged call (RingCentral -> Zoho)",
            per,
            naive,
            "one call at a time, no batching",
            f"<= {target:g} x baseline",
            target * naive,
            ratio <= target,
        )
    ]


def _tenants(out: str) -> list[Figure]:
    fair = _num(r"tenants_fair_p95_ratio = ([\d.]+)", out)
    unfair = re.search(r"tenants_unfair_p95_ratio = ([\d.]+)", out)
    figures = [
        _at_most(
            "tenants",
            "quiet tenants' p95 latency beside a backlog / without",
            fair,
            2.0,
            float(unfair.group(1)) if unfair else None,
            "oldest-first claims, same ratio" if unfair else "",
        ),
        _at_least(
            "tenants",
            "noisy tenant's quota use while it has work",
            _num(r"tenants_noisy_quota_use = ([\d.]+)", out),
            0.9,
        ),
    ]
    capped = re.search(r"tenants_capped_p95_ratio = ([\d.]+).*?PER_CONNECTION=(\d+)", out)
    if capped:
        cap = capped.group(2)
        figures += [
            _at_most(
                "tenants",
                f"quiet tenants' p95 beside a backlog / without, {cap} per connection at most",
                float(capped.group(1)),
                2.0,
            ),
            _at_least(
                "tenants",
                f"noisy tenant's quota use, {cap} per connection at most",
                _num(r"tenants_capped_noisy_quota_use = ([\d.]+)", out),
                0.9,
            ),
        ]
    figures.append(_at_most("tenants", "429s", _num(r"tenants_429s = ([\d.]+)", out), 0.0, target="0"))
    return figures


def _scale(out: str) -> list[Figure]:
    figures = []
    two = re.search(r"scale_ratio_2_workers = ([\d.]+)", out)
    if two:
        figures.append(
            _at_least("scale", "2 workers' ops/s / 1 worker's", float(two.group(1)), 1.7, 1.0, "1 worker")
        )
    errors = _num(r"scale_strict_429s = ([\d.]+)", out)
    use = _num(r"scale_strict_quota_use = ([\d.]+)", out)
    figures.append(_at_most("scale", "429s, 4 workers on one Redis limit", errors, 0.0, target="0"))
    figures.append(_at_least("scale", "quota use, 4 workers on one Redis limit", use, 0.9))
    for m in re.finditer(r"engine_overhead_c(\d+) = ([\d.]+)", out):
        figures.append(
            _at_most(
                "scale",
                f"engine CPU/request / bare connector's, C={m.group(1)}",
                float(m.group(2)),
                1.3,
                1.0,
                "bare connector",
            )
        )
    return figures


BENCHES = [
    Bench("startup", [], ["--runs", "3"], _startup),
    Bench("latency", [], ["--calls", "100"], _latency),
    Bench("quota", [], ["--ops", "400"], _quota),
    Bench("faults", [], ["--ops", "400", "--baseline-ops", "100"], _faults),
    Bench("outbox", [], ["--enqueues", "2000", "--concurrency", "4", "16", "32", "--rounds", "5"], _outbox),
    Bench("requests_per_booking", [], ["--bookings", "10"], _requests),
    Bench("sync_records", [], ["--records", "300"], _sync_records),
    Bench("calls", [], ["--calls", "150"], _calls),
    Bench("claims", [], ["--claims", "60"], _claims),
    Bench("tenants", [], ["--noisy", "300", "--quiet", "5", "--rounds", "3"], _tenants),
    Bench(
        "scale", [], ["--ops", "200", "--workers", "1", "2", "--strict-ops", "60", "--no-overhead"], _scale
    ),
]


def run_bench(bench: Bench, quick: bool, timeout: float) -> tuple[str, list[Figure], float, str | None]:
    argv = [sys.executable, str(BENCH / f"{bench.name}.py"), *(bench.quick if quick else bench.full)]
    print(f"$ {' '.join(argv[1:])}", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=BENCH.parent, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "", [], time.perf_counter() - t0, f"timed out after {timeout:.0f} s"
    elapsed = time.perf_counter() - t0
    sys.stdout.write(proc.stdout)
    sys.stdout.flush()
    crashed = None
    if "Traceback (most recent call last)" in proc.stderr:
        sys.stderr.write(proc.stderr)
        crashed = f"crashed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1]}"
    try:
        figures = bench.extract(proc.stdout)
    except ValueError as exc:
        tail = proc.stderr.strip().splitlines()[-1:] or [""]
        return proc.stdout, [], elapsed, crashed or f"no figures ({exc}; exit {proc.returncode}) {tail[0]}"
    return proc.stdout, figures, elapsed, crashed


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if value else "0"
    return f"{text} {unit}".strip()


def table(figures: list[Figure]) -> str:
    rows = [
        "| benchmark | figure | this run | same-run baseline | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        base = f"{_fmt(f.baseline, f.unit)} ({f.baseline_label})" if f.baseline is not None else "—"
        met = {True: "yes", False: "**no**", None: "—"}[f.met]
        rows.append(f"| `{f.bench}` | {f.name} | {_fmt(f.value, f.unit)} | {base} | {f.target} | {met} |")
    return "\n".join(rows)


def chart(figures: list[Figure], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [f for f in figures if f.baseline is not None or f.target_value is not None]
    cols = 3
    rows = max(1, (len(shown) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False)
    for ax, f in zip(axes.flat, shown, strict=False):
        labels, values, colours = [], [], []
        if f.baseline is not None:
            labels.append("baseline")
            values.append(f.baseline)
            colours.append("#9aa5b1")
        labels.append("this run")
        values.append(f.value)
        colours.append({True: "#2e7d32", False: "#c62828", None: "#1565c0"}[f.met])
        ax.bar(labels, values, color=colours)
        if f.target_value is not None:
            ax.axhline(
                f.target_value, color="#ef6c00", linestyle="--", linewidth=1.2, label=f"target {f.target}"
            )
            ax.legend(fontsize=7, loc="upper right")
        if not any(values) and not f.target_value:
            ax.set_ylim(0, 1)  # all zero: a plain axis, not a 1e-17 scale
        for i, v in enumerate(values):
            ax.annotate(_fmt(v), (i, v), ha="center", va="bottom", fontsize=8)
        ax.set_title(f"{f.bench}: {f.name}" + (f" ({f.unit})" if f.unit else ""), fontsize=8.5)
        ax.tick_params(labelsize=8)
        ax.margins(y=0.2)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs (minutes, not tens of minutes)")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], help="run only these")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark (default 1800)")
    parser.add_argument("--out", type=Path, default=BENCH / "results.md")
    parser.add_argument(
        "--replot", action="store_true", help="rewrite the page and chart from the outputs kept in --out"
    )
    args = parser.parse_args(argv)
    chosen = [b for b in BENCHES if not args.only or b.name in args.only]
    figures: list[Figure] = []
    raw: list[str] = []
    problems: list[str] = []
    kept: dict[str, tuple[str, float]] = {}
    if args.replot:
        previous = args.out.read_text(encoding="utf-8")
        args.quick = "quick runs" in previous.split("\n", 3)[2]
        for m in re.finditer(r"### `bench/(\w+)\.py` \((\d+) s\)\n\n```\n(.*?)\n```", previous, re.S):
            kept[m.group(1)] = (m.group(3), float(m.group(2)))
    for bench in chosen:
        if args.replot:
            if bench.name not in kept:
                continue
            out, elapsed = kept[bench.name]
            found, problem = bench.extract(out), None
        else:
            out, found, elapsed, problem = run_bench(bench, args.quick, args.timeout)
        figures += found
        raw.append(f"### `bench/{bench.name}.py` ({elapsed:.0f} s)\n\n```\n{out.strip()}\n```\n")
        if problem:
            problems.append(f"- `{bench.name}`: {problem}")
    mode = "quick runs (--quick)" if args.quick else "full runs"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if args.replot:  # the run's own time, not now
        stamp = previous.split("\n", 3)[2].split(",")[0]
    png = args.out.with_suffix(".png")
    parts = [
        "# Benchmark results",
        "",
        f"{stamp}, {mode}, Python {sys.version.split()[0]}. Written by `python bench/report.py`"
        " (`make bench`); each baseline was measured in the same run, on the same machine.",
        "",
        table(figures),
        "",
        "Scale-out over PostgreSQL (several workers on one database): no benchmark yet.",
        "",
        f"![benchmark chart]({png.name})",
        "",
    ]
    if problems:
        parts += ["Benchmarks that gave no figures:", "", *problems, ""]
    parts += ["## Each benchmark's own output", "", *raw]
    args.out.write_text("\n".join(parts), encoding="utf-8")
    if figures:
        chart(figures, png, f"crm-mcp benchmarks, {stamp} ({mode})")
    print(f"\nwrote {args.out} and {png}")
    print(table(figures))
    return 1 if problems or any(f.met is False for f in figures) else 0


if __name__ == "__main__":
    raise SystemExit(main())
