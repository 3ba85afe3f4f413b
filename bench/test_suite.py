"""`scripts/bench`'s suite, run small: every benchmark runs and lands in the results table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent


def test_the_suite_runs_every_benchmark_and_writes_a_table_with_ratios(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    command = [sys.executable, str(BENCH / "_suite.py"), "--quick", "--results", str(results), "--no-readme"]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    text = results.read_text()
    assert "by `scripts/bench --quick`. Machine: " in text and " cores, " in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == ["| Benchmark", "Figure", "clawmcp", "Baseline", "Ratio", "Goal |"]
    assert {r[0].strip("| ") for r in rows[1:]} == {
        p.stem for p in BENCH.glob("*.py") if not p.stem.startswith(("_", "test_"))
    }
    median = next(r for r in rows if r[1] == "tool call through the hub, median")
    ours, base, ratio = (float(cell.split()[0].replace(",", "")) for cell in median[2:5])
    assert abs(ratio - ours / base) <= 0.03 * ratio  # the table shows figures rounded to 3 digits
