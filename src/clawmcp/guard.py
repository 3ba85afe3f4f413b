"""The guard in front of the host's HTTP surface.

The guard checks every request before anything else sees it: the Host header (loopback, the
listen address and `allowed_hosts`), the Origin when a browser sends one, and, when
`host.auth.tokens` are set, a bearer token that must reach the Claw the path names (but for the
webhooks under `/hooks/`, which are signed instead). A browser,
which cannot send a bearer header, opens `/?token=TOKEN` once: the guard checks the token, keeps
it in an HttpOnly, SameSite=Strict cookie and redirects to `/`; the cookie then stands for the
token on GET requests (the dashboard and the API reads it makes), and on a POST only beside the
dashboard page's own token (`X-Clawmcp-Page`, which only a page of this origin can read), so that
no other site can make a browser act.
"""

from __future__ import annotations

import hmac
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request, cookie_parser
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from clawmcp.address import split_listen
from clawmcp.manifest import Manifest, no_claw

__all__ = ["Guard", "error", "no_claw_response", "reaches"]

_OPEN_PATHS = ("/healthz", "/readyz")
_HOOKS = "/hooks/"
"""Webhooks carry a signature instead of a token (`clawmcp.hooks`)."""
_COOKIE = "clawmcp_token"
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def reaches(request: Any, claw: str) -> bool:
    """Whether the HTTP request's token (if tokens are in use) reaches the Claw; anything else
    (a request over stdio, None) reaches every Claw."""
    return not isinstance(request, Request) or _reaches(request.scope, claw)


def _reaches(scope: Scope, claw: str) -> bool:
    patterns = scope.get("state", {}).get("claws")
    return patterns is None or any(fnmatchcase(claw, p) for p in patterns)


def no_claw_response(
    scope: Scope, manifest: Manifest, claw: str, *, jsonrpc: bool = False
) -> JSONResponse | None:
    """A 404 for a Claw the manifest lacks, naming only the Claws the request's token reaches; for
    an MCP client, as a JSON-RPC error, which the SDK shows (instead of "Not Found")."""
    if claw in manifest.claws:
        return None
    message = str(no_claw(claw, (c for c in manifest.claws if _reaches(scope, c))))
    if jsonrpc:
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}
        return JSONResponse(body, status_code=404)
    return error(404, message)


class Guard:
    """Host, Origin and token checks in front of the whole app."""

    def __init__(self, app: ASGIApp, manifest: Manifest, listen: str, page: str) -> None:
        """The tokens and `allowed_hosts` follow the manifest: a reload that changes them
        (`Manifest.replace_with`) applies from the next request on."""
        self.app, self.page, self.manifest, self.listen = app, page.encode(), manifest, listen
        self._host: object = None
        self._follow()

    def _follow(self) -> None:
        """Take the host's settings again if the manifest's `host:` changed (a reload)."""
        host = self.manifest.host
        if host is self._host:
            return
        address, port = split_listen(self.listen)
        self.hosts = {*_LOOPBACK, address, *host.allowed_hosts}
        # A page's origin must be this host's own, port included: another local web app (another
        # port of localhost) is another origin.
        self.origins = {self.listen, *(f"{name}:{port}" for name in _LOOPBACK), *host.allowed_hosts}
        self.tokens = [(t.token.get_secret_value().encode(), t.claws) for t in host.auth.tokens]
        self._host = host

    def _allowed(self, netloc: str) -> bool:
        if netloc in self.hosts:
            return True
        name = urlsplit(f"//{netloc}").hostname or ""
        return name in self.hosts or f"[{name}]" in self.hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        response = self._refusal(scope, headers)
        if response is not None:
            return await response(scope, receive, send)
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: Headers) -> Response | None:
        self._follow()
        host = headers.get("host", "")
        if not self._allowed(host):
            return error(421, f"Host '{host}' is not allowed (add it to host.allowed_hosts)")
        origin = headers.get("origin")
        if origin and urlsplit(origin).netloc not in self.origins:
            return error(403, f"Origin '{origin}' is not allowed (add it to host.allowed_hosts)")
        path: str = scope["path"]
        if not self.tokens or path in _OPEN_PATHS or path.startswith(_HOOKS):
            return None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        given = given.strip() if scheme.lower() == "bearer" else ""
        query = parse_qs(scope["query_string"].decode()).get("token", [""])[0] if path == "/" else ""
        if query:
            given = query
        elif not given and (
            scope["method"] in ("GET", "HEAD")  # a POST needs the page's token beside the cookie
            or hmac.compare_digest(headers.get("x-clawmcp-page", "").encode(), self.page)
        ):
            given = cookie_parser(headers.get("cookie", "")).get(_COOKIE, "")
        found = None
        for token, claws in self.tokens:  # every token is compared, each in constant time
            if hmac.compare_digest(token, given.encode()):
                found = claws
        if found is None:
            hint = "; a browser opens /?token=TOKEN once" if path == "/" else ""
            return error(
                401, f"a valid bearer token is needed{hint}", {"WWW-Authenticate": 'Bearer realm="clawmcp"'}
            )
        if query:  # keep the token in a cookie and take it out of the address
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(_COOKIE, query, httponly=True, samesite="strict")
            return response
        scope.setdefault("state", {})["claws"] = found
        parts = path.strip("/").split("/")
        claw = parts[1] if parts[0] == "claws" and len(parts) > 1 else None
        claw = parts[2] if parts[:2] == ["api", "claws"] and len(parts) > 2 else claw
        if claw is not None and not any(fnmatchcase(claw, p) for p in found):
            return error(403, f"this token does not reach Claw '{claw}'")
        return None
