"""Every model of a manifest as a provider, sharing one HTTP client: what the host and a worker
start (the runtime sees only `clawmcp.models.base`)."""

from __future__ import annotations

from collections.abc import Mapping
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
        kinds: dict[str, Any] = {
            "openai": lambda n, m: openai.OpenAI(n, m, self._http, retry_base),
            "anthropic": lambda n, m: anthropic.Anthropic(n, m, self._http, retry_base),
            "scripted": scripted.Scripted,
        }
        self._providers: dict[str, Provider] = {
            name: kinds[model.provider](name, model) for name, model in models.items()
        }

    def __getitem__(self, name: str) -> Provider:
        return self._providers[name]

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
