"""The `clawmcp` command (DESIGN §5).

Exit status: 0 on success, 1 on a user error (one clear line per problem on stderr, never a
traceback), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from clawmcp import __version__
from clawmcp.errors import ClawError, UserError, unwrap

if TYPE_CHECKING:
    import httpx2

__all__ = ["main"]

_PATHS_HELP = "manifest files or folders (default: ./manifests)"


def _validate(args: argparse.Namespace) -> int:
    from clawmcp.manifest import load

    m = load(args.paths, mcp_config=args.mcp_config)
    tables: dict[str, Mapping[str, object]] = {
        "Claws": m.claws,
        "models": m.models,
        "servers": m.servers,
        "tools": m.tools,
    }
    summary = ", ".join(f"{k}: {len(v)}" for k, v in tables.items())
    print(f"ok: {', '.join(m.files)} ({summary})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import anyio

    from clawmcp.host import configure_logging
    from clawmcp.manifest import load
    from clawmcp.web import serve

    manifest = load(args.paths, mcp_config=args.mcp_config)
    configure_logging(args.log_format, manifest)
    anyio.run(serve, manifest)
    return 0


def _worker(args: argparse.Namespace) -> int:
    import anyio

    from clawmcp.host import configure_logging
    from clawmcp.manifest import load
    from clawmcp.worker import serve_worker

    manifest = load(args.paths)
    configure_logging(args.log_format, manifest)
    anyio.run(serve_worker, manifest, args.claw)
    return 0


def _stdio(args: argparse.Namespace) -> int:
    import anyio

    from clawmcp.host import configure_logging
    from clawmcp.manifest import outline
    from clawmcp.stdio import run_stdio

    configure_logging(args.log_format)
    anyio.run(run_stdio, outline(args.paths), args.claw)
    return 0


def _login(args: argparse.Namespace) -> int:
    """`clawmcp login SERVER`: the browser flow once; the host, if one runs, connects at once."""
    import time

    import anyio

    from clawmcp.manifest import load
    from clawmcp.oauth import Vault, login
    from clawmcp.store.configured import configured_store

    manifest = load(args.paths)
    server = manifest.servers.get(args.server)
    if server is None or server.auth != "oauth":
        oauth = [n for n, s in manifest.servers.items() if s.auth == "oauth"]
        raise UserError(
            f"no server '{args.server}' with auth: oauth (those with it: {', '.join(oauth) or 'none'})"
        )

    def show(url: str) -> None:
        print(f"Open this address in a browser to log in to '{args.server}':\n{url}", flush=True)

    async def run() -> None:
        async with configured_store(manifest, time.time) as store:
            await login(args.server, server, store, Vault(manifest.data_dir), show)

    anyio.run(run)
    print(f"logged in to '{args.server}'; the host keeps the tokens fresh from now on")
    if _locate(args)[1] is not None:  # a running host tries the server again now
        _api(args, "POST", f"/api/tools/{args.server}/reconnect")
    return 0


def _locate(args: argparse.Namespace) -> tuple[Path, str | None]:
    """The data_dir, and where its host listens (None when none runs), read once per command:
    from the manifests only the data_dir (no model secrets needed), then the lock file."""
    if getattr(args, "located", None) is None:
        from clawmcp.manifest import outline
        from clawmcp.store.lock import read_lock_info

        data_dir = outline(args.paths).data_dir
        info = read_lock_info(data_dir) or {}
        args.located = (data_dir, info.get("listen"))
    located: tuple[Path, str | None] = args.located
    return located


@contextlib.contextmanager
def _request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Iterator[httpx2.Response]:
    """A request to the running host (its response streamed); its errors become one-line user
    errors."""
    import httpx2

    from clawmcp.address import host_url

    data_dir, listen = _locate(args)
    if listen is None:
        raise UserError(f"no clawmcp host is running on {data_dir}; start one with: clawmcp serve")
    headers = {"Authorization": f"Bearer {token}"} if (token := os.environ.get("CLAWMCP_TOKEN")) else {}
    url = host_url(listen) + path
    try:
        with httpx2.stream(
            method, url, json=body, headers=headers, timeout=httpx2.Timeout(10, read=None)
        ) as response:
            if response.status_code >= 400:
                response.read()
                try:
                    data = response.json()
                except ValueError:
                    data = {"error": response.text}
                error = data.get("error") if isinstance(data, dict) else None
                problems = data.get("problems") if isinstance(data, dict) else None
                if isinstance(problems, list) and problems:  # manifest problems, as validate shows them
                    raise UserError("\n".join(map(str, problems)))
                raise UserError(f"{error or response.reason_phrase} (HTTP {response.status_code})")
            yield response
    except httpx2.TransportError as e:
        raise UserError(f"cannot reach the clawmcp host at {url}: {e}") from None


def _api(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """Call the running host's JSON API."""
    with _request(args, method, path, body) as response:
        response.read()
        return response.json()


def _claws(args: argparse.Namespace) -> int:
    claws = _api(args, "GET", "/api/claws")
    if args.json:
        print(json.dumps(claws, indent=2))
        return 0
    rows = [("CLAW", "STATE", "HOST", "MODEL", "MAILBOX", "DEAD", "SCHEDULES", "LAST RUN")]
    for c in claws:
        last = c["last_runs"][0]["state"] if c["last_runs"] else "-"
        rows.append(
            (
                c["claw"],
                c["state"],
                c["host"] or "-",
                ", ".join([c["model"]["name"], *c["model"].get("fallback", [])]),
                str(c["mailbox"]),
                str(len(c["dead_letters"])),
                str(len(c["schedules"])),
                last,
            )
        )
    _table(rows)
    return 0


def _hosts(args: argparse.Namespace) -> int:
    hosts = _api(args, "GET", "/api/hosts")
    if args.json:
        print(json.dumps(hosts, indent=2))
        return 0
    rows = [("HOST", "LISTEN", "STATE", "RENEWED", "CLAWS")]
    for h in hosts:
        ago = f"{max(0.0, time.time() - h['renewed_at']):.1f}s ago"
        rows.append(
            (h["name"], h["listen"], "up" if h["alive"] else "gone", ago, ", ".join(h["claws"]) or "-")
        )
    _table(rows)
    return 0


def _tools(args: argparse.Namespace) -> int:
    server, *names = args.names or [None]
    if server == "accept":  # clawmcp tools accept SERVER [TOOL...]
        if not names:
            raise UserError("say which server: clawmcp tools accept SERVER [TOOL...]")
        server, *names = names
        done = _api(args, "POST", f"/api/tools/{server}/accept", {"tools": names})
        print(f"accepted {len(done['accepted'])} tool(s) of '{server}': {', '.join(done['accepted'])}")
        return 0
    if names:
        raise UserError(f"one server at most: clawmcp tools [SERVER], got {' '.join(args.names)}")
    tools = [t for t in _api(args, "GET", "/api/tools") if server in (None, t["server"])]
    servers = _api(args, "GET", "/api/servers")
    if server is not None and not tools and server not in servers:
        raise UserError(f"the running host has no tools of a server '{server}'")
    if args.json:
        print(json.dumps(tools, indent=2))
        return 0
    _table(
        [("PATTERN", "WIRE NAME", "SERVER", "PIN", "CLAWS")]
        + [
            (t["pattern"], t["wire"], t["server_state"], t["pin"], ", ".join(t["claws"]) or "-")
            for t in tools
        ]
    )
    for t in tools if args.diff else []:
        for field, change in (t["changes"] or {}).items():
            print(f"\n{t['pattern']} {field}:")
            print(f"  pinned: {json.dumps(change['pinned'])}\n  now:    {json.dumps(change['now'])}")
    for name, s in servers.items():  # what keeps a server's tools away
        if server in (None, name) and s["state"] != "up":
            print(f"server '{name}': {s['state']}" + (f": {s['error']}" if s["error"] else ""))
    return 0


def _dead(args: argparse.Namespace) -> int:
    dead = _api(args, "GET", "/api/dead" + (f"?{urlencode({'claw': args.claw})}" if args.claw else ""))
    if args.json:
        print(json.dumps(dead, indent=2))
        return 0
    rows = [("ID", "CLAW", "TRIES", "ERROR", "MESSAGE")]
    rows += [
        (str(m["id"]), m["claw"], str(m["attempts"]), _cut(m["last_error"] or ""), _cut(m["content"]))
        for m in dead
    ]
    _table(rows)
    return 0


def _settle(args: argparse.Namespace) -> int:
    action = args.command
    if action == "retry" and args.all:
        ids = [m["id"] for m in _api(args, "GET", "/api/dead")]
    elif args.id is None:
        raise UserError("say which dead letter: clawmcp retry ID, or clawmcp retry --all")
    else:
        ids = [args.id]
    for message_id in ids:
        settled = _api(args, "POST", f"/api/dead/{message_id}/{action}")
        print(f"message {settled['id']} ({settled['claw']}): {settled['state']}")
    return 0


def _approvals(args: argparse.Namespace) -> int:
    query = {"claw": args.claw} if args.claw else {}
    found = _api(args, "GET", "/api/approvals" + (f"?{urlencode(query)}" if query else ""))
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    rows = [("ID", "CLAW", "TOOL", "RUN", "ARGUMENTS")]
    rows += [
        (str(a["id"]), a["claw"], a["tool"], str(a["run"]), _cut(json.dumps(a["arguments"]))) for a in found
    ]
    _table(rows)
    return 0


def _decide(args: argparse.Namespace) -> int:
    body = {"approve": args.command != "deny", "note": args.note}
    if args.command == "answer":
        try:
            body["content"] = json.loads(args.answer)
        except ValueError as e:
            raise UserError(f"the answer is not JSON: {e}") from None
    decided = _api(args, "POST", f"/api/approvals/{args.id}", body)
    print(f"approval {decided['id']} ({decided['claw']}, {decided['tool']}): {decided['state']}")
    return 0


def _follow_up(args: argparse.Namespace) -> int:
    """`clawmcp result ID [--wait S]` or `clawmcp cancel ID`: what became of the message (its
    reply, on stdout), or an exit status of 1 while it has not ended well."""
    if args.command == "cancel":
        found = _api(args, "POST", f"/api/messages/{args.id}/cancel")
    else:
        found = _api(args, "GET", f"/api/messages/{args.id}?{urlencode({'wait': args.wait})}")
    if args.json:
        print(json.dumps(found, indent=2))
    elif found["state"] == "done":
        print(found["reply"])
    else:
        said = f": {found['error']}" if found["error"] else ""
        print(f"message {found['message_id']} ({found['claw']}): {found['state']}{said}", file=sys.stderr)
    return 0 if found["state"] == "done" or args.command == "cancel" else 1


def _reload(args: argparse.Namespace) -> int:
    """`clawmcp reload`: the running host reads its manifests again and applies them; their
    problems, if any, as `clawmcp validate` shows them (and nothing changed)."""
    found = _api(args, "POST", "/api/reload")
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    print(f"reloaded: {found['summary']}")
    for key in found["restart"]:
        print(f"host.{key} changed: it takes effect when the host starts again", file=sys.stderr)
    return 0


def _cut(text: str, size: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 1] + "…"


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _ask(args: argparse.Namespace) -> int:
    run = _api(args, "POST", f"/api/claws/{args.claw}/ask", {"message": args.message, "thread": args.thread})
    if run["state"] != "done":
        print(f"run {run['run']} ended {run['state']}: {run['error']}", file=sys.stderr)
        return 1
    print(run["reply"])
    return 0


def _tell(args: argparse.Namespace) -> int:
    told = _api(
        args, "POST", f"/api/claws/{args.claw}/tell", {"message": args.message, "thread": args.thread}
    )
    print(told["message_id"])
    return 0


def _logs(args: argparse.Namespace) -> int:
    query = {"limit": args.lines} | ({"claw": args.claw} if args.claw else {})

    def show(event: dict[str, Any]) -> None:
        print(json.dumps(event) if args.json else event["line"], flush=True)

    data_dir, listen = _locate(args)
    if listen is None:  # the log as the store keeps it
        import dataclasses

        from clawmcp.events import line
        from clawmcp.store.sqlite import read_events

        if (data_dir / "state.db").exists():
            for event in read_events(data_dir / "state.db", args.claw, args.lines):
                show(dataclasses.asdict(event) | {"line": line(event)})
        if args.follow:
            raise UserError(f"no clawmcp host is running on {data_dir}: nothing more will come")
        return 0
    if not args.follow:
        for event in _api(args, "GET", f"/api/events?{urlencode(query)}"):
            show(event)
        return 0
    with _request(args, "GET", f"/api/events?{urlencode(query | {'follow': 1})}") as response:
        for text in response.iter_lines():
            if text.startswith("data:"):
                show(json.loads(text[5:]))
    print("the host closed the stream (it stopped)", file=sys.stderr)
    return 0


def _desktop_config(args: argparse.Namespace) -> int:
    from pathlib import Path

    from clawmcp.manifest import no_claw, outline

    found = outline(args.paths)
    for claw in args.claws:
        if claw not in found.claws:
            raise no_claw(claw, found.claws)
    paths = [str(Path(p).resolve()) for p in args.paths]
    # What the host needs from the environment, as placeholders: a bridge that starts the host
    # passes its env on. Never the values.
    needs = [*found.needs, *(["CLAWMCP_TOKEN"] if found.tokens else [])]
    env = {name: f"<{name}>" for name in needs}
    servers = {
        claw: {"command": sys.executable, "args": ["-m", "clawmcp", "stdio", claw, *paths]}
        | ({"env": env} if env else {})
        for claw in args.claws or found.claws
    }
    print(json.dumps({"mcpServers": servers}, indent=2))
    return 0


def _schema(args: argparse.Namespace) -> int:
    from clawmcp.manifest import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clawmcp",
        description="An MCP-native host for persistent AI agents (Claws).",
        epilog="Environment: CLAWMCP_HOME is the default data_dir (else ~/.clawmcp); "
        "CLAWMCP_TOKEN is the bearer token that claws, ask, tell and a stdio bridge send.",
    )
    parser.add_argument("--version", action="version", version=f"clawmcp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=run)
        return p

    def logging_format(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--log-format",
            choices=["text", "json"],
            help="stderr log lines as text or as JSON objects (default: $CLAWMCP_LOG_FORMAT, else text)",
        )

    for name, run, help in [
        ("serve", _serve, "run the host (HTTP on host.listen); Ctrl-C stops it cleanly"),
        ("validate", _validate, "check manifests without starting anything"),
    ]:
        p = command(name, run, help)
        p.add_argument("paths", nargs="*", default=["manifests"], metavar="PATH", help=_PATHS_HELP)
        p.add_argument(
            "--mcp-config", metavar="FILE", help="also take the servers of a Claude Desktop config"
        )
        if name == "serve":
            logging_format(p)
    command("schema", _schema, "print the JSON Schema of a manifest file")

    p = command("worker", _worker, "run one Claw with isolation: process (the host starts this itself)")
    p.add_argument("claw", metavar="CLAW")
    p.add_argument("paths", nargs="*", default=["manifests"], metavar="PATH", help=_PATHS_HELP)
    logging_format(p)

    p = command("stdio", _stdio, "serve one Claw over stdio (bridge to a running host, or run one)")
    p.add_argument("claw", metavar="CLAW")
    p.add_argument("paths", nargs="*", default=["manifests"], metavar="PATH", help=_PATHS_HELP)
    logging_format(p)

    def against_host(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-p",
            "--path",
            dest="paths",
            action="append",
            metavar="PATH",
            help="manifest file or folder that names the host's data_dir (default: ./manifests)",
        )

    p = command("claws", _claws, "list the Claws of the running host")
    p.add_argument("--json", action="store_true", help="print JSON")
    against_host(p)
    for name, run, help in [
        ("ask", _ask, "ask a Claw through the running host and print its reply"),
        ("tell", _tell, "queue a message for a Claw and print its id"),
    ]:
        p = command(name, run, help)
        p.add_argument("claw", metavar="CLAW")
        p.add_argument("message", metavar="MESSAGE")
        p.add_argument("--thread", default="default", help="conversation name (default: default)")
        against_host(p)
    p = command("result", _follow_up, "what became of a message told or asked: its reply or state")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait up to S seconds for its end")
    p.add_argument("--json", action="store_true", help="print JSON")
    against_host(p)
    p = command("cancel", _follow_up, "cancel a message: drop it if queued, stop its run if running")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--json", action="store_true", help="print JSON")
    against_host(p)
    p = command("login", _login, "log in to a tool server with auth: oauth (prints the address to open)")
    p.add_argument("server", metavar="SERVER")
    against_host(p)
    p = command(
        "reload",
        _reload,
        "make the running host read its manifests again and apply them (its problems, if any: nothing "
        "changes); with several hosts on one store, every host applies it",
    )
    p.add_argument("--json", action="store_true", help="print what changed as JSON")
    against_host(p)
    p = command("hosts", _hosts, "list the hosts of the store and the Claws each runs")
    p.add_argument("--json", action="store_true", help="print JSON")
    against_host(p)
    p = command(
        "tools",
        _tools,
        "list the tools of the running host's servers (pattern, wire name, pin state); "
        "'tools accept SERVER [TOOL...]' trusts held tools as they are now",
    )
    p.add_argument("names", nargs="*", metavar="SERVER", help="only this server (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--diff", action="store_true", help="show what changed in tools held as changed")
    against_host(p)
    p = command("dead", _dead, "list the dead letters: messages that failed every try")
    p.add_argument("claw", nargs="?", metavar="CLAW", help="only this Claw's (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON")
    against_host(p)
    p = command("retry", _settle, "queue a dead letter again (its tries counted from zero)")
    p.add_argument("id", nargs="?", type=int, metavar="ID")
    p.add_argument("--all", action="store_true", help="every dead letter")
    against_host(p)
    p = command("discard", _settle, "give up on a dead letter (it stays, marked discarded)")
    p.add_argument("id", type=int, metavar="ID")
    against_host(p)
    p = command("approvals", _approvals, "list the tool calls waiting for a person's approval")
    p.add_argument("claw", nargs="?", metavar="CLAW", help="only this Claw's (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON")
    against_host(p)
    for name, help in [
        ("approve", "approve a waiting tool call: the run goes on"),
        ("deny", "deny a waiting tool call, or decline a question: the model is told"),
        ("answer", "answer a tool server's question with JSON in its schema"),
    ]:
        p = command(name, _decide, help)
        p.add_argument("id", type=int, metavar="ID")
        if name == "answer":
            p.add_argument("answer", metavar="JSON")
        p.add_argument("--note", help="why; the model sees it")
        against_host(p)
    p = command("logs", _logs, "show what the Claws did: runs, model turns, tool calls, messages, fires")
    p.add_argument("claw", nargs="?", metavar="CLAW", help="only this Claw (default: all)")
    p.add_argument("-f", "--follow", action="store_true", help="go on showing events as they happen")
    p.add_argument("-n", "--lines", type=int, default=50, metavar="N", help="show the last N events (50)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    against_host(p)
    p = command("desktop-config", _desktop_config, "print Claude Desktop's mcpServers JSON for these Claws")
    p.add_argument("claws", nargs="*", metavar="CLAW", help="default: every Claw")
    against_host(p)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if getattr(args, "paths", ...) is None:  # an option that was never given
        args.paths = ["manifests"]
    try:
        code = args.run(args)
        sys.stdout.flush()  # here, so that a closed pipe is met below and not at exit
    except (ClawError, BaseExceptionGroup) as e:
        error = unwrap(e)
        if not isinstance(error, ClawError):
            raise
        print(error, file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # `clawmcp schema | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
