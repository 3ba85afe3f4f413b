"""clawmcp: an MCP-native host for persistent AI agents (Claws)."""

__version__ = "0.1.0"
