"""Where a Claw's reasoning comes from: one small interface, three providers.

A provider turns a conversation (system text, messages, the tools on offer) into the model's next
`Turn`: text, tool calls, or both. `openai` and `anthropic` speak their wire formats over httpx2
(no vendor SDKs); `scripted` follows the manifest's rules and needs no network. `providers`
starts them for a manifest; this package itself loads no HTTP library, so the runtime can use
its types.

The conversation is provider-neutral: a `Msg` is the user's text, an assistant turn (text and tool
calls), or the results of one turn's tool calls. Each provider maps it to its own format.
"""

from __future__ import annotations

from clawmcp.models.base import Msg, Provider, ToolRequest, ToolResult, ToolSpec, Turn

__all__ = ["Msg", "Provider", "ToolRequest", "ToolResult", "ToolSpec", "Turn"]
