"""A thread's context and its compaction (clawmcp.context), function by function: the token
estimate, which entries `fit` keeps, when `compacted` summarises and what it asks for, the clipped
summary it stores, and how it drops instead when it cannot summarise."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import Any

import pytest

from clawmcp.context import SUMMARISE, _clip, _transcript, compacted, estimate, fit
from clawmcp.errors import ModelError
from clawmcp.manifest.model import Memory
from clawmcp.models.base import Msg
from clawmcp.store import SUMMARY, HistoryEntry, Run
from clawmcp.store.memory import MemoryStore

pytestmark = pytest.mark.anyio


def text(tokens: int, mark: str = "") -> str:
    """A text whose estimate is exactly `tokens` (at least 5), beginning with `mark`."""
    size = 4 * (tokens - 4)
    assert len(mark) <= size
    return mark + "x" * (size - len(mark))


def entry(id: int, role: str, content: Any) -> HistoryEntry:
    return HistoryEntry(id, "c", "t", role, content, None, 0.0)


def user(id: int, tokens: int) -> HistoryEntry:
    return entry(id, "user", text(tokens, f"u{id} "))


def reply(id: int, tokens: int) -> HistoryEntry:
    return entry(id, "assistant", text(tokens, f"a{id} "))


def summary(id: int, tokens: int, through: int) -> HistoryEntry:
    return entry(id, SUMMARY, {"text": text(tokens, f"s{id} "), "through": through})


def summary_memory(context_tokens: int | None, history: int = 40) -> Memory:
    return Memory(history=history, context_tokens=context_tokens, compact="summary")


class Summariser:
    """The Claw's model asked for a summary: records each request, then replies `made` (or
    raises `error`)."""

    def __init__(self, made: str = "the summary", error: Exception | None = None) -> None:
        self.made, self.error = made, error
        self.asked: list[tuple[str, list[Msg]]] = []

    async def __call__(self, system: str, messages: Sequence[Msg]) -> str:
        self.asked.append((system, list(messages)))
        if self.error is not None:
            raise self.error
        return self.made


async def started(store: MemoryStore) -> Run:
    run, _ = await store.start_run("c", "t", "message", "go on")
    return run


async def summaries(store: MemoryStore) -> list[HistoryEntry]:
    return [e for e in await store.history("c", "t", 100) if e.role == SUMMARY]


# -- estimate ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "tokens"),
    [("", 4), ("a", 5), ("abc", 5), ("abcd", 5), ("abcde", 6), ("x" * 8, 6), ("x" * 9, 7), ("…", 5)],
)
def test_a_message_is_estimated_at_4_characters_a_token_rounded_up_plus_4(message: str, tokens: int) -> None:
    assert estimate(message) == tokens


def test_a_long_message_is_estimated_by_its_length() -> None:
    assert estimate("x" * 400) == 104
    assert estimate("x" * 401) == 105
    assert all(estimate(text(n)) == n for n in range(5, 60))


# -- fit --------------------------------------------------------------------------------------------


def test_fit_keeps_the_newest_entries_up_to_exactly_the_budget_oldest_first() -> None:
    entries = [user(1, 10), user(2, 10), user(3, 10)]
    assert fit(entries, 30, 40) == entries
    assert fit(entries, 29, 40) == entries[1:]  # one token over: the oldest falls off
    assert fit(entries, 20, 40) == entries[1:]
    assert fit(entries, 19, 40) == entries[2:]
    assert fit(entries, 10, 40) == entries[2:]
    assert fit(entries, 9, 40) == []
    assert fit(entries, math.inf, 40) == entries
    assert fit(entries, 25.5, 40) == entries[1:]


def test_fit_stops_at_the_first_entry_that_does_not_fit() -> None:
    entries = [user(1, 5), user(2, 30), user(3, 10)]
    assert fit(entries, 39, 40) == entries[2:]  # the small oldest one is not kept past the big one


def test_fit_keeps_at_most_count_entries() -> None:
    entries = [user(1, 10), user(2, 10), user(3, 10)]
    assert fit(entries, math.inf, 3) == entries
    assert fit(entries, math.inf, 5) == entries
    assert fit(entries, math.inf, 2) == entries[1:]
    assert fit(entries, math.inf, 1) == entries[2:]
    assert fit(entries, math.inf, 0) == []
    assert fit(entries, 20, 3) == entries[1:]  # the stricter of the two limits
    assert fit([], math.inf, 40) == []


def test_fit_counts_a_summary_entry_by_its_text() -> None:
    entries = [summary(1, 10, through=0), user(2, 10)]
    assert fit(entries, 20, 40) == entries
    assert fit(entries, 19, 40) == entries[1:]


def test_a_kept_context_never_begins_with_a_reply_whose_input_fell_off() -> None:
    entries = [user(1, 10), reply(2, 10), user(3, 10), reply(4, 10)]
    assert fit(entries, 40, 40) == entries
    assert fit(entries, 39, 40) == entries[2:]  # reply 2 would begin it: left out too
    assert fit(entries, 30, 40) == entries[2:]
    assert fit(entries, 20, 40) == entries[2:]  # begins with an input: kept as it is
    assert fit(entries, 19, 40) == []  # reply 4 alone is an orphan
    assert fit(entries, math.inf, 3) == entries[2:]
    assert fit(entries, math.inf, 2) == entries[2:]
    assert fit(entries, math.inf, 1) == []


def test_a_context_that_begins_with_a_reply_is_kept_whole_when_nothing_falls_off() -> None:
    entries = [reply(1, 10), user(2, 10), reply(3, 10)]
    assert fit(entries, 30, 40) == entries
    assert fit(entries, math.inf, 3) == entries
    assert fit(entries[:1], 10, 1) == entries[:1]
    assert fit(entries, 29, 40) == entries[1:]


# -- _clip and _transcript --------------------------------------------------------------------------


def test_clip_cuts_a_text_to_the_estimated_tokens_with_an_ellipsis() -> None:
    assert _clip("x" * 24, 10) == "x" * 24  # (10 - 4) * 4 characters fit exactly
    assert _clip("x" * 25, 10) == "x" * 23 + "…"
    assert estimate(_clip("x" * 1000, 10)) == 10
    assert _clip("x" * 25, 10.5) == "x" * 25  # 26 characters
    assert _clip("x" * 27, 10.5) == "x" * 25 + "…"
    assert _clip("", 10) == ""


def test_clip_keeps_at_least_4_characters() -> None:
    assert _clip("abcd", 4) == "abcd"
    assert _clip("abcdefgh", 4) == "abc…"
    assert _clip("abcdefgh", 1) == "abc…"
    assert _clip("abcdefgh", 5) == "abc…"
    assert _clip("abcdefgh", 6) == "abcdefgh"
    assert _clip("abcdefghi", 6) == "abcdefg…"


def test_the_transcript_holds_the_earlier_summary_then_one_line_an_entry() -> None:
    entries = [entry(1, "user", "hi"), entry(2, "assistant", "hello"), entry(3, "user", "bye")]
    assert _transcript(None, entries) == "Conversation:\nuser: hi\nassistant: hello\nuser: bye"
    assert _transcript("they met", entries[:1]) == "Earlier summary:\nthey met\n\nConversation:\nuser: hi"
    assert _transcript("", []) == "Earlier summary:\n\n\nConversation:"


# -- compacted: drop --------------------------------------------------------------------------------


async def test_drop_keeps_the_newest_entries_that_fit_and_never_a_summary() -> None:
    entries = [summary(1, 5, through=0), user(2, 10), reply(3, 10), user(4, 10), reply(5, 10), user(6, 10)]
    asked = Summariser()
    async with MemoryStore() as store:
        run = await started(store)
        assert await compacted(store, run, entries, Memory(context_tokens=30), asked) == (None, entries[3:])
        assert await compacted(store, run, entries, Memory(context_tokens=29), asked) == (None, entries[5:])
        assert await compacted(store, run, entries, Memory(), asked) == (None, entries[1:])
        assert await compacted(store, run, entries, Memory(history=3), asked) == (None, entries[3:])
        assert await compacted(store, run, entries, Memory(history=2), asked) == (None, entries[5:])
        assert await compacted(store, run, entries[:1], Memory(), asked) == (None, [])
        assert await summaries(store) == []
    assert asked.asked == []


# -- compacted: summary, under its limits -----------------------------------------------------------


async def test_a_context_within_its_limits_is_used_as_it_is() -> None:
    entries = [user(1, 10), reply(2, 10), user(3, 10)]
    asked = Summariser()
    async with MemoryStore() as store:
        run = await started(store)
        # exactly the budget, one entry under the count
        assert await compacted(store, run, entries, summary_memory(30, history=4), asked) == (None, entries)
        assert await compacted(store, run, entries, summary_memory(None), asked) == (None, entries)
        assert await compacted(store, run, [], summary_memory(30), asked) == (None, [])
        with_summary = [summary(4, 10, through=3), user(5, 10), reply(6, 10)]
        assert await compacted(store, run, with_summary, summary_memory(30, history=3), asked) == (
            with_summary[0].content["text"],
            with_summary[1:],
        )
        only = [summary(7, 10, through=6)]
        assert await compacted(store, run, only, summary_memory(10), asked) == (only[0].content["text"], [])
        assert await summaries(store) == []
    assert asked.asked == []


# -- compacted: summary, past a limit ---------------------------------------------------------------


async def test_past_its_budget_the_older_entries_and_the_summary_are_summarised_and_half_is_kept() -> None:
    earlier = summary(1, 25, through=0)
    rest = [user(2, 20), reply(3, 20), user(4, 20), reply(5, 20)]  # with the summary: 105 tokens
    asked = Summariser("  the new summary\n")
    async with MemoryStore() as store:
        run = await started(store)
        made, kept = await compacted(store, run, [earlier, *rest], summary_memory(100), asked)
        [stored] = await summaries(store)

    assert (made, kept) == ("the new summary", rest[2:])  # the newest that fit in half the budget
    [(system, messages)] = asked.asked
    assert system == SUMMARISE.format(words=20)
    assert messages == [Msg("user", _transcript(earlier.content["text"], rest[:2]))]
    assert messages[0].text.startswith("Earlier summary:\ns1 x")
    assert messages[0].text.endswith(
        f"\n\nConversation:\nuser: {rest[0].content}\nassistant: {rest[1].content}"
    )
    # it stands for every entry up to the last one summarised, and is stored for the run at once
    assert stored.content == {"text": "the new summary", "through": 3}
    assert (stored.run_id, stored.claw, stored.thread) == (run.id, "c", "t")


async def test_the_summary_tips_the_context_over_its_budget() -> None:
    earlier = summary(1, 11, through=0)
    rest = [user(2, 30), reply(3, 30), user(4, 30)]  # 90 tokens, 101 with the summary
    asked = Summariser()
    async with MemoryStore() as store:
        run = await started(store)
        assert await compacted(store, run, [earlier, *rest], summary_memory(100), asked) == (
            "the summary",
            rest[2:],
        )
        assert [e.content["through"] for e in await summaries(store)] == [3]
        assert await compacted(store, run, [summary(1, 10, 0), *rest], summary_memory(100), asked) == (
            summary(1, 10, 0).content["text"],
            rest,
        )
    assert len(asked.asked) == 1


async def test_reaching_history_entries_is_summarised_and_half_of_them_kept() -> None:
    entries = [user(1, 5), reply(2, 5), user(3, 5), reply(4, 5)]
    asked = Summariser()
    async with MemoryStore() as store:
        run = await started(store)
        assert await compacted(store, run, entries, summary_memory(None, history=4), asked) == (
            "the summary",
            entries[2:],
        )
        [stored] = await summaries(store)
    [(system, messages)] = asked.asked
    assert system == SUMMARISE.format(words=333)  # no context_tokens: a summary of 500 tokens
    assert messages == [
        Msg("user", f"Conversation:\nuser: {entries[0].content}\nassistant: {entries[1].content}")
    ]
    assert stored.content == {"text": "the summary", "through": 2}


async def test_half_of_history_is_kept_rounded_down() -> None:
    entries = [user(1, 5), reply(2, 5), user(3, 5), reply(4, 5), user(5, 5)]
    asked = Summariser()
    async with MemoryStore() as store:
        run = await started(store)
        # 5 // 2 = 2 entries kept, but they would begin with a reply: only the last input stays
        assert await compacted(store, run, entries, summary_memory(None, history=5), asked) == (
            "the summary",
            entries[4:],
        )
        [stored] = await summaries(store)
    assert stored.content["through"] == 4
    assert asked.asked[0][1][0].text.endswith(f"assistant: {entries[3].content}")


@pytest.mark.parametrize(
    ("context_tokens", "words"),
    [(None, 333), (30, 20), (100, 20), (121, 20), (150, 25), (400, 66), (1000, 166), (3000, 500)],
)
async def test_the_summary_is_asked_for_two_thirds_of_a_word_a_token_of_a_quarter_of_the_budget(
    context_tokens: int | None, words: int
) -> None:
    entries = [user(1, 5), reply(2, 5), user(3, 5), reply(4, 5)]  # reach history: 4
    asked = Summariser()
    async with MemoryStore() as store:
        run = await started(store)
        made, kept = await compacted(store, run, entries, summary_memory(context_tokens, history=4), asked)
    assert (made, kept) == ("the summary", entries[2:])
    [(system, _)] = asked.asked
    assert system == SUMMARISE.format(words=words)
    assert f"Write plain text of at most {words} words." in system


@pytest.mark.parametrize(
    ("context_tokens", "length"),
    [(96, 128), (100, 134), (None, 2984)],  # 3/8 of the budget (750 tokens without one), less 4 a message
)
async def test_a_summary_longer_than_asked_for_is_clipped_with_an_ellipsis(
    context_tokens: int | None, length: int
) -> None:
    entries = [user(1, 5), reply(2, 5), user(3, 5), reply(4, 5)]
    memory = summary_memory(context_tokens, history=4)
    async with MemoryStore() as store:
        run = await started(store)
        exact, _ = await compacted(store, run, entries, memory, Summariser("y" * length))
        longer, _ = await compacted(store, run, entries, memory, Summariser("y" * (length + 1) + "z"))
        stored = await summaries(store)
    assert exact == "y" * length
    assert longer == "y" * (length - 1) + "…"
    assert [s.content["text"] for s in stored] == [exact, longer]
    if context_tokens == 96:
        assert estimate(longer) == 36  # exactly 3/8 of the budget


# -- compacted: past a limit, but no summary ----------------------------------------------------------


async def test_without_summarise_a_run_drops_to_fit_what_its_summary_leaves() -> None:
    earlier = summary(1, 25, through=0)
    rest = [user(2, 20), reply(3, 20), user(4, 20), reply(5, 20)]
    async with MemoryStore() as store:
        run = await started(store)
        # 75 tokens left: reply 3, input 4 and reply 5 fit, and reply 3 would begin the context
        assert await compacted(store, run, [earlier, *rest], summary_memory(100), None) == (
            earlier.content["text"],
            rest[2:],
        )
        rest = [user(2, 10), reply(3, 10), user(4, 20), reply(5, 20), user(6, 20)]  # 105 with it
        assert await compacted(store, run, [earlier, *rest], summary_memory(100), None) == (
            earlier.content["text"],
            rest[2:],  # not only the newest that fit in half the budget (input 6)
        )
        assert await compacted(store, run, rest, summary_memory(None, history=5), None) == (None, rest)
        assert await compacted(store, run, rest, summary_memory(None, history=4), None) == (None, rest[2:])
        assert await summaries(store) == []


async def test_with_nothing_old_to_summarise_a_run_drops_to_fit_what_its_summary_leaves() -> None:
    earlier = summary(1, 75, through=0)
    rest = [user(2, 10), reply(3, 10), user(4, 10)]  # fits in half the budget, not beside the summary
    asked = Summariser()
    async with MemoryStore() as store:
        run = await started(store)
        assert await compacted(store, run, [earlier, *rest], summary_memory(100), asked) == (
            earlier.content["text"],
            rest[2:],  # 25 tokens left: reply 3 and input 4, and reply 3 would begin the context
        )
        big = summary(1, 95, through=0)
        assert await compacted(store, run, [big, *rest], summary_memory(100), asked) == (
            big.content["text"],
            [],
        )
        assert await summaries(store) == []
    assert asked.asked == []


@pytest.mark.parametrize(
    ("made", "error"),
    [("", ModelError("model 'brain' (openai, m): 400 Bad Request: no")), (" \n ", None), ("", None)],
    ids=["refused", "blank", "empty"],
)
async def test_a_failed_summary_drops_instead_and_is_logged(
    made: str, error: Exception | None, caplog: pytest.LogCaptureFixture
) -> None:
    summariser = Summariser(made, error)
    earlier = summary(1, 25, through=0)
    rest = [user(2, 10), reply(3, 10), user(4, 20), reply(5, 20), user(6, 20)]  # 105 with the summary
    caplog.set_level(logging.WARNING, logger="clawmcp")
    async with MemoryStore() as store:
        run = await started(store)
        assert await compacted(store, run, [earlier, *rest], summary_memory(100), summariser) == (
            earlier.content["text"],
            rest[2:],  # 75 tokens left (not the half the budget a summary would have left: input 6)
        )
        assert await summaries(store) == []
    assert len(summariser.asked) == 1
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    said = warning.getMessage()
    assert said.startswith("Claw 'c': the history of thread 't' could not be summarised (")
    assert said.endswith(f"its oldest entries are left out of run {run.id}'s context")
    if error is not None:
        assert f"({error})" in said
    else:
        assert "the model's summary was empty" in said


async def test_a_summary_the_store_refuses_drops_instead_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rest = [user(1, 15), reply(2, 15), user(3, 15), reply(4, 15), user(5, 20)]  # 80 tokens
    summariser = Summariser()
    caplog.set_level(logging.WARNING, logger="clawmcp")
    async with MemoryStore() as store:
        run = await started(store)
        gone = dataclasses.replace(run, id=run.id + 1)  # a run the store does not have
        assert await compacted(store, gone, rest, summary_memory(75), summariser) == (None, rest[2:])
        assert await summaries(store) == []
    assert len(summariser.asked) == 1
    assert "could not be summarised" in caplog.text


async def test_a_summary_is_used_as_it_is_by_the_next_runs_until_a_limit_is_passed_again() -> None:
    memory = summary_memory(100, history=40)
    asked = Summariser("so far: " + "s" * 30)  # 14 tokens
    async with MemoryStore() as store:
        for n in range(1, 4):
            run = await started(store)
            await store.finish_run(
                run.id, "done", history=[("user", text(20, f"in {n} ")), ("assistant", text(20, f"out {n} "))]
            )
        run = await started(store)
        context = await store.context("c", "t", memory.history)
        made, kept = await compacted(store, run, context, memory, asked)
        assert made == asked.made and [e.id for e in kept] == [5, 6]
        assert [e.content["through"] for e in await summaries(store)] == [4]
        again = await store.context("c", "t", memory.history)
        assert again[0].role == SUMMARY and again[1:] == kept
        assert await compacted(store, run, again, memory, asked) == (made, kept)
    assert len(asked.asked) == 1
