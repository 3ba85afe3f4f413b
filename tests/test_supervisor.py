"""The supervisor's OTP semantics with plain children: restart types, strategies, intensity and
backoff."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
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

    def target(self, name: str) -> Callable[[], Awaitable[None]]:
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
        sup.add(name, children.target(name), restart)
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


class Time:
    """The supervisor's clock and sleep: time moves only when the test or a backoff moves it, and
    each backoff is recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


def timed(t: Time, intensity: int, max_backoff: float = 0.05) -> Supervisor:
    return Supervisor(
        "test",
        intensity=intensity,
        period=60,
        backoff=0.01,
        max_backoff=max_backoff,
        clock=t.clock,
        sleep=t.sleep,
    )


async def test_each_backoff_doubles_up_to_max_backoff() -> None:
    c, t = Children(), Time()
    c.crash.add("a")
    sup = timed(t, intensity=5, max_backoff=0.03)
    sup.add("a", c.target("a"))
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        await until(sup, lambda: sup.children["a"].state == "failed")
        tg.cancel_scope.cancel()
    assert t.slept == [0.01, 0.02, 0.03, 0.03, 0.03]


async def test_the_restart_window_slides_so_crashes_far_apart_never_fail_a_child() -> None:
    c, t = Children(), Time()
    sup = timed(t, intensity=2)
    sup.add("a", c.target("a"))
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        for crash in range(1, 6):  # five crashes, each 40 s after the one before
            await until(sup, lambda crash=crash: c.starts["a"] == crash)  # type: ignore[misc]
            t.now += 40
            c.end("a", "crash")
        await until(sup, lambda: c.starts["a"] == 6)
        # within any 60 s there were at most two restarts: never past the intensity
        assert (sup.children["a"].state, sup.children["a"].restarts) == ("running", 5)
        tg.cancel_scope.cancel()


async def test_a_group_restart_waits_until_the_siblings_have_stopped() -> None:
    log: list[str] = []

    def child(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            log.append(f"start {name}")
            try:
                if name == "b" and log.count("start b") == 1:
                    raise RuntimeError("b broke")
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    for _ in range(5):  # a cleanup that takes a while
                        await anyio.lowlevel.checkpoint()
                log.append(f"end {name}")

        return run

    sup = Supervisor("test", strategy="one_for_all", backoff=0, sleep=lambda s: anyio.lowlevel.checkpoint())
    for name in "abc":
        sup.add(name, child(name))
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        await until(sup, lambda: log.count("start b") == 2 and sup.children["c"].state == "running")
        tg.cancel_scope.cancel()
    restarted = log.index("start a", 1)
    assert {"end a", "end b", "end c"} <= set(log[:restarted])  # all three had stopped first


async def test_a_restart_exactly_one_period_ago_still_counts() -> None:
    c, t = Children(), Time()
    sup = timed(t, intensity=1)
    sup.add("a", c.target("a"))
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        await until(sup, lambda: c.starts["a"] == 1)
        c.end("a", "crash")  # the first restart, at 0 s (its backoff moves the clock 0.01 s)
        await until(sup, lambda: c.starts["a"] == 2)
        t.now = 60.0  # exactly one period after the first crash
        c.end("a", "crash")
        await until(sup, lambda: sup.children["a"].state == "failed")
        tg.cancel_scope.cancel()


async def test_a_group_restart_shows_restarting_then_restarts_all_but_its_temporary_members() -> None:
    c, backing_off, go_on = Children(), anyio.Event(), anyio.Event()

    async def sleep(seconds: float) -> None:
        backing_off.set()
        await go_on.wait()

    sup = Supervisor("test", strategy="one_for_all", backoff=0, sleep=sleep)
    for name, restart in (("a", "permanent"), ("t", "temporary"), ("b", "transient")):
        sup.add(name, c.target(name), restart)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        await until(sup, lambda: len(c.go) == 3)
        c.end("a", "crash")
        with anyio.fail_after(10):
            await backing_off.wait()
        assert {n: child.state for n, child in sup.children.items()} == dict.fromkeys("atb", "restarting")
        go_on.set()
        await until(sup, lambda: c.starts["a"] == 2 and c.starts["b"] == 2)
        assert (sup.children["t"].state, c.starts["t"]) == ("stopped", 1)
        tg.cancel_scope.cancel()


async def test_a_child_added_while_running_starts_and_a_removed_one_stops_for_good() -> None:
    c = Children()
    async with supervising(c, {"a": "permanent"}) as sup:
        sup.add("b", c.target("b"), "permanent")
        await until(sup, lambda: c.starts == {"a": 1, "b": 1} and "b" in c.go)
        await sup.remove("b")  # returns once b has stopped
        assert "b" not in sup.children
        c.end("a", "crash")
        await until(sup, lambda: c.starts["a"] == 2 and sup.children["a"].state == "running")
        assert c.starts["b"] == 1


async def test_a_child_removed_while_it_waits_to_restart_is_not_restarted() -> None:
    c = Children()
    c.crash.add("a")
    sup = Supervisor("test", backoff=0.01, max_backoff=0.05)
    sleeping = anyio.Event()
    wake = anyio.Event()

    async def sleep(delay: float) -> None:
        sleeping.set()
        await wake.wait()

    sup.sleep = sleep
    sup.add("a", c.target("a"), "permanent")
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        with anyio.fail_after(10):
            await sleeping.wait()
        await sup.remove("a")
        wake.set()
        await anyio.wait_all_tasks_blocked()  # a restart would have run (and crashed) by now
        tg.cancel_scope.cancel()
    assert c.starts["a"] == 1 and "a" not in sup.children
