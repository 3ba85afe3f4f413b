"""A host's address: `HOST:PORT` as `host.listen` writes it, and the URL a local client uses.

Small on purpose: the CLI imports it to find the running host without loading the MCP SDK.
"""

from __future__ import annotations

import ipaddress

__all__ = ["host_url", "loopback", "split_listen"]


def loopback(address: str) -> bool:
    """Whether an address (as `split_listen` gives it) reaches this machine only."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def split_listen(listen: str) -> tuple[str, int]:
    """`127.0.0.1:8765` → (`127.0.0.1`, 8765); `[::1]:8765` → (`::1`, 8765)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def host_url(listen: str) -> str:
    """The URL a local client uses for a host listening on `listen` (any address means loopback)."""
    address, port = split_listen(listen)
    address = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(address, address)
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"
