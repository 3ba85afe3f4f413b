"""Mutation testing of the core: does a small bug in it make a unit test fail?

Each mutant changes one operator or constant of one module (`<` to `<=`, `and` to `or`, `True`
to `False`, `n` to `n + 1`, `+` to `-`, `min` to `max`, a call statement dropped, ...) and runs
that module's unit tests against it, in a copy of the sources (two at a time). A mutant the tests
do not catch *survives*. Some survivors are equivalent (no behaviour a user could see changes);
`scripts/mutants-equivalent.txt` lists each of them with the reason. The score is the share of
the other mutants that were killed.

    scripts/mutate                   every module
    scripts/mutate router scheduler  some of them
    scripts/mutate --list router     the mutants, without running them
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "scripts" / "mutants-equivalent.txt"

MODULES = {  # module (under src/clawmcp) -> the unit tests that cover it (pytest arguments)
    "router.py": ["tests/test_asks.py", "tests/test_router.py"],
    "mailbox.py": ["tests/test_mailbox.py", "tests/test_asks.py", "tests/test_router.py", "tests/test_claw.py"],
    "scheduler.py": ["tests/test_slots.py", "tests/test_scheduler.py"],
    "supervisor.py": ["tests/test_supervisor.py"],
    "claw.py": ["tests/test_claw.py", "tests/test_router.py", "tests/test_scheduler.py", "tests/test_handles.py",
                "tests/test_approvals.py"],
    "store/memory.py": ["tests/store/test_contract.py", "-k", "memory"],
    "store/writer.py": ["tests/store/test_writer.py", "tests/store/test_contract.py", "-k", "not memory and not postgres"],
    "cluster.py": ["tests/test_cluster.py", "tests/test_claw.py", "tests/test_scheduler.py"],
    "approvals.py": ["tests/test_approvals.py", "tests/test_cluster.py", "-k", "approv or decision"],
    "alerts.py": ["tests/test_alerts.py"],
    "triggers.py": ["tests/test_triggers.py", "-k", "not two_hosts"],
    "hooks.py": ["tests/test_triggers.py", "-k", "not two_hosts and not resource"],
    "context.py": ["tests/test_context.py", "tests/test_compaction.py"],
    "models/fallback.py": ["tests/test_context.py"],
}

_SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.And: ast.Or,
    ast.Or: ast.And,
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
}
_NAMES = {"min": "max", "max": "min"}


@dataclass(frozen=True)
class Mutant:
    module: str
    line: int
    col: int
    what: str
    text: str
    """The line it changes, as it was."""
    source: str

    @property
    def key(self) -> str:
        """Names the mutant across runs: the module, the line's text and the change."""
        return f"{self.module} | {self.text} | {self.what}"

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.what}: {self.text}"


def _skipped(tree: ast.Module) -> set[int]:
    """Lines not worth mutating: docstrings, logging, `__all__` and type-only code."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if isinstance(node.func.value, ast.Name) and node.func.value.id == "log":
                lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        elif (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        ) or (isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


Change = Callable[[Any], ast.AST]
"""Makes the mutated node from the original one."""


def _changes(node: ast.AST) -> list[tuple[str, Change]]:
    """The mutations of one node: what each does and how."""
    found: list[tuple[str, Change]] = []
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in _SWAPS:
                swap = _SWAPS[type(op)]

                def compare(n: ast.Compare, i: int = i, swap: type = swap) -> ast.AST:
                    return ast.Compare(
                        n.left, [swap() if j == i else o for j, o in enumerate(n.ops)], n.comparators
                    )

                found.append((f"{type(op).__name__} -> {swap.__name__}", compare))
    elif isinstance(node, ast.BoolOp | ast.BinOp) and type(node.op) in _SWAPS:
        swap = _SWAPS[type(node.op)]

        def operator(n: Any, swap: type = swap) -> ast.AST:
            if isinstance(n, ast.BoolOp):
                return ast.BoolOp(swap(), n.values)
            return ast.BinOp(n.left, swap(), n.right)

        found.append((f"{type(node.op).__name__} -> {swap.__name__}", operator))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        found.append(("not x -> x", lambda n: n.operand))
    elif isinstance(node, ast.Constant) and type(node.value) in (bool, int, float):
        value = node.value
        changed = (not value) if isinstance(value, bool) else value + 1
        found.append((f"{value!r} -> {changed!r}", lambda n, changed=changed: ast.Constant(changed)))
    elif isinstance(node, ast.Name) and node.id in _NAMES and isinstance(node.ctx, ast.Load):
        other = _NAMES[node.id]
        found.append((f"{node.id} -> {other}", lambda n, other=other: ast.Name(other, ast.Load())))
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call | ast.Await):
        found.append(("call dropped", lambda n: ast.Pass()))
    elif isinstance(node, ast.Return) and node.value is not None and ast.unparse(node.value) != "None":
        found.append(("return None", lambda n: ast.Return(ast.Constant(None))))
    return found


def mutants(module: str) -> list[Mutant]:
    """Every mutant of a module (under src/clawmcp), in source order."""
    text = (ROOT / "src" / "clawmcp" / module).read_text()
    lines = text.splitlines()
    skipped = _skipped(ast.parse(text))
    found = []
    for index, node in enumerate(ast.walk(ast.parse(text))):
        line = getattr(node, "lineno", 0)
        if line in skipped:
            continue
        for what, change in _changes(node):
            fresh = ast.parse(text)  # a tree of its own for each mutant
            target = list(ast.walk(fresh))[index]
            mutated = _Replace(target, change(target)).visit(fresh)
            source = ast.unparse(ast.fix_missing_locations(mutated))
            col = getattr(node, "col_offset", 0)
            found.append(Mutant(module, line, col, what, lines[line - 1].strip(), source))
    return sorted(found, key=lambda m: (m.line, m.col))


class _Replace(ast.NodeTransformer):
    def __init__(self, old: ast.AST, new: ast.AST) -> None:
        self.old, self.new = old, new

    def visit(self, node: ast.AST) -> Any:
        if node is self.old:
            return ast.copy_location(self.new, self.old)
        return super().visit(node)


def run(mutant: Mutant, workdir: Path, timeout: float) -> str:
    """killed, survived or timeout: what the module's unit tests say of the mutant."""
    target = workdir / "src" / "clawmcp" / mutant.module
    original = target.read_text()
    target.write_text(mutant.source)
    env = {**os.environ, "PYTHONPATH": str(workdir / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(_pytest(mutant.module), cwd=ROOT, env=env, capture_output=True, timeout=timeout)
        return "survived" if done.returncode == 0 else "killed"
    except subprocess.TimeoutExpired:
        return "killed"  # a mutant that hangs the tests is caught by their timeouts (fail_after)
    finally:
        target.write_text(original)


def _pytest(module: str) -> list[str]:
    """The command that runs a module's unit tests, stopping at the first failure."""
    plugins = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest"]
    return [sys.executable, "-m", "pytest", "-x", "-q", *plugins, *MODULES[module]]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "modules", nargs="*", help="router, scheduler, supervisor, claw, mailbox, store/memory"
    )
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2)))
    args = parser.parse_args()
    chosen = [m for m in MODULES if not args.modules or m.removesuffix(".py") in args.modules]
    found = [m for module in chosen for m in mutants(module)]
    if args.list:
        for m in found:
            print(m)
        print(f"{len(found)} mutants")
        return 0
    equivalent = _equivalent()
    started = time.monotonic()
    timeouts = {}
    for module in chosen:  # each module's tests pass unmutated; a mutant gets twice their time
        began = time.monotonic()
        if subprocess.run(_pytest(module), cwd=ROOT, capture_output=True).returncode != 0:
            print(f"the tests of {module} fail without any mutant; fix them first", file=sys.stderr)
            return 2
        timeouts[module] = 2 * (time.monotonic() - began) + 10
    with tempfile.TemporaryDirectory() as tmp:
        workdirs = []
        for i in range(args.jobs):
            workdir = Path(tmp) / str(i)
            shutil.copytree(ROOT / "src", workdir / "src")
            workdirs.append(workdir)
        free = list(workdirs)
        results: dict[Mutant, str] = {}
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            pending = {}
            for m in found:
                while not free:
                    done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in done:
                        mutant, workdir = pending.pop(future)
                        results[mutant] = future.result()
                        free.append(workdir)
                        _progress(mutant, results[mutant], len(results), len(found))
                workdir = free.pop()
                pending[pool.submit(run, m, workdir, timeouts[m.module])] = (m, workdir)
            for future in concurrent.futures.as_completed(pending):
                mutant = pending[future][0]
                results[mutant] = future.result()
                _progress(mutant, results[mutant], len(results), len(found))
    print()
    survivors = [m for m in found if results[m] == "survived"]
    unexplained = [m for m in survivors if m.key not in equivalent]
    stale = sorted(set(equivalent) - {m.key for m in found})
    counted = len(found) - (len(survivors) - len(unexplained))
    killed = len(found) - len(survivors)
    score = killed / counted if counted else 1.0
    for m in unexplained:
        print(f"survived: {m}")
    for key in stale:
        print(f"listed as equivalent but no longer a mutant: {key}")
    print(
        f"{len(found)} mutants, {killed} killed, {len(survivors) - len(unexplained)} equivalent "
        f"(listed), {len(unexplained)} survived: {score:.1%} of non-equivalent mutants killed "
        f"({time.monotonic() - started:.0f} s)"
    )
    return 0 if score >= 0.9 else 1


def _equivalent() -> dict[str, str]:
    """`module | line text | change  # reason` lines of the equivalents file."""
    found = {}
    for line in EQUIVALENT.read_text().splitlines() if EQUIVALENT.exists() else []:
        if line.strip() and not line.startswith("#"):
            key, _, reason = line.partition("  # ")
            found[key.strip()] = reason.strip()
    return found


def _progress(mutant: Mutant, result: str, done: int, total: int) -> None:
    if result == "survived":
        print(f"\r{' ' * 12}\r... survived: {mutant}", flush=True)
    print(f"\r{done}/{total}", end="", flush=True)


if __name__ == "__main__":
    sys.exit(main())
