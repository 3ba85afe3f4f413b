"""The `clawmcp` command (DESIGN §5).

Exit status: 0 on success, 1 on a user error (one clear line per problem on stderr, never a
traceback), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence

from clawmcp import __version__
from clawmcp.errors import ClawError, unwrap

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

    configure_logging()
    anyio.run(serve, load(args.paths, mcp_config=args.mcp_config))
    return 0


def _schema(args: argparse.Namespace) -> int:
    from clawmcp.manifest import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clawmcp",
        description="An MCP-native host for persistent AI agents (Claws).",
        epilog="Environment: CLAWMCP_HOME is the default data_dir (else ~/.clawmcp).",
    )
    parser.add_argument("--version", action="version", version=f"clawmcp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=run)
        return p

    for name, run, help in [
        ("serve", _serve, "run the host (HTTP on host.listen); Ctrl-C stops it cleanly"),
        ("validate", _validate, "check manifests without starting anything"),
    ]:
        p = command(name, run, help)
        p.add_argument("paths", nargs="*", default=["manifests"], metavar="PATH", help=_PATHS_HELP)
        p.add_argument(
            "--mcp-config", metavar="FILE", help="also take the servers of a Claude Desktop config"
        )
    command("schema", _schema, "print the JSON Schema of a manifest file")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        code = args.run(args)
    except (ClawError, BaseExceptionGroup) as e:
        error = unwrap(e)
        if not isinstance(error, ClawError):
            raise
        print(error, file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
