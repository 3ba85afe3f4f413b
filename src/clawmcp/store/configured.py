"""The store a manifest asks for: `host.store` (else $CLAWMCP_STORE), SQLite by default."""

from __future__ import annotations

from clawmcp.errors import UserError
from clawmcp.manifest import Manifest
from clawmcp.store import Clock, Store
from clawmcp.store.sqlite import SqliteStore

__all__ = ["configured_store"]


def configured_store(manifest: Manifest, clock: Clock) -> Store:
    """`data_dir/state.db` for `sqlite`, else the PostgreSQL database of the URL."""
    url = manifest.store
    if url == "sqlite":
        return SqliteStore(manifest.data_dir / "state.db", clock=clock)
    if not url.startswith(("postgresql://", "postgres://")):
        raise UserError(f"CLAWMCP_STORE: expected sqlite or a postgresql:// URL, got '{url[:40]}'")
    try:
        from clawmcp.store.postgres import PostgresStore
    except ImportError:
        raise UserError(
            "host.store is a PostgreSQL URL but asyncpg is not installed: pip install 'clawmcp[postgres]'"
        ) from None
    return PostgresStore(url, clock=clock)
