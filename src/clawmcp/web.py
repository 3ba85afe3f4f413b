"""The host's HTTP surface (DESIGN §6): for now `/healthz` and `/readyz`, served by uvicorn."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from clawmcp.host import Host, split_listen
from clawmcp.manifest import Manifest

__all__ = ["create_app", "serve"]

log = logging.getLogger("clawmcp")


def create_app(host: Host) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> JSONResponse:
        state = host.readiness()
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz)])


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the host decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(manifest: Manifest) -> None:
    """Run the host until SIGINT or SIGTERM, then stop cleanly."""
    host = Host(manifest)
    address, port = split_listen(manifest.host.listen)
    config = uvicorn.Config(create_app(host), host=address, port=port, log_level="warning", lifespan="off")
    server = _Server(config)

    async def stop_on_signal() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("%s: stopping", signal.Signals(signum).name)
                server.should_exit = True
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_on_signal)
        await tg.start(host.run)
        claws = ", ".join(sorted(manifest.claws)) or "none"
        log.info("listening on http://%s (Claws: %s)", manifest.host.listen, claws)
        await server.serve()
        tg.cancel_scope.cancel()
    log.info("stopped")
