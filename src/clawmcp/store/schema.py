"""The numbered migration files of a store's schema (`migrations/` for SQLite, `pg_migrations/`
for PostgreSQL): `0001_initial.sql`, `0002_events.sql`, ..., applied in order at open."""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass

__all__ = ["Migration", "load_migrations"]


@dataclass(frozen=True)
class Migration:
    version: int
    file: str
    sql: str


def load_migrations(folder: str) -> list[Migration]:
    """The migrations in `folder` (next to this module), by version; they must be numbered 1, 2, 3, ..."""
    found = []
    for entry in importlib.resources.files("clawmcp.store").joinpath(folder).iterdir():
        if match := re.fullmatch(r"(\d{4})_\w+\.sql", entry.name):
            found.append(Migration(int(match[1]), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1, 2, 3, ...: {[m.file for m in found]}")
    return found
