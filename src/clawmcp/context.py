"""The part of a thread's history a run begins with, and its compaction (`memory:` of a Claw).

A thread keeps every run's input and reply for good. What a run's context holds of them:

- `compact: drop` (the default): the last `history` entries; with `context_tokens`, only the
  newest of them that fit in it. Older entries fall off the context (not out of the store).
- `compact: summary`: the thread's latest summary entry and the entries after it. When they pass
  `context_tokens`, or reach `history` entries, the older ones (with the summary before them)
  are summarised by the Claw's own model into one new summary entry, stored at once; the newest
  entries that fit in half of each limit stay as they are. The summary is asked for a quarter of
  `context_tokens` (500 tokens without it) and cut at 3/8, so at least an eighth is left for new
  entries: later runs reuse that summary until the entries after it pass a limit again, one
  summary per compaction, not one per run. When the summary fails (the model refuses or is
  down), this run drops instead, with a warning; the next run tries again.

Tokens are estimated, not counted (no provider's tokenizer is at hand): 4 characters a token,
plus 4 a message for its role and framing; near enough for English text and code.

Notes (`claw__remember`) are not part of any thread: nothing here reads, summarises or deletes
them, and the model recalls them with `claw__recall` as before.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence

from clawmcp.errors import ModelError, StoreError
from clawmcp.manifest.model import Memory
from clawmcp.models.base import Msg
from clawmcp.store import SUMMARY, HistoryEntry, HistoryStore, Run

__all__ = [
    "CHARS_PER_TOKEN",
    "MESSAGE_TOKENS",
    "SUMMARISE",
    "SUMMARY_HEADING",
    "SUMMARY_TOKENS",
    "Summarise",
    "compacted",
    "estimate",
    "fit",
]

log = logging.getLogger("clawmcp")

CHARS_PER_TOKEN = 4
MESSAGE_TOKENS = 4
"""What a message costs beyond its text: its role and framing."""
SUMMARY_TOKENS = 500
"""The size a summary is asked for when there is no `context_tokens` (else a quarter of it)."""

SUMMARISE = (
    "You compact a conversation so that it can go on without its older messages. Summarise the "
    "conversation you are given (and the earlier summary, if there is one) so that the assistant "
    "can go on from your summary alone: keep facts, names, numbers, decisions, what was asked and "
    "promised, open questions and tasks, and the user's preferences; leave out greetings and "
    "repetition. Write plain text of at most {words} words. Reply with the summary only."
)
"""The system text of the summary request; the conversation is its one user message."""
SUMMARY_HEADING = "Summary of the earlier conversation in this thread:"
"""Put before the summary at the end of a run's system text."""

Summarise = Callable[[str, Sequence[Msg]], Awaitable[str]]
"""Ask the Claw's model: system text and messages → the text of its reply (`ModelError`)."""


def estimate(text: str) -> int:
    """The estimated tokens of a message of this text."""
    return -(-len(text) // CHARS_PER_TOKEN) + MESSAGE_TOKENS


def _text(entry: HistoryEntry) -> str:
    if entry.role == SUMMARY:
        return str(entry.content["text"])
    return str(entry.content)


def fit(entries: Sequence[HistoryEntry], budget: float, count: int) -> list[HistoryEntry]:
    """The newest entries, at most `count`, whose estimates add up to at most `budget`, oldest
    first; when some are left out, not beginning with a reply whose input is left out."""
    kept: list[HistoryEntry] = []
    total = 0
    for entry in reversed(entries[-count:] if count > 0 else []):
        total += estimate(_text(entry))
        if total > budget:
            break
        kept.append(entry)
    kept.reverse()
    if len(kept) < len(entries) and kept and kept[0].role == "assistant":
        kept = kept[1:]
    return kept


async def compacted(
    store: HistoryStore,
    run: Run,
    entries: Sequence[HistoryEntry],
    memory: Memory,
    summarise: Summarise | None,
) -> tuple[str | None, list[HistoryEntry]]:
    """The summary (its text, or None) and the entries of the history a run begins with, out of
    `entries`: the store's `history` (`compact: drop`) or `context` (`compact: summary`). With
    `summarise` (None: a resumed run, whose compaction was done as it started), entries past a
    limit are summarised into a new summary entry of the run's thread."""
    budget = memory.context_tokens or math.inf
    if memory.compact == "drop":
        return None, fit([e for e in entries if e.role != SUMMARY], budget, memory.history)
    summary = entries[0] if entries and entries[0].role == SUMMARY else None
    text = _text(summary) if summary else None
    rest = list(entries[1:] if summary else entries)
    used = estimate(text) if text is not None else 0
    if used + sum(estimate(_text(e)) for e in rest) <= budget and len(rest) < memory.history:
        return text, rest
    keep = fit(rest, budget / 2, memory.history // 2)
    old = rest[: len(rest) - len(keep)]
    if summarise is None or not old:
        return text, fit(rest, budget - used, memory.history)
    target = SUMMARY_TOKENS if budget == math.inf else budget / 4
    try:
        made = await summarise(
            SUMMARISE.format(words=max(20, int(target * 2 / 3))), [Msg("user", _transcript(text, old))]
        )
        if not made.strip():
            raise ModelError("the model's summary was empty")
        made = _clip(made.strip(), 1.5 * target)
        await store.add_summary(run.claw, run.thread, made, through=old[-1].id, run_id=run.id)
    except (ModelError, StoreError) as e:
        log.warning(
            "Claw '%s': the history of thread '%s' could not be summarised (%s); its oldest entries "
            "are left out of run %d's context",
            run.claw,
            run.thread,
            e,
            run.id,
            extra={"claw": run.claw, "run": run.id},
        )
        return text, fit(rest, budget - used, memory.history)
    log.info(
        "Claw '%s': %d entries of thread '%s' summarised (run %d)",
        run.claw,
        len(old),
        run.thread,
        run.id,
        extra={"claw": run.claw, "run": run.id},
    )
    return made, keep


def _transcript(summary: str | None, entries: Sequence[HistoryEntry]) -> str:
    """What the model summarises: the earlier summary, then the entries, one line each."""
    lines = [f"Earlier summary:\n{summary}\n"] if summary is not None else []
    lines.append("Conversation:")
    lines += [f"{e.role}: {_text(e)}" for e in entries]
    return "\n".join(lines)


def _clip(text: str, tokens: float) -> str:
    """About `tokens` (estimated; rounded up to a whole one), so that a summary longer than asked
    for still leaves room."""
    most = max(CHARS_PER_TOKEN, int((tokens - MESSAGE_TOKENS) * CHARS_PER_TOKEN))
    return text if len(text) <= most else text[: most - 1] + "…"
