"""A host with many Claws and schedules: start time, memory (RSS) and fire lateness.

CLAWS scripted Claws with 10 schedules each, every minute at one second of it (cron
`S * * * * *`, seconds first), spread evenly over the minute, each with a prompt, so each fire is
a run: 1,000 Claws give 10,000 schedules, about 167 fires and runs per second. `clawmcp serve` is
started on a fresh data_dir (the first start stores every schedule) and timed from process start
to "listening"; it runs for SECONDS, then its RSS is read and it is stopped. It is started again
on the same data_dir (a restart, which also catches up the missed minute) and timed. A fire's
lateness is its fired_at minus its slot, from the store, for the slots of the first run once the
host listens. Baseline in the same run: the same measurements for a host with one Claw and one
schedule.

    .venv/bin/python bench/scale.py [CLAWS] [SECONDS]
"""

from __future__ import annotations

import math
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _figures import record

PER_CLAW = 10


def write_manifest(folder: Path, claws: int, per_claw: int) -> Path:
    lines = [
        "host: {listen: '127.0.0.1:0', data_dir: state}",
        "models:\n  m: {provider: scripted, rules: [{reply: ok}]}",
        "claws:",
    ]
    for c in range(claws):
        lines.append(f"  c{c}:\n    model: m\n    schedules:")
        for s in range(per_claw):
            second = (c * per_claw + s) % 60
            lines.append(f"      - {{name: s{s}, cron: '{second} * * * * *', prompt: tick}}")
    path = folder / "m.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def serve(path: Path, seconds: float) -> tuple[float, float, float]:
    """Start `clawmcp serve`, time it until it listens, let it run, read its RSS, stop it.
    Returns the start time, the RSS and the wall-clock time it was listening from."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "clawmcp", "serve", str(path)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "listening on" in line:
            break
    else:
        raise RuntimeError("clawmcp serve did not start")
    start, listening = time.perf_counter() - started, time.time()
    time.sleep(seconds)  # the host works meanwhile; this is the measurement window
    rss = rss_mb(process.pid)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    return start, rss, listening


def lateness_ms(path: Path, since: float) -> list[float]:
    """Lateness of the fires whose slot came once the host was listening."""
    with sqlite3.connect(path / "state" / "state.db") as db:
        sql = "SELECT fired_at - slot FROM fires WHERE slot >= ?"
        return sorted(late * 1000 for (late,) in db.execute(sql, (since,)))


def measure(claws: int, per_claw: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write_manifest(folder, claws, per_claw)
        first_start, rss, listening = serve(path, seconds)
        late = lateness_ms(folder, listening)
        restart, _, _ = serve(path, 1.0)
    q = statistics.quantiles(late, n=100) if len(late) > 1 else (late or [math.nan]) * 99  # nan: none fired
    return {
        "start": first_start,
        "restart": restart,
        "rss": rss,
        "fires": len(late),
        "p50": q[49],
        "p99": q[98],
    }


def main() -> None:
    claws = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 65.0
    base = measure(1, 1, seconds)
    ours = measure(claws, PER_CLAW, seconds)
    print(f"{claws} Claws, {claws * PER_CLAW} schedules, {seconds:g} s; baseline: 1 Claw, 1 schedule")
    print(f"{'':<22}{'ours':>10}{'baseline':>10}{'ratio':>8}   goal")
    rows = [
        ("start, fresh (s)", "start", "< 3 s"),
        ("start, restart (s)", "restart", "< 3 s"),
        ("RSS (MB)", "rss", "< 150 MB"),
        ("fires", "fires", ""),
        ("lateness p50 (ms)", "p50", ""),
        ("lateness p99 (ms)", "p99", "< 100 ms"),
    ]
    for label, key, goal in rows:
        ratio = ours[key] / base[key] if base[key] else float("nan")
        print(f"{label:<22}{ours[key]:>10.2f}{base[key]:>10.2f}{ratio:>8.2f}   {goal}")
        name, _, unit = label.partition(" (")
        if key != "fires":
            record(f"{claws} Claws: {name}", ours[key], base[key], unit.rstrip(")"), goal)


if __name__ == "__main__":
    main()
