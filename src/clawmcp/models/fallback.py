"""A Claw's models in their fallback order (`model: [primary, backup]`), as one run uses them.

Each model is tried in turn while the one before it is rate-limited or down through all its own
tries (`ModelUnavailable`). A refusal of the request (400, 401, a malformed answer) is not a reason
to try another model: the same request would be as wrong there. Once a model has answered, the run
keeps it for its later turns (the one before it is likely still down); the next run starts again
with the first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from clawmcp.errors import ModelUnavailable
from clawmcp.models.base import Msg, Provider, ToolSpec, Turn

__all__ = ["Fallback"]

log = logging.getLogger("clawmcp")


class Fallback:
    """The models of one run, by name, in fallback order."""

    def __init__(self, providers: Mapping[str, Provider], names: Sequence[str]) -> None:
        assert names, "a Claw has at least one model"
        self.providers, self.names = providers, list(names)
        self.at = 0
        """The index of the model in use."""

    @property
    def name(self) -> str:
        """The model in use: the first, or the one that answered last."""
        return self.names[self.at]

    async def complete(self, system: str, messages: Sequence[Msg], tools: Sequence[ToolSpec]) -> Turn:
        """The next turn, from the model in use or the models after it; `self.name` is then the
        one that answered. `ModelUnavailable` (naming each model's failure) when none could."""
        failures: list[str] = []
        while True:
            try:
                return await self.providers[self.name].complete(system, messages, tools)
            except ModelUnavailable as e:
                failures.append(str(e))
                if self.at + 1 == len(self.names):
                    raise ModelUnavailable("; then ".join(failures)) from e
                self.at += 1
                log.warning("%s; trying model '%s'", e, self.name)
