"""A Claw's mailbox consumer in a whole host, in memory: faults of ours while handling one message,
retries, a fire delivered twice; and an audit the disk cannot take (on a real SQLite file)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from clawmcp.claw import MAX_ATTEMPTS
from clawmcp.errors import StoreUnavailable, ToolRefused, UserError, WorkerLost
from clawmcp.host import Host
from clawmcp.manifest import load
from clawmcp.runtime import OnStep, Runtime
from clawmcp.store import Message, Outgoing, Run, RunTrigger
from clawmcp.store.memory import MemoryStore
from clawmcp.store.sqlite import SqliteStore
from tests.fakes import (
    API,
    LOCAL,
    FakeAPI,
    FakeClock,
    disk_full,
    hosting,
    logged,
    openai_error,
    openai_text,
    tool_server,
    until,
)

pytestmark = pytest.mark.anyio

BRAIN = (
    f"models:\n  brain: {{provider: openai, base_url: '{API}', model: m}}\nclaws:\n  c: {{model: brain}}\n"
)


async def test_a_message_that_breaks_its_handling_is_dead_lettered_and_the_claw_goes_on(
    tmp_path: Path,
) -> None:
    body = "models: {m: {provider: scripted, rules: [{reply: hi}]}}\nclaws: {c: {model: m}}\n"
    async with hosting(tmp_path, body) as host:
        host.claws.retry_base = 0.001
        bad, _ = await host.store.enqueue("c", "{not json", kind="fire")  # a row no clawmcp writes
        good = await host.claws.tell("c", "hello")
        with anyio.fail_after(20):
            while (m := await host.store.get_message(good.id)) is None or m.state != "done":
                await host.claws.settled.wait()
        dead = await host.store.get_message(bad.id)
        status = await host.claws.status("c")
    assert dead is not None and (dead.state, dead.attempts) == ("dead", 5)
    assert dead.last_error is not None and dead.last_error.startswith("internal error: JSONDecodeError")
    assert (status["state"], status["restarts"]) == ("idle", 0)


async def test_a_message_tried_five_times_is_in_its_thread_once_at_its_final_outcome(
    tmp_path: Path,
) -> None:
    api = FakeAPI(lambda n, body: openai_error(401, "invalid key"))
    async with hosting(tmp_path, BRAIN, api=api) as host:
        host.claws.retry_base = 0.001
        message = await host.claws.tell("c", "hello")
        with anyio.fail_after(20):
            while (m := await host.store.get_message(message.id)) is None or m.state != "dead":
                await host.claws.settled.wait()
        history = await host.store.history("c", "default", 50)
    assert len(api.requests) == 5
    assert [(h.role, h.content) for h in history] == [
        ("user", "hello"),
        ("assistant", "[no reply: model 'brain' (openai, m): 401 Unauthorized: invalid key]"),
    ]


async def test_a_fire_delivered_again_after_its_run_ended_is_not_run_twice(tmp_path: Path) -> None:
    # The state a crash leaves between a scheduled run's end and its fire's outcome: the run done,
    # its message queued again by the recovery.
    store = MemoryStore()
    async with store:
        tick = await store.put_schedule(
            "c",
            "tick",
            spec={"every": 3600.0},
            action={"prompt": "hello"},
            misfire="latest",
            source="runtime",
            next_fire=None,
        )
        body = json.dumps({"schedule": "tick", "id": tick.id, "slot": 1.0, "prompt": "hello"})
        fire = Outgoing("c", body, thread="schedule:tick", kind="fire", key=f"schedule:{tick.id}:1.0")
        assert await store.claim_fire(tick.id, 1.0, next_fire=None, message=fire)
        message = await store.claim("c")
        assert message is not None
        run, _ = await store.start_run("c", "schedule:tick", "schedule", "hello", message_id=message.id)
        await store.finish_run(run.id, "done", reply="echo: hello")
        assert await store.requeue_running() == 1
    body = (
        "models: {m: {provider: scripted, rules: [{reply: 'echo: {{ input }}'}]}}\nclaws: {c: {model: m}}\n"
    )
    async with hosting(tmp_path, body, store=store) as host:
        with anyio.fail_after(20):
            while (m := await host.store.get_message(message.id)) is None or m.state != "done":
                await host.claws.settled.wait()
        runs = await host.store.runs("c")
        [fired] = await host.store.fires(tick.id)
    assert [r.id for r in runs] == [run.id]  # no second run
    assert (fired.outcome, fired.run_id) == ("ok", run.id)


async def test_an_audit_the_store_cannot_take_is_dropped_and_the_host_goes_on(tmp_path: Path) -> None:
    body = (
        "models: {m: {provider: scripted, rules: [{reply: hi}]}}\n"
        f"servers: {{echo: {LOCAL}}}\nclaws: {{c: {{model: m, tools: ['echo.echo']}}}}\n"
    )

    def echo() -> str:
        return "hi"

    disk = SqliteStore(tmp_path / "state.db")
    async with hosting(tmp_path, body, store=disk, servers={"echo": tool_server("echo", echo)}) as host:
        await disk_full(host, True)
        with logged("tool calls were not audited") as dropped, anyio.fail_after(20):
            with pytest.raises(ToolRefused):  # its audit record holds the 300 kB name: new pages
                await host.hub.call("c", "x" * 300_000, {})
            await dropped.wait()
        await disk_full(host, False)
        with anyio.fail_after(20):
            assert not (await host.hub.call("c", "echo__echo", {})).is_error  # the hub is still there


async def settled_until(host: Host, message_id: int, done: Callable[[Message], bool]) -> Message:
    """The message once `done` holds for it, looking again each time the Claws settle one."""
    found: list[Message] = []

    async def check() -> bool:
        message = await host.store.get_message(message_id)
        assert message is not None
        found[:] = [message]
        return done(message)

    await until(host, check)
    return found[0]


async def test_a_failing_message_is_tried_again_after_a_doubling_backoff_then_dead(tmp_path: Path) -> None:
    clock = FakeClock(1_000_000.0)
    api = FakeAPI(lambda n, body: openai_error(401, "invalid key"))  # the provider does not retry that
    async with hosting(tmp_path, BRAIN, clock=clock, api=api) as host:
        host.claws.retry_base = 0.001
        told = await host.claws.tell("c", "hello")
        waits = []
        for attempt in range(1, MAX_ATTEMPTS):

            def tried(m: Message, attempt: int = attempt) -> bool:
                return m.attempts == attempt and m.state == "queued"

            failed = await settled_until(host, told.id, tried)
            waits.append(failed.available_at - clock.now())
            clock.set(failed.available_at)  # the retry is due: the consumer, done waiting, claims it
            host.mailboxes.notify("c")
        dead = await settled_until(host, told.id, lambda m: m.state == "dead")
    assert waits == pytest.approx([0.001, 0.002, 0.004, 0.008])
    assert dead.attempts == MAX_ATTEMPTS and "401 Unauthorized" in (dead.last_error or "")


async def test_a_dead_letter_is_retried_or_discarded_and_status_shows_it(tmp_path: Path) -> None:
    broken = True
    api = FakeAPI(lambda n, body: openai_error(401, "invalid key") if broken else openai_text("fine"))
    async with hosting(tmp_path, BRAIN, api=api) as host:
        host.claws.retry_base = 0.001
        first, second = [await host.claws.tell("c", text) for text in ("first", "second")]
        await settled_until(host, second.id, lambda m: m.state == "dead")
        status = await host.service.status("c")
        assert [d["id"] for d in status["dead_letters"]] == [first.id, second.id]
        assert (status["state"], status["mailbox"], status["restarts"]) == ("idle", 0, 0)
        assert [r["state"] for r in status["last_runs"]] == ["failed"] * 5
        broken = False
        assert (await host.service.settle_dead(first.id, "retry")).state == "queued"
        retried = await settled_until(host, first.id, lambda m: m.state == "done")  # its Claw was woken
        assert (await host.service.settle_dead(second.id, "discard")).state == "discarded"
        with pytest.raises(UserError, match=f"message {second.id} is not a dead letter"):
            await host.service.settle_dead(second.id, "retry")
        status = await host.service.status("c")
    assert retried.attempts == 1 and status["dead_letters"] == []
    assert status["last_runs"][0]["state"] == "done"


class FullDisk(MemoryStore):
    """A store whose next `failures` claims (and `nack_failures` nacks) fail as SQLite's writes do
    on a full disk."""

    def __init__(self, failures: int, nack_failures: int = 0, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.failures, self.nack_failures, self.claims = failures, nack_failures, 0

    async def claim(self, mailbox: str) -> Message | None:
        self.claims += 1
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("database or disk is full")
        return await super().claim(mailbox)

    async def nack(self, message_id: int, error: str, *, retry_at: float | None) -> None:
        if self.nack_failures:
            self.nack_failures -= 1
            raise StoreUnavailable("database or disk is full")
        await super().nack(message_id, error, retry_at=retry_at)


async def test_a_claw_waits_out_a_store_that_cannot_commit_backing_off_then_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = "models: {m: {provider: scripted, rules: [{reply: hi}]}}\nclaws: {c: {model: m}}\n"
    caplog.set_level(logging.INFO, logger="clawmcp")
    store = FullDisk(failures=0)
    async with hosting(tmp_path, body, store=store) as host:
        host.claws.retry_base = 0.001
        store.failures = 4  # the disk is full for the next four claims
        told = await host.claws.tell("c", "hello")
        done = await settled_until(host, told.id, lambda m: m.state == "done")
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Claw 'c': the state store")]
    assert [m.rsplit(" ", 1)[1] for m in said[:4]] == ["0.001s", "0.002s", "0.004s", "0.008s"]
    assert said[4] == "Claw 'c': the state store commits again" and done.attempts == 1


class Sleeps:
    """The Claws' sleep on a fake clock: records each wait, moves the clock past it, returns."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.slept = clock, list[float]()

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.set(self.clock.now() + seconds)
        await anyio.lowlevel.checkpoint()


T0 = 1_800_000_000.0
SCRIPTED = "models: {m: {provider: scripted, rules: [{when: '^ok', reply: hi}]}}\nclaws: {c: {model: m}}\n"


async def test_a_failing_message_waits_one_second_then_doubles_before_each_try(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    sleeps = Sleeps(clock)
    async with hosting(tmp_path, SCRIPTED, clock=clock) as host:
        host.claws.sleep = sleeps
        told = await host.claws.tell("c", "no rule matches this")
        dead = await settled_until(host, told.id, lambda m: m.state == "dead")
    assert sleeps.slept == [1.0, 2.0, 4.0, 8.0] and dead.attempts == MAX_ATTEMPTS


async def test_an_outage_backs_off_doubling_to_a_minute_and_the_next_one_starts_small(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    sleeps, store = Sleeps(clock), FullDisk(failures=0)
    async with hosting(tmp_path, SCRIPTED, store=store, clock=clock) as host:
        host.claws.sleep, host.claws.retry_base = sleeps, 10.0
        store.failures = 5
        first = await host.claws.tell("c", "ok 1")
        await settled_until(host, first.id, lambda m: m.state == "done")
        store.failures = 1
        second = await host.claws.tell("c", "ok 2")
        await settled_until(host, second.id, lambda m: m.state == "done")
    assert sleeps.slept == [10.0, 20.0, 40.0, 60.0, 60.0, 10.0]


async def test_tell_names_a_claw_that_is_not_there(tmp_path: Path) -> None:
    async with hosting(tmp_path, SCRIPTED) as host:
        with pytest.raises(UserError, match="no Claw 'nobody'"):
            await host.claws.tell("nobody", "hi")
        assert await host.store.mailboxes() == {}


async def test_a_message_delivered_again_after_its_run_ended_is_not_run_twice(tmp_path: Path) -> None:
    # The state a crash leaves between a run's end and its message's acknowledgement.
    store = MemoryStore()
    async with store:
        message, _ = await store.enqueue("c", "ok once")
        await store.claim("c")
        run, _ = await store.start_run("c", "default", "message", "ok once", message_id=message.id)
        await store.finish_run(run.id, "done", reply="hi")
        assert await store.requeue_running() == 1
    async with hosting(tmp_path, SCRIPTED, store=store) as host:
        done = await settled_until(host, message.id, lambda m: m.state == "done")
        runs = await host.store.runs("c")
    assert [r.id for r in runs] == [run.id] and done.attempts == 2


async def test_each_delivery_is_an_event_saying_how_it_ended(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with hosting(tmp_path, SCRIPTED, clock=clock) as host:
        host.claws.sleep = Sleeps(clock)
        with host.events.subscribe() as live:
            good = await host.claws.tell("c", "ok")
            bad = await host.claws.tell("c", "nothing matches")
            await settled_until(host, bad.id, lambda m: m.state == "dead")
            await host.events.flush()
            seen = [live.receive_nowait() for _ in range(live.statistics().current_buffer_used)]
    deliveries = [(e.data["id"], e.data["outcome"], e.data["error"]) for e in seen if e.kind == "delivery"]
    assert deliveries[0] == (good.id, "done", None)
    assert [outcome for _, outcome, _ in deliveries[1:]] == ["retry"] * 4 + ["dead"]
    assert all("no rule matches" in (error or "") for _, _, error in deliveries[1:])


async def test_an_idle_claw_waits_for_its_mailbox_instead_of_polling_it(tmp_path: Path) -> None:
    store = FullDisk(failures=0)
    async with hosting(tmp_path, SCRIPTED, store=store) as host:
        told = await host.claws.tell("c", "ok")
        await settled_until(host, told.id, lambda m: m.state == "done")
        claims = store.claims
        for _ in range(50):
            await anyio.lowlevel.checkpoint()
        assert store.claims == claims


class InProcessWorker:
    """The worker of a Claw with `isolation: process`, in this process: it runs the Claw with a
    runtime of its own, as `clawmcp worker` does, and is lost when the test says so."""

    def __init__(self, host: Host, claw: str) -> None:
        self.claw, self.lost = claw, anyio.Event()
        self.runtime = Runtime(host.manifest, host.store, host.events, host.hub, host.providers, host.router)

    async def run(
        self,
        input: str,
        *,
        thread: str,
        trigger: RunTrigger,
        message_id: int | None,
        will_retry: bool,
        acknowledge: bool,
        on_step: OnStep | None,
        resume: int | None,
    ) -> Run:
        return await self.runtime.run(
            self.claw,
            input,
            thread=thread,
            trigger=trigger,
            message_id=message_id,
            will_retry=will_retry,
            acknowledge=acknowledge,
            on_step=on_step,
            resume=resume,
        )

    async def watch(self) -> None:
        await self.lost.wait()
        raise WorkerLost(f"the worker of Claw '{self.claw}' stopped answering")


class Workers(list[InProcessWorker]):
    """The workers started so far."""

    def __init__(self) -> None:
        super().__init__()
        self._added = anyio.Event()

    def add(self, worker: InProcessWorker) -> InProcessWorker:
        self.append(worker)
        added, self._added = self._added, anyio.Event()
        added.set()
        return worker

    async def started(self, count: int) -> None:
        while len(self) < count:
            await self._added.wait()


ISOLATED = (
    "host: {data_dir: data, supervision: {backoff: 10ms, max_backoff: 50ms}}\n"
    "models: {m: {provider: scripted, rules: [{when: '^ok', reply: 'done: {{ input }}'},"
    " {when: '^pause', steps: [{tool: slow__pause}], reply: '{{ results[0] }}'}]}}\n"
    f"servers: {{slow: {LOCAL}}}\n"
    "claws: {iso: {model: m, isolation: process, tools: ['slow.*']}, plain: {model: m}}\n"
)


class Pause:
    """A tool that hangs the first time it is called (until the worker is lost) and then answers."""

    def __init__(self) -> None:
        self.calls, self.hanging = 0, anyio.Event()

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls == 1:
            self.hanging.set()
            await anyio.sleep_forever()
        return "through"


@contextlib.asynccontextmanager
async def isolated(tmp_path: Path, hang: Pause | None = None) -> AsyncIterator[tuple[Host, Workers]]:
    (tmp_path / "m.yaml").write_text(ISOLATED)
    hang_once = hang or Pause()

    async def pause() -> str:
        """Hang once, then answer."""
        return await hang_once()

    servers = {"slow": tool_server("slow", pause)}
    host = Host(load([tmp_path / "m.yaml"]), store=MemoryStore(), servers=servers)
    workers = Workers()

    @contextlib.asynccontextmanager
    async def isolate(claw: str) -> AsyncIterator[InProcessWorker]:
        yield workers.add(InProcessWorker(host, claw))

    host.claws.isolate = isolate
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            await tg.start(host.run)
        yield host, workers
        tg.cancel_scope.cancel()


async def test_a_process_claw_runs_its_messages_and_asks_in_its_worker(tmp_path: Path) -> None:
    async with isolated(tmp_path) as (host, workers):
        assert [w.claw for w in workers] == ["iso"]  # started before the host was ready
        told = await host.claws.tell("iso", "ok 1")
        await settled_until(host, told.id, lambda m: m.state == "done")
        asked = await host.runtime.run("iso", "ok 2")
        assert (asked.reply, workers[0].runtime.active["iso"]) == ("done: ok 2", 0)
        [first, second] = sorted(await host.store.runs("iso"), key=lambda r: r.id)
    assert (first.reply, first.message_id, second.reply) == ("done: ok 1", told.id, "done: ok 2")


async def test_a_lost_worker_is_replaced_and_what_it_was_running_is_interrupted(tmp_path: Path) -> None:
    async with isolated(tmp_path) as (host, workers):
        left, _ = await host.store.start_run("iso", "t", "message", "in flight")  # as a worker leaves it
        workers[0].lost.set()
        with anyio.fail_after(10):
            await workers.started(2)
        interrupted = await host.store.get_run(left.id)
        assert interrupted is not None and interrupted.state == "interrupted"
        assert host.claws.supervisor.children["iso"].restarts == 1
        asked = await host.runtime.run("iso", "ok again")  # through the new worker
        assert asked.reply == "done: ok again" and workers[1].runtime.active["iso"] == 0


async def test_a_host_is_ready_once_each_claw_could_look_at_its_mailbox(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("host: {data_dir: data}\n" + SCRIPTED)
    store, disk_back = FullDisk(failures=1), anyio.Event()
    host = Host(load([tmp_path / "m.yaml"]), store=store)

    async def wait_for_the_disk(seconds: float) -> None:
        await disk_back.wait()

    host.claws.sleep = wait_for_the_disk  # the Claw's first claim fails; it waits before the next
    async with anyio.create_task_group() as tg:
        tg.start_soon(host.run)
        await anyio.wait_all_tasks_blocked()
        assert not host.ready
        disk_back.set()
        with anyio.fail_after(10):
            while not host.ready:
                await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()


async def test_a_host_without_claws_starts(tmp_path: Path) -> None:
    async with hosting(tmp_path, "models: {m: {provider: scripted, rules: [{reply: hi}]}}\n") as host:
        assert host.ready and host.readiness()["claws"] == 0


async def test_a_message_claimed_before_an_outage_is_queued_again_and_handled(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store = FullDisk(failures=0, nack_failures=1, clock=clock.now)  # its failure cannot be recorded at first
    async with hosting(tmp_path, SCRIPTED, clock=clock, store=store) as host:
        host.claws.sleep = Sleeps(clock)
        told = await host.claws.tell("c", "nothing matches")
        dead = await settled_until(host, told.id, lambda m: m.state == "dead")
    assert dead.attempts == MAX_ATTEMPTS


async def test_a_message_whose_worker_was_lost_mid_run_is_handled_by_the_next_one(tmp_path: Path) -> None:
    pause = Pause()
    async with isolated(tmp_path, pause) as (host, workers):
        told = await host.claws.tell("iso", "pause here")
        with anyio.fail_after(10):
            await pause.hanging.wait()
        workers[0].lost.set()
        done = await settled_until(host, told.id, lambda m: m.state == "done")
        runs = sorted(await host.store.runs("iso"), key=lambda r: r.id)
    assert (done.attempts, [r.state for r in runs]) == (2, ["interrupted", "done"])
    assert runs[-1].reply == "through"
