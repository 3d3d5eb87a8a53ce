"""The soak (``scripts/soak.py``) for one minute, as CI runs it: a real ``cairn serve`` with its
projector process, 200 SSE subscribers in reader processes of their own, publish + receive +
ack at 80% of the peak it measures, a dead-letter queue in use. The script does the checking
(no errors, every message acked exactly once, every feed complete and in order, flat RSS and
p99); this test holds it to its exit status and its report.

A one-minute run compares its first and last 15 s (a quarter of the run each), since a
minute compared with itself would prove nothing. Over 15 s windows on a shared 2-core machine
the p99 check also measures the host: a burst of other work in the last window fails it (seen
here: 380 -> 640 ms while the server got 47% of a core). So a run whose only failures are the
p99 checks is run once more, and must pass then; every other check must pass the first time,
and a real drift fails both runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
P99_CHECKS = ("p99 publish, last window / first", "p99 publish -> delivery, last window / first")


def soak() -> tuple[int, str]:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "soak.py"), "--minutes", "1", "--peak-s", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return run.returncode, run.stdout + run.stderr


def failed_checks(report: str) -> set[str]:
    return {
        line.split("|")[1].strip()
        for line in report.splitlines()
        if line.startswith("|") and line.rstrip().endswith("| FAILED |")
    }


@pytest.mark.slow
def test_a_one_minute_soak_passes_every_check() -> None:
    status, report = soak()
    if status != 0 and failed_checks(report) and failed_checks(report) <= set(P99_CHECKS):
        status, report = soak()
    assert status == 0, report
    assert report.rstrip().endswith("PASSED"), report
    for check in (
        "| errors | 0 [] | ok |",
        "| every message acked exactly once |",
        "| every subscriber saw every event in order | 200 of 200 reached",
        "| RSS of server |",
        "| RSS of projector |",
        *(f"| {name} |" for name in P99_CHECKS),
    ):
        assert check in report, (check, report)
    assert not failed_checks(report), report
