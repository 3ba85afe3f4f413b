"""An MCP server behind OAuth 2.1, with its own authorization server, built from the SDK's pieces:
`python oauth_server.py EXPIRES_IN` serves streamable HTTP on a free loopback port and prints
`listening on http://127.0.0.1:PORT/mcp`.

Its authorization server registers any client (dynamic registration) and approves at once: the
browser step of a login is an HTTP client following the redirect. Access tokens last EXPIRES_IN
seconds (the server itself accepts them until they are refreshed: a client that refreshes shows
it). Tools: `whoami` (the client), `stats` (registrations and refreshes so far), `revoke` (every
refresh token stops working: the next refresh is refused).
"""

from __future__ import annotations

import secrets
import socket
import sys
import time

import anyio
import uvicorn
from mcp.server.auth.provider import AccessToken, AuthorizationCode, AuthorizationParams, RefreshToken
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyHttpUrl

EXPIRES_IN = int(sys.argv[1])
clients: dict[str, OAuthClientInformationFull] = {}
codes: dict[str, AuthorizationCode] = {}
access: dict[str, AccessToken] = {}
refresh: dict[str, RefreshToken] = {}
counts = {"registrations": 0, "refreshes": 0}


def issue(client_id: str, scopes: list[str]) -> OAuthToken:
    token, again = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    access[token] = AccessToken(token=token, client_id=client_id, scopes=scopes)
    refresh[again] = RefreshToken(token=again, client_id=client_id, scopes=scopes)
    return OAuthToken(
        access_token=token, expires_in=EXPIRES_IN, refresh_token=again, scope=" ".join(scopes) or None
    )


class Provider:
    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        assert client_info.client_id is not None
        clients[client_info.client_id] = client_info
        counts["registrations"] += 1

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        code = secrets.token_urlsafe(16)
        assert client.client_id is not None
        codes[code] = AuthorizationCode(
            code=code,
            scopes=params.scopes or [],
            expires_at=time.time() + 300,
            client_id=client.client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
        )
        state = f"&state={params.state}" if params.state else ""
        return f"{params.redirect_uri}?code={code}{state}"

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        return codes.get(authorization_code)

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        del codes[authorization_code.code]
        return issue(authorization_code.client_id, authorization_code.scopes)

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        return refresh.get(refresh_token)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        del refresh[refresh_token.token]
        counts["refreshes"] += 1
        return issue(refresh_token.client_id, scopes or refresh_token.scopes)

    async def load_access_token(self, token: str) -> AccessToken | None:
        return access.get(token)

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        access.pop(token.token, None)
        refresh.pop(token.token, None)


def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = MCPServer(
        "secure",
        auth_server_provider=Provider(),  # type: ignore[arg-type]
        auth=AuthSettings(
            issuer_url=AnyHttpUrl(base),
            resource_server_url=AnyHttpUrl(f"{base}/mcp"),
            client_registration_options=ClientRegistrationOptions(enabled=True),
            validate_token_resource=False,
        ),
    )

    @server.tool()
    def whoami(ctx: Context) -> str:
        """The client this call came from."""
        return "a logged-in client"

    @server.tool()
    def stats() -> dict[str, int]:
        """Registrations and refreshes so far."""
        return counts

    @server.tool()
    def revoke() -> str:
        """Every refresh token stops working."""
        refresh.clear()
        return "revoked"

    print(f"listening on {base}/mcp", flush=True)
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning", lifespan="on")
    anyio.run(uvicorn.Server(config).serve, [sock])


if __name__ == "__main__":
    main()
