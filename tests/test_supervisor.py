"""The supervisor's OTP semantics with plain children: restart types, strategies, intensity and
backoff."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

from clawmcp.supervisor import RestartType, Strategy, Supervisor

pytestmark = pytest.mark.anyio


class Children:
    """Children that count their starts and do what the test tells each one next."""

    def __init__(self) -> None:
        self.starts: Counter[str] = Counter()
        self.started_at: dict[str, list[float]] = {}
        self.crash: set[str] = set()  # crash at once on every start
        self.go: dict[
            str, anyio.Event
        ] = {}  # name -> event: when set, the child crashes ("crash") or returns ("exit")
        self.how: dict[str, str] = {}

    def target(self, name: str) -> Callable[[], object]:
        async def child() -> None:
            self.starts[name] += 1
            self.started_at.setdefault(name, []).append(time.monotonic())
            if name in self.crash:
                raise RuntimeError(f"{name} broke")
            self.go[name] = anyio.Event()
            await self.go[name].wait()
            if self.how.pop(name) == "crash":
                raise RuntimeError(f"{name} broke")

        return child

    def end(self, name: str, how: str) -> None:
        self.how[name] = how
        self.go[name].set()


@asynccontextmanager
async def supervising(
    children: Children, spec: dict[str, RestartType], strategy: Strategy = "one_for_one", intensity: int = 3
) -> AsyncIterator[Supervisor]:
    sup = Supervisor(
        "test", strategy=strategy, intensity=intensity, period=60, backoff=0.01, max_backoff=0.05
    )
    for name, restart in spec.items():
        sup.add(name, children.target(name), restart)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        yield sup
        tg.cancel_scope.cancel()


async def until(sup: Supervisor, check: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not check():
            await sup.changed.wait()


async def test_one_for_one_restarts_only_the_crashed_child() -> None:
    c = Children()
    async with supervising(c, {"a": "permanent", "b": "permanent"}) as sup:
        await until(sup, lambda: c.starts == {"a": 1, "b": 1} and "a" in c.go and "b" in c.go)
        c.end("a", "crash")
        await until(sup, lambda: c.starts["a"] == 2 and sup.children["a"].state == "running")
        assert c.starts["b"] == 1
        assert (sup.children["a"].restarts, sup.children["a"].last_error) == (1, "a broke")


@pytest.mark.parametrize(
    ("restart", "how", "restarted", "state"),
    [
        ("permanent", "exit", True, "running"),
        ("permanent", "crash", True, "running"),
        ("transient", "exit", False, "stopped"),
        ("transient", "crash", True, "running"),
        ("temporary", "crash", False, "stopped"),
    ],
)
async def test_restart_types_decide_whether_an_ended_child_comes_back(
    restart: RestartType, how: str, restarted: bool, state: str
) -> None:
    c = Children()
    async with supervising(c, {"a": restart}) as sup:
        await until(sup, lambda: "a" in c.go)
        c.end("a", how)
        await until(sup, lambda: sup.children["a"].state == state and (c.starts["a"] == 2) == restarted)
        assert c.starts["a"] == (2 if restarted else 1)


async def test_a_child_past_its_intensity_is_marked_failed_and_the_others_go_on() -> None:
    c = Children()
    c.crash.add("bad")
    async with supervising(c, {"bad": "permanent", "good": "permanent"}, intensity=3) as sup:
        await until(sup, lambda: sup.children["bad"].state == "failed")
        assert c.starts["bad"] == 4  # the first start and three restarts
        assert (sup.children["good"].state, c.starts["good"]) == ("running", 1)
        c.end("good", "crash")
        await until(sup, lambda: c.starts["good"] == 2)


async def test_restarts_back_off_doubling() -> None:
    c = Children()
    c.crash.add("a")
    async with supervising(c, {"a": "permanent"}, intensity=3) as sup:
        await until(sup, lambda: sup.children["a"].state == "failed")
    gaps = [b - a for a, b in zip(c.started_at["a"], c.started_at["a"][1:], strict=False)]
    assert [round(g, 2) >= expected for g, expected in zip(gaps, (0.01, 0.02, 0.04), strict=True)] == [
        True
    ] * 3


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("one_for_one", {"a": 1, "b": 2, "c": 1}),
        ("one_for_all", {"a": 2, "b": 2, "c": 2}),
        ("rest_for_one", {"a": 1, "b": 2, "c": 2}),
    ],
)
async def test_the_strategy_decides_which_children_restart_with_a_crashed_one(
    strategy: Strategy, expected: dict[str, int]
) -> None:
    c = Children()
    async with supervising(c, {"a": "permanent", "b": "permanent", "c": "permanent"}, strategy) as sup:
        await until(sup, lambda: len(c.go) == 3)
        c.end("b", "crash")
        await until(
            sup, lambda: c.starts["b"] == 2 and all(ch.state == "running" for ch in sup.children.values())
        )
        assert dict(c.starts) == expected
