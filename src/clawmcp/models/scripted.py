"""Deterministic rules instead of a language model (DESIGN §2 `provider: scripted`).

The first rule whose `when` regex matches the run's input (`re.search`) is followed: its steps are
asked for one tool call per turn, so a step's arguments may use the results before it, then its
`reply` ends the run. Templates: `{{ input }}`, `{{ match.NAME }}` (a named group of `when`) and
`{{ results[N] }}` (the text of step N's result).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from clawmcp.errors import ModelError
from clawmcp.manifest.model import Model, Rule, render
from clawmcp.models.base import Msg, Provider, ToolRequest, ToolSpec, Turn

__all__ = ["Scripted"]

_TEMPLATE = re.compile(r"\{\{\s*(input|match\.(\w+)|results\[(\d+)\])\s*\}\}")


class Scripted(Provider):
    def __init__(self, name: str, model: Model) -> None:
        super().__init__(name, model)
        self.rules = [(re.compile(r.when) if r.when is not None else None, r) for r in model.rules or []]

    async def complete(self, system: str, messages: Sequence[Msg], tools: Sequence[ToolSpec]) -> Turn:
        start = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
        text = messages[start].text if start >= 0 else ""
        results = [r.text for m in messages[start + 1 :] for r in m.results]
        rule, groups = self._rule(text)

        def field(template: re.Match[str]) -> str:
            if template[2]:
                return groups.get(template[2]) or ""
            return results[int(template[3])] if template[3] else text

        if len(results) < len(rule.steps):
            step = rule.steps[len(results)]
            arguments = render(_TEMPLATE, step.arguments, field)
            return Turn(calls=(ToolRequest(f"step_{len(results)}", step.tool, arguments),))
        return Turn(text=render(_TEMPLATE, rule.reply, field))

    def _rule(self, text: str) -> tuple[Rule, dict[str, str | None]]:
        """The first rule that matches the input, and the named groups of its match."""
        for when, rule in self.rules:
            match = when.search(text) if when else None
            if when is None or match:
                return rule, match.groupdict() if match else {}
        raise ModelError(f"scripted model '{self.name}': no rule matches the input {text[:80]!r}")
