"""OAuth 2.1 for remote tool servers, the client side (`auth: oauth` on a server entry).

A person logs in once with `clawmcp login SERVER`: the MCP SDK's OAuth client provider discovers
the server's authorization server, registers a client (dynamic registration, or the manifest's
`client_id`), and runs the authorization-code flow with PKCE; the browser comes back to a
listener on a loopback port. The tokens (and the registered client) are kept in the store, sealed
with the host's key (`data_dir/oauth.key`, mode 0600, or `$CLAWMCP_OAUTH_KEY`); they are never
logged or shown. The host then connects with them and refreshes them as they expire, with no
person involved. When it cannot (no tokens yet, or a refresh was refused), the server's calls fail
with `NeedsLogin`, which names `clawmcp login SERVER`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import uvicorn
from cryptography.fernet import Fernet, InvalidToken
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from clawmcp.errors import NeedsLogin, UserError
from clawmcp.listener import QuietServer, listen_socket
from clawmcp.manifest import Server
from clawmcp.store import SecretStore

__all__ = ["KEY_ENV", "Tokens", "Vault", "host_auth", "login"]

KEY_ENV = "CLAWMCP_OAUTH_KEY"
"""A key (Fernet, url-safe base64) that replaces data_dir/oauth.key: hosts on one store share it."""
_LOGIN_WAIT = 600.0  # seconds a login waits for the browser


class _Quiet(logging.Filter):
    """The SDK logs a flow that ends in `NeedsLogin` as an error with its traceback; the host
    says it in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], NeedsLogin))


logging.getLogger("mcp.client.auth.oauth2").addFilter(_Quiet())


class Vault:
    """Seals and opens the host's secrets with its key, made on first use."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "oauth.key"
        self._fernet: Fernet | None = None

    def _key(self) -> Fernet:
        if self._fernet is None:
            key = os.environ.get(KEY_ENV, "").encode()
            if not key:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                try:  # made once, readable by its owner only
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(Fernet.generate_key())
                except FileExistsError:
                    pass
                key = self.path.read_bytes().strip()
            try:
                self._fernet = Fernet(key)
            except ValueError:
                raise UserError(f"{KEY_ENV} or {self.path} is not a key clawmcp made") from None
        return self._fernet

    def seal(self, value: dict[str, Any]) -> bytes:
        return self._key().encrypt(json.dumps(value).encode())

    def open(self, sealed: bytes) -> dict[str, Any]:
        try:
            value: dict[str, Any] = json.loads(self._key().decrypt(sealed))
        except InvalidToken:
            raise UserError(
                f"the stored tokens were sealed with another key than {self.path}; hosts that share "
                f"a store share the key (copy the file, or set {KEY_ENV})"
            ) from None
        return value


class Tokens:
    """The SDK's `TokenStorage` over the store: one sealed record per server, with the moment the
    access token expires (the SDK keeps that only in memory)."""

    def __init__(self, store: SecretStore, server: str, vault: Vault) -> None:
        self.store, self.name, self.vault = store, f"oauth:{server}", vault
        self.expires_at: float | None = None

    async def _load(self) -> dict[str, Any]:
        sealed = await self.store.secret(self.name)
        return self.vault.open(sealed) if sealed is not None else {}

    async def _save(self, **fields: Any) -> None:
        await self.store.put_secret(self.name, self.vault.seal(await self._load() | fields))

    async def get_tokens(self) -> OAuthToken | None:
        found = await self._load()
        self.expires_at = found.get("expires_at")
        return OAuthToken.model_validate(found["tokens"]) if found.get("tokens") else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        expires = time.time() + tokens.expires_in if tokens.expires_in is not None else None
        await self._save(tokens=tokens.model_dump(mode="json", exclude_none=True), expires_at=expires)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        found = (await self._load()).get("client")
        return OAuthClientInformationFull.model_validate(found) if found else None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        await self._save(client=client_info.model_dump(mode="json", exclude_none=True))

    async def forget(self) -> None:
        await self.store.put_secret(self.name, None)


class _Provider(OAuthClientProvider):
    """The SDK's provider, which also knows when stored tokens expire: a host that starts with
    an expired access token refreshes it, where the SDK would send it and start a new login."""

    def __init__(self, tokens: Tokens, url: str, metadata: OAuthClientMetadata, **handlers: Any) -> None:
        super().__init__(url, metadata, tokens, **handlers)
        self.tokens = tokens

    async def _initialize(self) -> None:
        await super()._initialize()
        self.context.token_expiry_time = self.tokens.expires_at


def _metadata(server: Server, redirect: str) -> OAuthClientMetadata:
    return OAuthClientMetadata.model_validate(
        {
            "client_name": "clawmcp",
            "redirect_uris": [redirect],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": " ".join(server.scopes) or None,
        }
    )


async def host_auth(
    name: str, server: Server, store: SecretStore, vault: Vault, refused: Callable[[], None]
) -> httpx2.Auth:
    """The auth of the host's connections to the server: the stored tokens, refreshed as they
    expire; `NeedsLogin` when there are none, or (`refused` is told first) when a person must
    log in again."""
    tokens = Tokens(store, name, vault)
    if await tokens.get_tokens() is None:  # not logged in: nothing to try (no registration either)
        raise NeedsLogin(name)

    async def needs_login(*_: Any) -> Any:
        refused()
        raise NeedsLogin(name)

    assert server.url is not None
    return _Provider(
        tokens,
        server.url,
        _metadata(server, "http://127.0.0.1/callback"),
        redirect_handler=needs_login,
        callback_handler=needs_login,
    )


async def login(
    name: str, server: Server, store: SecretStore, vault: Vault, show: Callable[[str], None]
) -> None:
    """Log in to the server once: `show` is given the URL to open in a browser, which comes
    back to a listener on a loopback port; the tokens are stored for the host."""
    assert server.url is not None
    tokens = Tokens(store, name, vault)
    await tokens.forget()  # a new login: new tokens, a new registration (its redirect port is new)
    send, came = anyio.create_memory_object_stream[AuthorizationCodeResult](10)

    async def callback(request: Request) -> PlainTextResponse:
        query = request.query_params
        if "code" not in query:
            said = query.get("error_description") or query.get("error") or "no authorization code"
            return PlainTextResponse(f"clawmcp: the login did not succeed: {said}", status_code=400)
        await send.send(
            AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))
        )
        return PlainTextResponse("clawmcp: logged in. You can close this page.")

    async def redirect(url: str) -> None:
        show(url)

    async def returned() -> AuthorizationCodeResult:
        try:
            with anyio.fail_after(_LOGIN_WAIT):
                return await came.receive()
        except TimeoutError:
            raise UserError(f"no login came back within {_LOGIN_WAIT:g}s") from None

    app = Starlette(routes=[Route("/callback", callback)])
    web = QuietServer(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    with send, came, listen_socket("127.0.0.1", 0) as sock:
        redirect_uri = f"http://127.0.0.1:{sock.getsockname()[1]}/callback"
        if server.client_id is not None:
            client = {"client_id": server.client_id, "redirect_uris": [redirect_uri]}
            await tokens.set_client_info(OAuthClientInformationFull.model_validate(client))
        provider = _Provider(
            tokens,
            server.url,
            _metadata(server, redirect_uri),
            redirect_handler=redirect,
            callback_handler=returned,
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(web.serve, [sock])
            async with httpx2.AsyncClient(auth=provider, timeout=httpx2.Timeout(30)) as http:
                transport = (
                    sse_client(server.url, auth=provider)
                    if server.kind == "sse"
                    else streamable_http_client(server.url, http_client=http)
                )
                async with Client(transport) as connected:
                    await connected.list_tools()
            web.should_exit = True
