"""What a benchmark measured, for `scripts/bench` (which sets $BENCH_RESULTS); a no-op otherwise."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def record(figure: str, ours: float, baseline: float | None, unit: str, goal: str = "") -> None:
    """One figure of the running benchmark, with the baseline measured in the same run."""
    if path := os.environ.get("BENCH_RESULTS"):
        row = {
            "bench": Path(sys.argv[0]).stem,
            "figure": figure,
            "ours": ours,
            "baseline": baseline,
            "unit": unit,
            "goal": goal,
        }
        with open(path, "a") as out:
            out.write(json.dumps(row) + "\n")
