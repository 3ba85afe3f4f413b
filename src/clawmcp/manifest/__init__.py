"""Manifests (DESIGN §2): YAML files that declare a host, models, tool servers, tools and Claws.

`load(paths)` reads and merges them into one `Manifest`, or raises `ManifestError` with every
problem found, each as FILE:LINE:COL: message.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from clawmcp.errors import ManifestError, Problem, UserError
from clawmcp.manifest.check import Entry, check, tool_allowed
from clawmcp.manifest.load import NAME_RULE, Source, discover, read, validate
from clawmcp.manifest.model import (
    NAME_PATTERN,
    Call,
    Claw,
    Host,
    ManifestFile,
    Model,
    Rule,
    Schedule,
    Send,
    Server,
    Tool,
    parse_duration,
)

__all__ = [
    "Call",
    "Claw",
    "Host",
    "Manifest",
    "Model",
    "Outline",
    "Rule",
    "Schedule",
    "Send",
    "Server",
    "Tool",
    "json_schema",
    "load",
    "no_claw",
    "outline",
    "parse_duration",
    "tool_allowed",
]

_TABLES: dict[str, type[BaseModel]] = {"models": Model, "servers": Server, "tools": Tool, "claws": Claw}
_TOP = ("version", "host", *_TABLES)


@dataclass(frozen=True)
class Manifest:
    """Every manifest file merged: each table a map by name."""

    host: Host
    models: dict[str, Model]
    servers: dict[str, Server]
    tools: dict[str, Tool]
    claws: dict[str, Claw]
    files: tuple[str, ...]
    secrets: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Values that came from environment variables, by variable name: see `redact`."""
    paths: tuple[str, ...] = ()
    """The files and folders it was loaded from, as given (a reload reads them again)."""
    mcp_config: str | None = None
    """The Claude Desktop config whose servers it took, if any."""

    def replace_with(self, other: Manifest) -> None:
        """Take every table and setting of `other`, in place. The host's parts all hold this one
        object, so each sees the new tables at once (`clawmcp.reload`); a part that copied
        something out of it at construction is told by the reload."""
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, getattr(other, field.name))

    def check_claw(self, name: str) -> None:
        """Raise `UserError` naming the Claw and the Claws there are, unless the manifest has it."""
        if name not in self.claws:
            raise no_claw(name, self.claws)

    def redact(self, text: str) -> str:
        """`text` with every value that came from an environment variable (it may be a secret: a
        key in a URL, a token) shown as the variable instead: `${NAME}`."""
        return _redactor(tuple(self.secrets.items()))(text)

    @property
    def data_dir(self) -> Path:
        return _data_dir(self.host.data_dir)

    @property
    def store(self) -> str:
        """`host.store`, else $CLAWMCP_STORE, else `sqlite`."""
        if "store" in self.host.model_fields_set:
            return self.host.store
        return os.environ.get("CLAWMCP_STORE") or "sqlite"


def no_claw(name: str, claws: Iterable[str]) -> UserError:
    """The error for a Claw that is not there, naming those that are (or those the asker may see)."""
    return UserError(f"no Claw '{name}' (Claws: {', '.join(sorted(claws)) or 'none'})")


def _data_dir(given: str | None) -> Path:
    """`host.data_dir`, else $CLAWMCP_HOME, else ~/.clawmcp."""
    return Path(given or os.environ.get("CLAWMCP_HOME") or "~/.clawmcp").expanduser()


@functools.cache
def _redactor(secrets: tuple[tuple[str, str], ...]) -> Callable[[str], str]:
    if not secrets:
        return lambda text: text
    names = dict(secrets)
    pattern = re.compile("|".join(re.escape(v) for v in sorted(names, key=len, reverse=True)))
    return lambda text: pattern.sub(lambda m: f"${{{names[m[0]]}}}", text)


@dataclass(frozen=True)
class Outline:
    """What a stdio bridge and `desktop-config` need of manifests, read without checking them (the
    model keys they may lack are the host's business): see `outline`."""

    files: tuple[str, ...]
    data_dir: Path
    claws: tuple[str, ...]
    needs: tuple[str, ...]
    """Variables used without a default, sorted."""
    tokens: bool
    """Whether `host.auth.tokens` has any."""


def outline(paths: Sequence[str | Path] = ("manifests",)) -> Outline:
    """The data_dir, Claws, needed variables and whether tokens are on, of manifest files and
    folders, read leniently: only files that cannot be found or parsed at all are an error."""
    problems: list[Problem] = []
    files = discover([str(p) for p in paths], problems)
    docs = [doc for shown, path in files if (doc := read(shown, path, os.environ, [])) is not None]
    if problems:
        raise ManifestError(problems)
    host: dict[str, Any] = {}
    claws: set[str] = set()
    for doc in docs:
        data = doc.data if isinstance(doc.data, dict) else {}
        if isinstance(data.get("host"), dict):
            host = _relative(data["host"], "data_dir", doc.source.folder, default=False)
        if isinstance(data.get("claws"), dict):
            claws |= {str(name) for name in data["claws"]}
    given = host.get("data_dir") if isinstance(host.get("data_dir"), str) else None
    auth = host["auth"] if isinstance(host.get("auth"), dict) else {}
    return Outline(
        files=tuple(shown for shown, _ in files),
        data_dir=_data_dir(given),
        claws=tuple(sorted(claws)),
        needs=tuple(sorted({name for doc in docs for name in doc.source.needs})),
        tokens=bool(auth.get("tokens")),
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of one manifest file (for editors and `clawmcp schema`)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **ManifestFile.model_json_schema()}


def load(
    paths: Sequence[str | Path] = ("manifests",),
    env: Mapping[str, str] | None = None,
    *,
    mcp_config: str | Path | None = None,
) -> Manifest:
    """Read, check and merge manifest files and folders; raise `ManifestError` listing every problem.

    `mcp_config` is a Claude Desktop config file: its `mcpServers` entries become servers.
    """
    env = os.environ if env is None else env
    problems: list[Problem] = []
    tables: dict[str, dict[str, Entry]] = {table: {} for table in _TABLES}
    host: Entry | None = None
    sources: list[Source] = []
    files = discover([str(p) for p in paths], problems)
    for shown, path in files:
        doc = read(shown, path, env, problems)
        if doc is None:
            continue
        src = doc.source
        sources.append(src)
        if not isinstance(doc.data, dict):
            problems.append(
                src.problem((), f"a manifest is a mapping with the keys {', '.join(_TOP)}", "value")
            )
            continue
        for key, raw in doc.data.items():
            if key not in _TOP:
                problems.append(src.problem((key,), f"unknown key; allowed here: {', '.join(_TOP)}"))
            elif key == "version":
                if type(raw) is not int or raw != 1:
                    problems.append(
                        src.problem(("version",), f"expected 1 (the only version), got {raw!r}", "value")
                    )
            elif key == "host":
                if host is not None:
                    first = host.source.problem(("host",), "")
                    problems.append(src.problem(("host",), f"defined twice (first at {_at(first)})"))
                    continue
                raw = _relative(raw, "data_dir", src.folder, default=False)
                host = Entry(validate(Host, raw, ("host",), src, problems), src)
            else:
                _read_table(key, raw, src, tables, problems)
    if mcp_config is not None:
        _read_mcp_config(str(mcp_config), env, tables, problems, sources)
    problems += check(tables, host)
    secrets = {value: name for src in sources for value, name in src.secrets.items()}
    if problems:
        redact = _redactor(tuple(secrets.items()))
        raise ManifestError([dataclasses.replace(p, message=redact(p.message)) for p in problems])
    valid = {t: {name: e.value for name, e in entries.items()} for t, entries in tables.items()}
    return Manifest(
        host=host.value if host else Host(),
        models=valid["models"],
        servers=valid["servers"],
        tools=valid["tools"],
        claws=valid["claws"],
        files=tuple(shown for shown, _ in files),
        secrets=secrets,
        paths=tuple(str(p) for p in paths),
        mcp_config=None if mcp_config is None else str(mcp_config),
    )


def _read_mcp_config(
    file: str,
    env: Mapping[str, str],
    tables: dict[str, dict[str, Entry]],
    problems: list[Problem],
    sources: list[Source],
) -> None:
    path = Path(file)
    if not path.is_file():
        problems.append(Problem(file, 1, 1, "no such file"))
        return
    doc = read(file, path, env, problems)
    if doc is None:
        return
    sources.append(doc.source)
    if not isinstance(doc.data, dict) or "mcpServers" not in doc.data:
        problems.append(
            doc.source.problem((), "a Claude Desktop config has an 'mcpServers' mapping", "value")
        )
        return
    _read_table("servers", doc.data["mcpServers"], doc.source, tables, problems, key="mcpServers")


def _read_table(
    table: str,
    raw: Any,
    src: Source,
    tables: dict[str, dict[str, Entry]],
    problems: list[Problem],
    *,
    key: str | None = None,
) -> None:
    """Add the entries of one table of one file; `key` is the table's name in that file."""
    key = key or table
    if raw is None:
        return
    if not isinstance(raw, dict):
        problems.append(src.problem((key,), "expected a mapping of names to entries", "value"))
        return
    for name, entry in raw.items():
        loc = (key, name)
        if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):  # not "a\n"
            problems.append(src.problem(loc, f"{name!r} is not a valid name: {NAME_RULE}"))
            continue
        if name in tables[table]:
            earlier = tables[table][name]
            first = earlier.source.problem(earlier.loc, "")
            problems.append(src.problem(loc, f"defined twice (first at {_at(first)})"))
            continue
        if table in ("servers", "tools") and isinstance(entry, dict) and "command" in entry:
            entry = _relative(entry, "cwd", src.folder, default=True)
        value = validate(_TABLES[table], entry, loc, src, problems)
        tables[table][name] = Entry(value, src, loc)


def _relative(raw: Any, key: str, folder: Path, *, default: bool) -> Any:
    """A path in the manifest is relative to the manifest's own folder. `~` is the home folder;
    `~user` of a user unknown here stays as it is (`Path.expanduser` would raise)."""
    if not isinstance(raw, dict):
        return raw
    value = raw.get(key)
    if isinstance(value, str) and "\0" not in value:  # a NUL is reported as a problem already
        return {**raw, key: os.path.normpath(folder / os.path.expanduser(value))}
    if value is None and default:
        return {**raw, key: str(folder)}
    return raw


def _at(problem: Problem) -> str:
    return f"{problem.file}:{problem.line}:{problem.col}"
