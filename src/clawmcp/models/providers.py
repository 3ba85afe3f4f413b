"""Every model of a manifest as a provider, sharing one HTTP client: what the host and a worker
start (the runtime sees only `clawmcp.models.base`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx2

from clawmcp.manifest.model import Model
from clawmcp.models import anthropic, openai, scripted
from clawmcp.models.base import Provider

__all__ = ["Providers"]


class Providers(Mapping[str, Provider]):
    """A provider for every model of a manifest, sharing one HTTP client. Use `async with`."""

    def __init__(
        self,
        models: Mapping[str, Model],
        *,
        retry_base: float = 0.5,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        """`transport`: where requests go instead of the network (a test's fake API)."""
        self._http = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=200), transport=transport)
        self._kinds: dict[str, Any] = {
            "openai": lambda n, m: openai.OpenAI(n, m, self._http, retry_base),
            "anthropic": lambda n, m: anthropic.Anthropic(n, m, self._http, retry_base),
            "scripted": scripted.Scripted,
        }
        self._providers: dict[str, Provider] = {}
        self._gone: dict[str, Provider] = {}
        self.reload(models, models)

    def reload(self, models: Mapping[str, Model], changed: Iterable[str]) -> None:
        """The models of a reloaded manifest: those `changed` (or new) are built again, the others
        kept. A turn that has begun goes on with the provider it took; a run in flight whose model
        is gone still reaches it by name (no new run names it)."""
        rebuilt = set(changed)
        self._gone |= {name: p for name, p in self._providers.items() if name not in models}
        self._providers = {
            name: self._providers[name]
            if name in self._providers and name not in rebuilt
            else self._kinds[model.provider](name, model)
            for name, model in models.items()
        }

    def __getitem__(self, name: str) -> Provider:
        try:
            return self._providers[name]
        except KeyError:
            return self._gone[name]

    def __iter__(self) -> Any:
        return iter(self._providers)

    def __len__(self) -> int:
        return len(self._providers)

    async def __aenter__(self) -> Self:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._http.__aexit__(et, e, tb)
