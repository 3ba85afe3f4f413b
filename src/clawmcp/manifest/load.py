"""Reading manifest files: YAML with positions, `${VAR}`, one entry at a time.

Every problem becomes a `Problem` at the place it was written, and reading goes on, so the user
sees all problems at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from clawmcp.errors import Problem

__all__ = ["NAME_RULE", "Doc", "Key", "Loc", "Source", "discover", "read", "validate"]

Key = str | int
Loc = tuple[Key, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader without implicit timestamps: pydantic parses `at:` itself."""


class _FastLoader(getattr(yaml, "CSafeLoader", _Loader)):  # type: ignore[misc]
    """The same on libyaml when PyYAML has it: ten times faster on big manifests. Its syntax
    error messages say less, so a file it rejects is parsed again by `_Loader` for the message."""


_Loader.yaml_implicit_resolvers = _FastLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{[^}]*\}?")


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        shown = part if isinstance(part, int) or part.isprintable() else repr(part)  # one line
        out += f"[{shown}]" if isinstance(part, int) else (f".{shown}" if out else str(shown))
    return out


SECRET_MIN = 8
"""A value from a variable this long or longer is never printed or stored; shorter ones (a port, a
flag) would hide too much of everything else they also appear in."""


@dataclass
class Source:
    """Where each key and value of one file was written (1-based line and column)."""

    file: str
    folder: Path
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    from_env: set[Loc] = field(default_factory=set)
    needs: set[str] = field(default_factory=set)
    """Variables used without a default: what the environment must give."""
    secrets: dict[str, str] = field(default_factory=dict)
    """Values taken from the environment (at least `SECRET_MIN` characters), by variable name."""

    def problem(self, loc: Loc, message: str, where: Literal["key", "value"] = "key") -> Problem:
        first, second = (self.keys, self.values) if where == "key" else (self.values, self.keys)
        while loc and loc not in first and loc not in second:
            loc = loc[:-1]
        line, col = first.get(loc) or second.get(loc) or (1, 1)
        prefix = f"{dotted(loc)}: " if loc else ""
        return Problem(self.file, line, col, prefix + message)


@dataclass
class Doc:
    data: Any
    source: Source


def discover(paths: list[str], problems: list[Problem]) -> list[tuple[str, Path]]:
    """Files named by `paths` as (shown name, path); a folder gives its *.yaml and *.yml, sorted."""
    found: list[tuple[str, Path]] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(p.name for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not files:
                problems.append(Problem(given, 1, 1, "no manifest files (*.yaml, *.yml) in this folder"))
            found += [(os.path.join(given, name), path / name) for name in files]
        elif path.is_file():
            found.append((given, path))
        else:
            problems.append(Problem(given, 1, 1, "no such file or folder"))
    return found


def read(shown: str, path: Path, env: Mapping[str, str], problems: list[Problem]) -> Doc | None:
    """Parse one file; None (with problems added) when it is not YAML or is empty."""
    source = Source(shown, path.resolve().parent)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        problems.append(Problem(shown, 1, 1, f"cannot read the file: {e}"))
        return None
    loader = _FastLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError:
            _Loader(text).get_single_node()  # raises the same error with a better message
            raise
        if node is None:
            problems.append(Problem(shown, 1, 1, "the file is empty; a manifest starts with 'version: 1'"))
            return None
        return Doc(
            _Builder(loader, source, env, problems, max(10_000, 2 * len(text))).build(node, ()), source
        )
    except RecursionError:
        problems.append(Problem(shown, 1, 1, "the file is nested too deeply"))
        return None
    except _TooBig as e:
        problems.append(Problem(shown, 1, 1, str(e)))
        return None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problems.append(Problem(shown, line, col, f"YAML syntax error: {e.problem or e.context}"))
        return None
    finally:
        loader.dispose()


class _TooBig(Exception):
    """The file expands to far more values than it has characters: aliases inside aliases."""


@dataclass
class _Builder:
    loader: Any  # _FastLoader or _Loader
    source: Source
    env: Mapping[str, str]
    problems: list[Problem]
    budget: int
    """Values the file may expand to: about its size, so that nested aliases (a "billion laughs")
    cannot grow without bound."""

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise _TooBig("the file expands to too many values (aliases of aliases?)")
        self.source.values[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                here = (*loc, str(key))
                self.source.keys[here] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if not isinstance(key, str):
                    self.problems.append(self.source.problem(here, "keys must be strings"))
                elif key in out:
                    self.problems.append(self.source.problem(here, "this key appears twice here"))
                else:
                    out[key] = self.build(value_node, here)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.source.keys[(*loc, i)] = (item.start_mark.line + 1, item.start_mark.column + 1)
                items.append(self.build(item, (*loc, i)))
            return items
        try:
            value = self.loader.construct_object(node)
        except ValueError:  # an integer of more than 4,300 digits: the text, which the model refuses
            value = node.value
        if isinstance(value, str):
            value = self._substitute(value, loc)
            if "\0" in value:
                self._bad(loc, "a NUL character cannot be part of a value")
        return value

    def _substitute(self, text: str, loc: Loc) -> str:
        def one(m: re.Match[str]) -> str:
            if m[0] == "$$":
                return "$"
            name, default = m[1], m[2]
            if name is None:
                self._bad(loc, f"bad variable reference '{m[0]}': write ${{NAME}} or ${{NAME:-default}}")
                return m[0]
            self.source.from_env.add(loc)
            if default is None:
                self.source.needs.add(name)
            if name in self.env:
                if len(value := self.env[name]) >= SECRET_MIN:
                    self.source.secrets[value] = name
                return value
            if default is not None:
                return default
            self._bad(loc, f"environment variable {name} is not set (or write ${{{name}:-default}})")
            return m[0]

        return _ENV.sub(one, text)

    def _bad(self, loc: Loc, message: str) -> None:
        self.problems.append(self.source.problem(loc, message, "value"))


# -- validation with messages people can act on -------------------------------------------------

_EXPECTED = {
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "int_parsing_size": "expected a whole number of at most 4,300 digits",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "datetime_type": "expected a date and time such as 2026-12-01T09:00:00Z",
    "datetime_parsing": "expected a date and time such as 2026-12-01T09:00:00Z",
    "datetime_from_date_parsing": "expected a date and time such as 2026-12-01T09:00:00Z",
}


M = TypeVar("M", bound=BaseModel)


def validate(cls: type[M], raw: Any, loc: Loc, source: Source, problems: list[Problem]) -> M | None:
    """Validate one entry written at `loc`; its problems go to `problems`."""
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        for err in e.errors(include_url=False):
            problems.append(_problem(cls, err, loc, source))
        return None


def _problem(cls: type[BaseModel], err: Any, prefix: Loc, source: Source) -> Problem:
    kind: str = err["type"]
    rel: Loc = tuple(err["loc"])
    got = err.get("input")
    if kind == "extra_forbidden":
        allowed = ", ".join(sorted(_properties(cls, rel[:-1])))
        return source.problem((*prefix, *rel), f"unknown key; allowed here: {allowed}")
    if kind == "missing":
        return source.problem((*prefix, *rel[:-1]), f"missing required key '{rel[-1]}'")
    if rel and rel[-1] == "[key]":
        return source.problem((*prefix, *rel[:-1]), f"'{got}' is not a valid name: {NAME_RULE}", "key")
    loc = (*prefix, *rel)
    if kind == "literal_error":
        message = f"expected one of {err['ctx']['expected']}"
    elif kind == "string_pattern_mismatch":
        message = (
            NAME_RULE if "A-Za-z0-9][" in err["ctx"]["pattern"] else f"must match {err['ctx']['pattern']}"
        )
    elif kind in ("too_short", "string_too_short"):
        n = err["ctx"]["min_length"]
        unit = ("character" if isinstance(got, str) else "item") + ("s" if n != 1 else "")
        return source.problem(loc, f"too short: expected at least {n} {unit}", "value")
    elif kind in _EXPECTED:
        message = _EXPECTED[kind]
    else:
        message = str(err["msg"]).removeprefix("Value error, ").replace("Input should", "should")
        return source.problem(loc, message, "value" if kind != "manifest" else "key")
    if loc not in source.from_env and isinstance(got, str | int | float | bool) and len(str(got)) < 60:
        message += f", got {got!r}"
    return source.problem(loc, message, "value")


NAME_RULE = "use letters, digits, '_' and '-' (at most 64, starting with a letter or digit)"


@cache
def _schema(cls: type[BaseModel]) -> dict[str, Any]:
    return cls.model_json_schema()


def _properties(cls: type[BaseModel], loc: Loc) -> list[str]:
    """The keys allowed at `loc` inside `cls`, read off its JSON Schema."""
    schema = _schema(cls)

    def deref(node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        for branch in node.get("anyOf", []):
            if branch.get("type") != "null":
                return deref(branch)
        return node

    node = deref(schema)
    for part in loc:
        if isinstance(part, int):
            node = deref(node.get("items", {}))
        elif part in node.get("properties", {}):
            node = deref(node["properties"][part])
        else:
            nested = [*node.get("patternProperties", {}).values(), node.get("additionalProperties")]
            node = deref(next((n for n in nested if isinstance(n, dict)), {}))
    return list(node.get("properties", {}))
