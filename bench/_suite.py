"""Run every benchmark of bench/ and write bench/RESULTS.md and the README's table (scripts/bench).

    .venv/bin/python bench/_suite.py [--quick] [--results FILE] [--no-readme]

`--quick` runs each benchmark small, to check that the suite works (the figures mean little).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).parent
README = BENCH.parent / "README.md"
ARGS = {
    "toolhub": ["1000"],
    "messaging": ["10000"],
    "scale": ["1000", "65"],
    "mcphttp": ["500"],
    "cluster": ["10000", "5"],
    "live": ["100"],
    "hooks": ["500"],
}
QUICK = {
    "toolhub": ["100"],
    "messaging": ["1000"],
    "scale": ["20", "3"],
    "mcphttp": ["30"],
    "cluster": ["500", "1"],
    "live": ["10"],
    "hooks": ["20"],
}
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as info:
        names = re.findall(r"^model name\s*:\s*(.+)$", info.read(), re.M)
    cpu = names[0] if names else cpu
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| Benchmark | Figure | clawmcp | Baseline | Ratio | Goal |", "|---|---|---:|---:|---:|---|"]
    for r in rows:
        ours, base, unit = r["ours"], r["baseline"], r["unit"]
        assert isinstance(ours, float | int) and (base is None or isinstance(base, float | int))
        ratio = f"{ours / base:.2f}" if base else "-"
        baseline = f"{number(base)} {unit}" if base is not None else "-"
        lines.append(
            f"| {r['bench']} | {r['figure']} | {number(ours)} {unit} | {baseline} | {ratio} | {r['goal']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs, to check the suite")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md", help="where to write")
    parser.add_argument("--no-readme", action="store_true", help="leave the README's table alone")
    args = parser.parse_args()
    sizes = QUICK if args.quick else ARGS
    benches = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith(("_", "test_")))
    commands = []
    load_before = os.getloadavg()
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as out:
        for bench in benches:
            command = [sys.executable, str(bench.relative_to(BENCH.parent)), *sizes.get(bench.stem, [])]
            commands.append(" ".join(["python", *command[1:]]))
            print(f"$ {commands[-1]}", flush=True)
            env = os.environ | {"BENCH_RESULTS": out.name}
            subprocess.run(command, check=True, env=env, cwd=BENCH.parent)
        rows = [json.loads(line) for line in out.read().splitlines()]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    loads = " → ".join("/".join(f"{x:.2f}" for x in load) for load in (load_before, os.getloadavg()))
    summary = (
        f"Measured on {when} by `scripts/bench{' --quick' if args.quick else ''}`. Machine: {machine()}. "
        f"Load average (1/5/15 min) before → after: {loads}."
    )
    body = f"{summary}\n\n{table(rows)}\n"
    ran = "\n".join(f"    {c}" for c in commands)
    args.results.write_text(
        "# Benchmark results\n\nEach figure is set against a baseline measured in the same run (see each "
        f"script's docstring for what the baseline is).\n\n{body}\nCommands:\n\n{ran}\n"
    )
    print(f"wrote {args.results}")
    if not args.no_readme:
        text = README.read_text()
        if START not in text or END not in text:
            print(f"README.md has no {START} ... {END} section; not updated", file=sys.stderr)
            return 1
        head, rest = text.split(START, 1)
        README.write_text(f"{head}{START}\n{body}{END}{rest.split(END, 1)[1]}")
        print("updated the table in README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
