"""The soak (``scripts/soak.py``) for one minute, as CI runs it: a real ``cairn serve`` with its
projector process, 200 SSE subscribers in reader processes of their own, publish + receive +
ack at 80% of the peak it measures, a dead-letter queue in use. The script does the checking
(no errors, every message acked exactly once, every feed complete and in order, flat RSS and
p99); this test holds it to its exit status and its report.

A one-minute run compares its first and last 15 s (a quarter of the run each), since a
minute compared with itself would prove nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_one_minute_soak_passes_every_check() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "soak.py"), "--minutes", "1", "--peak-s", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert report.rstrip().endswith("PASSED"), report
    for check in (
        "| errors | 0 [] | ok |",
        "| every message acked exactly once |",
        "| every subscriber saw every event in order | 200 of 200 reached",
        "| RSS of server |",
        "| RSS of projector |",
        "| p99 publish, last window / first |",
    ):
        assert check in report, (check, report)
    assert "FAILED" not in report, report
