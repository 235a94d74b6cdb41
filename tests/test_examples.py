"""examples/agent_session.py runs end to end against `crm-mcp serve --sandbox`: it answers its
questions and books, finds, reschedules, cancels and rebooks an appointment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "agent_session.py"


def run_example(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env["XDG_STATE_HOME"] = str(tmp_path)
    args = [sys.executable, str(EXAMPLE)]
    return subprocess.run(
        args, capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env, check=False
    )


def test_agent_session_answers_the_three_questions(tmp_path: Path) -> None:
    done = run_example(tmp_path)
    out = done.stdout
    assert done.returncode == 0, f"stdout:\n{out}\nstderr:\n{done.stderr[-3000:]}"
    q1, rest = out.split("== Q1: What failed today and why?")[1].split("== Q2")
    assert "1 failed for good" in q1 and "Calendar not found" in q1 and "appointment.create" in q1
    q2, rest = rest.split("== Q3: Is my GoHighLevel connection healthy?")
    q3, q4 = rest.split("== Q4: Book Jane, find her appointment by email, reschedule, cancel and rebook")
    ranking = [line.split()[1] for line in q2.splitlines() if line.strip()[:2] in {"1.", "2.", "3.", "4."}]
    assert ranking[0] == "Avery" and set(ranking) == {"Avery", "Blake", "Casey", "Devon"}
    assert "(hot)" in q2 and "Call Avery Stone first" in q2 and "qualified" in q2
    assert "credentials valid: True" in q3 and "verdict: degraded" in q3 and "failed for good" in q3
    # Q4: found by email, changed by its CRM id, cancelled, and the same booking again is a new one
    steps = {
        line.split(".")[0].strip(): line
        for line in q4.splitlines()
        if line.strip()[:2] in {f"{i}." for i in range(1, 7)}
    }
    assert "1 found" in steps["2"] and "sync delivered" in q4 and "CRM id" in steps["3"]
    assert "T16:00:00" in steps["3"] and "cancelled" in steps["4"]
    assert "Booked anew" in steps["5"] and "2 found" in steps["6"]
    final = q4.split(steps["6"])[1]
    assert (
        "confirmed, CRM id" in final and "cancelled, CRM id" in final and final.count("sync delivered") == 2
    )
