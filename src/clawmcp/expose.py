"""Every Claw an MCP server (DESIGN §4), and the host-level server that reaches all of them.

A Claw's server offers `ask`, `tell`, `status`, `schedule`, `unschedule`, `schedules`, its allowed
tools when `expose.tools` is true, and the `claw://NAME/...` resources. It serves both protocol
eras: handshake sessions hear of tool list changes by notification, 2026-era clients through
`subscriptions/listen`. The same server object runs over stdio, streamable HTTP and SSE.
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import mcp_types as types
from mcp.server.connection import Connection
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated, ToolsListChanged
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import INVALID_PARAMS
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from clawmcp import __version__
from clawmcp.approvals import ASKER, Reply, describe
from clawmcp.arguments import invalid_arguments
from clawmcp.errors import ClawError, UserError
from clawmcp.manifest import Claw
from clawmcp.scheduler import SCHEDULE_SCHEMA
from clawmcp.service import Service
from clawmcp.store import Event, Run, Step

__all__ = [
    "RESOURCE_NOT_FOUND",
    "ClawServer",
    "HostServer",
    "ServerBase",
    "no_resource",
    "progress_to",
    "run_text",
]

RESOURCE_NOT_FOUND = -32002
TASKS = "io.modelcontextprotocol/tasks"
_MESSAGE = {"type": "string", "minLength": 1, "description": "what to say to the Claw"}
_THREAD = {"type": "string", "minLength": 1, "default": "default", "description": "conversation name"}
_KEY = {
    "type": "string",
    "minLength": 1,
    "description": "idempotency key: a retry with it queues nothing new",
}


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_CLAW_TOOLS = [
    types.Tool(
        name="ask",
        description="Run the Claw on a message and return its reply. Progress is reported per step.",
        input_schema=_schema({"message": _MESSAGE, "thread": _THREAD}, ["message"]),
    ),
    types.Tool(
        name="tell",
        description="Queue a message for the Claw and return its id at once; the Claw handles it later.",
        input_schema=_schema({"message": _MESSAGE, "thread": _THREAD, "key": _KEY}, ["message"]),
    ),
    types.Tool(
        name="status",
        description="The Claw's state, model, tools, schedules, mailbox depth and last runs.",
        input_schema=_schema({}, []),
    ),
    types.Tool(
        name="schedule",
        description="Add (or replace, by name) a schedule: every, cron or at; prompt, send or call.",
        input_schema=SCHEDULE_SCHEMA,
    ),
    types.Tool(
        name="unschedule",
        description="Remove one of this Claw's schedules by id.",
        input_schema=_schema({"id": {"type": "integer"}}, ["id"]),
    ),
    types.Tool(name="schedules", description="This Claw's schedules.", input_schema=_schema({}, [])),
]
_APPROVALS = types.Tool(
    name="approvals",
    description="Tool calls waiting for a person's approval (id, tool, exact arguments, run) and tool "
    "servers' questions (kind question: message and schema).",
    input_schema=_schema({}, []),
)
_DECIDE = types.Tool(
    name="decide",
    description="Approve or deny a waiting tool call by id, or answer a tool server's question (approve "
    "with its content, or decline); the run goes on (a denial, with the note, is what the model sees).",
    input_schema=_schema(
        {
            "id": {"type": "integer"},
            "approve": {"type": "boolean"},
            "note": {"type": "string"},
            "content": {"type": "object", "description": "a question's answer, in its schema"},
        },
        ["id", "approve"],
    ),
)
_ID = {"type": "integer", "minimum": 1, "description": "the message id that tell returned (or ask reported)"}
_RESULT = types.Tool(
    name="result",
    description="What became of a message told or asked: its state (queued, running, waiting, done, "
    "failed, dead, cancelled), its reply or error and its run. With wait (seconds), waits up to "
    "then for it to end.",
    input_schema=_schema(
        {"message_id": _ID, "wait": {"type": "number", "minimum": 0, "maximum": 3600, "default": 0}},
        ["message_id"],
    ),
)
_CANCEL = types.Tool(
    name="cancel",
    description="Cancel a message: queued, it is dropped; running, its run is stopped; waiting for "
    "an approval, the approval is withdrawn.",
    input_schema=_schema({"message_id": _ID}, ["message_id"]),
)
_CLAW_TOOLS += [_APPROVALS, _DECIDE, _RESULT, _CANCEL]


def no_resource(ctx: Any, text: str) -> MCPError:
    """The error for an unknown resource, in the code of the request's era."""
    modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
    return MCPError(INVALID_PARAMS if modern else RESOURCE_NOT_FOUND, text)


def run_text(run: Run) -> tuple[str, bool]:
    """A finished run as a tool result: its reply, or what stopped it."""
    if run.state == "done":
        return run.reply or "", False
    return f"run {run.id} ended {run.state}: {run.error}", True


def progress_to(ctx: Any) -> ProgressFnT:
    """A progress callback that passes what it hears on to the client of the request `ctx`."""

    async def forward(progress: float, total: float | None, message: str | None) -> None:
        await ctx.session.report_progress(progress, total, message)

    return forward


def _text(
    text: str, is_error: bool = False, structured: dict[str, Any] | None = None
) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], is_error=is_error, structured_content=structured
    )


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)


def _check(tool: types.Tool, arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments with their defaults, or `UserError` saying what is wrong with them."""
    if problem := invalid_arguments(tool.input_schema, arguments):
        raise UserError(f"{tool.name}: {problem}")
    props = tool.input_schema.get("properties", {})
    return {k: p["default"] for k, p in props.items() if "default" in p} | arguments


async def _ask_or_tell(
    service: Service, ctx: Any, verb: str, claw: str, args: dict[str, Any]
) -> types.CallToolResult | dict[str, Any]:
    """`ask` (progress per step; a task for a client of the Tasks extension) or `tell`, for a
    Claw's server and the host's alike."""
    if verb == "tell":
        message = await service.tell(claw, args["message"], thread=args["thread"], key=args.get("key"))
        return _text(f"queued as message {message.id}", structured={"message_id": message.id})
    if _tasks(ctx):
        message_id = await service.ask_later(claw, args["message"], thread=args["thread"])
        created = _task(await service.result(message_id))
        return {"resultType": "task"} | {k: v for k, v in created.items() if k != "result"}

    async def told(message_id: int) -> None:  # the first word: what to fetch if the line drops
        await ctx.session.report_progress(0, None, f"message {message_id}")

    token = ASKER.set(_Asker(ctx.session) if _elicits(ctx) else None)
    try:
        run = await service.ask(
            claw,
            args["message"],
            thread=args["thread"],
            on_step=lambda step: _progress(ctx, step),
            on_message=told,
        )
    finally:
        ASKER.reset(token)
    return _text(*run_text(run))


async def _follow_up(
    service: Service, name: str, args: dict[str, Any], reaches: Callable[[str], bool]
) -> types.CallToolResult:
    """`result` or `cancel` of a message of a Claw `reaches` admits."""
    if name == "result":
        found = await service.result(args["message_id"], wait=args["wait"], reaches=reaches)
    else:
        found = await service.cancel(args["message_id"], reaches=reaches)
    return _text(_json(found), structured=found)


def _tasks(ctx: Any) -> bool:
    """Whether the client of a request declared the Tasks extension (2026 era, on the request)."""
    caps = ctx.session.client_capabilities
    modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
    return modern and bool(caps and caps.extensions and TASKS in caps.extensions)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def _task(found: dict[str, Any]) -> dict[str, Any]:
    """A message's outcome (`Service.result`) as a task of the Tasks extension: the task is the
    message, its id the message's. A run's reply, or its error, is the completed task's result
    (an error result is a completed task too); until then it is working."""
    state = found["state"]
    status = {"done": "completed", "failed": "completed", "dead": "completed"}.get(state, "working")
    status = "cancelled" if state in ("cancelled", "discarded") else status
    task: dict[str, Any] = {
        "taskId": str(found["message_id"]),
        "status": status,
        "createdAt": _iso(found["created_at"]),
        "lastUpdatedAt": _iso(found["updated_at"]),
        "ttlMs": None,  # kept with the message
        "pollIntervalMs": 1000,
    }
    if state == "waiting":
        task["statusMessage"] = "waiting for a person's decision (the approvals tool, or clawmcp approvals)"
    if status == "completed":
        ended = f"message {found['message_id']} ended {state}: {found['error']}"
        result = _text(found["reply"] or "" if state == "done" else ended, is_error=state != "done")
        task["result"] = result.model_dump(by_alias=True, exclude_none=True)
    return task


class _TaskId(types.RequestParams):
    task_id: str


def _elicits(ctx: Any) -> bool:
    """Whether the client of a request answers form elicitation (an empty `elicitation` means
    form too) while the request runs: in the handshake era. (A 2026-era request has no channel
    back to its client but an input-required result, which a long run cannot wait in.)"""
    caps = ctx.session.client_capabilities
    found = caps.elicitation if caps else None
    modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
    return not modern and found is not None and (found.form is not None or found.url is None)


class _Asker:
    """The client of an `ask`, asked for what a run needs from a person (`clawmcp.approvals`)."""

    def __init__(self, session: Any) -> None:
        self.session = session

    async def elicit(self, message: str, schema: dict[str, Any]) -> Reply:
        result = await self.session.elicit_form(message, schema)
        return result.action, result.content


async def _inbox(
    service: Service, name: str, args: dict[str, Any], reaches: Callable[[str], bool]
) -> types.CallToolResult:
    """`approvals` or `decide`, over the Claws `reaches` admits."""
    if name == "approvals":
        found = [describe(a) for a in await service.approvals() if reaches(a.claw)]
        return _text(_json(found), structured={"approvals": found})
    approval = await service.approval(args["id"])
    if approval is None or not reaches(approval.claw):
        raise UserError(f"no approval {args['id']}")
    decided = await service.decide(
        approval.id, args["approve"], note=args.get("note"), content=args.get("content")
    )
    return _text(f"approval {decided.id} ({decided.tool}): {decided.state}", structured=describe(decided))


async def _progress(ctx: Any, step: Step) -> None:
    if step.kind == "approval":
        text = f"waiting for approval {step.data['id']}: {step.data['name']}"
    else:
        what = {"model": "model turn", "tool_call": "calling", "tool_result": "result of"}[step.kind]
        name = step.data.get("name", "") if isinstance(step.data, dict) else ""
        text = f"{what} {name}".strip()
    await ctx.session.report_progress(step.index + 1, None, text)


BRIEF = "brief-me"


def instructions_for(claw: str, config: Any) -> str:
    """A Claw server's instructions: what it is for, its schedules, its peers, and when to use
    `ask` rather than `tell`."""
    lines = [config.description or f"The Claw '{claw}'."]
    for s in config.schedules:
        when = f"every {s.every:g}s" if s.every else f"cron '{s.cron}'" if s.cron else f"at {s.at}"
        what = f"asks: {s.prompt}" if s.prompt else "calls a tool" if s.call else "sends a message"
        lines.append(f"Schedule '{s.name}' ({when}) {what}.")
    if config.talks_to:
        lines.append(f"It may message these Claws: {', '.join(config.talks_to)}.")
    if config.subscribe:
        lines.append(f"It receives these topics: {', '.join(config.subscribe)}.")
    lines.append(
        "Use ask to wait for its reply (progress per step; the first names the message, whose "
        "reply result fetches if the connection drops). Use tell to queue work and return at "
        "once; follow it with result, stop it with cancel. status, approvals and the claw:// "
        "resources (subscribe to follow them) show what it is doing."
    )
    return "\n".join(lines)


class _Server(Server[Any]):
    """A low-level server that tells handshake clients it sends tool list changes."""

    def create_initialization_options(self, notification_options: Any = None, *args: Any, **kw: Any) -> Any:
        options = notification_options or NotificationOptions(tools_changed=True)
        return super().create_initialization_options(options, *args, **kw)


async def _set_level_in_every_era(ctx: Any, call_next: Any) -> Any:
    """`logging/setLevel` is answered in the 2026 era too (it dropped the method, but clients of
    both eras send it), as in the handshake era: a Claw sends no log notifications either way."""
    if ctx.method == "logging/setLevel" and ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return types.EmptyResult()
    return await call_next(ctx)


class ServerBase:
    """What every server of ours shares: tool dispatch, errors as results, and change
    notifications to clients of both eras. Subclasses give `tools` and `call`."""

    def __init__(self, name: str, instructions: str) -> None:
        self.bus = InMemorySubscriptionBus()
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._listener = ListenHandler(self.bus)
        self._subscribed: dict[str, weakref.WeakSet[Connection]] = {}
        """Handshake-era `resources/subscribe`: the connections that follow each URI."""
        with warnings.catch_warnings():  # logging/setLevel is deprecated in the 2026 era; we answer it
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            self.server = _Server(
                name,
                version=__version__,
                instructions=instructions,
                on_list_tools=self._list_tools,
                on_call_tool=self._call_tool,
                on_subscriptions_listen=self._listen,
                **self._resource_handlers(),
                **self._subscription_handlers(),
            )
        self.server.middleware.append(_set_level_in_every_era)

    def _resource_handlers(self) -> dict[str, Any]:
        return {}

    async def _listen(self, ctx: Any, params: types.SubscriptionsListenRequestParams) -> Any:
        """A 2026-era client's `subscriptions/listen`: the stream of what it follows."""
        await self.follow(list(params.notifications.resource_subscriptions or ()))
        return await self._listener(ctx, params)

    def _subscription_handlers(self) -> dict[str, Any]:
        """`resources/subscribe` and `unsubscribe` for handshake-era clients (2026-era clients
        use `subscriptions/listen`). Any URI may be followed; only ours ever change."""

        async def subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
            await self.follow([str(params.uri)])
            self._subscribed.setdefault(str(params.uri), weakref.WeakSet()).add(ctx.session._connection)
            return types.EmptyResult()

        async def unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
            if (followers := self._subscribed.get(str(params.uri))) is not None:
                followers.discard(ctx.session._connection)
            return types.EmptyResult()

        return {"on_subscribe_resource": subscribe, "on_unsubscribe_resource": unsubscribe}

    async def follow(self, uris: list[str]) -> None:
        """A client follows `uris` (a bridge follows them where they change)."""

    async def updated(self, uri: str) -> None:
        """Tell the clients of both eras that follow `uri` that it changed."""
        await self.bus.publish(ResourceUpdated(uri))
        for connection in list(self._subscribed.get(uri, ())):
            try:
                await connection.outbound.notify("notifications/resources/updated", {"uri": uri})
            except Exception:  # a client that went away: forget it
                self._subscribed[uri].discard(connection)

    async def tools(self) -> list[types.Tool]:
        raise NotImplementedError

    async def call(self, ctx: Any, name: str, arguments: dict[str, Any]) -> Any:
        """A tool's result: a `CallToolResult`, or a task's creation (see `_task`)."""
        raise NotImplementedError

    def _remember(self, ctx: Any) -> None:
        """Keep the handshake-era connections, to notify them later. A request's `ServerSession`
        lives only as long as the request; the connection behind it (not yet public in the SDK)
        lasts as long as the client stays."""
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._connections.add(ctx.session._connection)

    async def _list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        self._remember(ctx)
        return types.ListToolsResult(tools=await self.tools())

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> Any:
        self._remember(ctx)
        try:
            return await self.call(ctx, params.name, params.arguments or {})
        except ClawError as e:
            return _text(str(e), is_error=True)

    def _serve_tasks(self, service: Service, reaches: Callable[[Any, str], bool]) -> None:
        """Serve the Tasks extension (2026 era) for `ask`: `tasks/get`, `tasks/cancel` and
        `tasks/update` of the messages of the Claws `reaches(ctx, claw)` admits."""

        async def outcome(ctx: Any, params: _TaskId) -> dict[str, Any]:
            if not _tasks(ctx):
                required: dict[str, Any] = {"requiredCapabilities": {"extensions": {TASKS: {}}}}
                raise MCPError(-32021, f"tasks need the {TASKS} extension on the request", required)
            try:
                return await service.result(int(params.task_id), reaches=lambda c: reaches(ctx, c))
            except (ValueError, UserError):
                raise MCPError(INVALID_PARAMS, f"no task '{params.task_id}'") from None

        async def get(ctx: Any, params: _TaskId) -> dict[str, Any]:
            return _task(await outcome(ctx, params))

        async def cancel(ctx: Any, params: _TaskId) -> dict[str, Any]:
            if _task(await outcome(ctx, params))["status"] == "working":
                with contextlib.suppress(UserError):  # it ended meanwhile
                    await service.cancel(int(params.task_id))
            return {}

        async def update(ctx: Any, params: _TaskId) -> dict[str, Any]:
            await outcome(ctx, params)
            raise MCPError(INVALID_PARAMS, f"task {params.task_id} asks for no input")

        self.server.extensions[TASKS] = {}
        for method, handler in (("tasks/get", get), ("tasks/cancel", cancel), ("tasks/update", update)):
            self.server.add_request_handler(method, _TaskId, handler)

    async def tools_changed(self) -> None:
        """Tell connected clients of both eras that the tool list changed."""
        await self.bus.publish(ToolsListChanged())
        for connection in list(self._connections):
            try:
                await connection.outbound.notify("notifications/tools/list_changed", None)
            except Exception:  # a client that went away: forget it, notify the others
                self._connections.discard(connection)


class ClawServer(ServerBase):
    """The MCP server of one Claw."""

    def __init__(self, service: Service, claw: str) -> None:
        self.claw = claw
        self.service = service
        self._config = service.manifest.claws[claw]
        super().__init__(f"clawmcp-{claw}", instructions_for(claw, self.config))
        self._serve_tasks(service, lambda ctx, c: c == claw)
        self._shown = self._exposed()

    @property
    def config(self) -> Claw:
        """The Claw's definition as the manifest has it now (after a reload too; the last one
        seen once a reload has removed the Claw)."""
        self._config = self.service.manifest.claws.get(self.claw, self._config)
        return self._config

    def refresh(self) -> None:
        """The Claw's definition changed (a reload): new sessions get its instructions as they
        are now. (Its exposed tools follow the catalog, which a reload builds again.)"""
        self.server.instructions = instructions_for(self.claw, self.config)

    def _exposed(self) -> dict[str, types.Tool]:
        if not self.config.expose.tools:
            return {}
        return {
            t.wire: types.Tool(
                name=t.wire,
                title=t.title,
                description=t.description,
                input_schema=t.input_schema,
                output_schema=t.output_schema,
                annotations=types.ToolAnnotations.model_validate(t.annotations) if t.annotations else None,
                icons=[types.Icon.model_validate(i) for i in t.icons] or None,
            )
            for t in self.service.tools_for(self.claw)
        }

    async def watch(self) -> None:
        """Notify clients whenever the hub's catalog changes what this Claw exposes, and when
        the Claw's resources change."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._follow)
            while True:
                changed = self.service.catalog_changed
                exposed = self._exposed()
                if exposed != self._shown:
                    self._shown = exposed
                    await self.tools_changed()
                await changed.wait()

    async def _follow(self) -> None:
        """Each event of the Claw, as it is committed, tells the followers of the resources it
        changed. (A follower that fell behind the log is dropped by it: follow it again.)"""
        while True:
            with self.service.follow() as live:
                async for event in live:
                    if event.claw == self.claw:
                        for uri in self._changed_by(event):
                            await self.updated(uri)

    def _changed_by(self, event: Event) -> list[str]:
        """The Claw's resources that an event tells of a change to."""
        base, data, kind = f"claw://{self.claw}", event.data, event.kind
        uris = [] if kind == "model" else [f"{base}/status"]
        key = {"run": "message", "model": "message", "delivery": "id", "message": "id"}.get(kind)
        if key is not None and data.get(key) is not None:
            uris.append(f"{base}/runs/{data[key]}")
        if kind == "run" and data.get("state") not in ("running", "waiting"):
            uris.append(f"{base}/history/{data.get('thread')}")
        if kind == "approval" or (kind == "run" and data.get("state") == "cancelled"):
            uris.append(f"{base}/approvals")
        if kind == "fire":
            uris.append(f"{base}/schedules")
        return uris

    async def tools(self) -> list[types.Tool]:
        return _CLAW_TOOLS + list(self._shown.values())

    async def call(self, ctx: Any, name: str, arguments: dict[str, Any]) -> Any:
        service, claw = self.service, self.claw
        if (exposed := self._shown.get(name)) is not None:  # checked like every call, progress passed on
            if problem := invalid_arguments(exposed.input_schema, arguments):
                raise UserError(f"{name}: {problem}")

            return await service.call_tool(claw, name, arguments, progress=progress_to(ctx))
        tool = next((t for t in _CLAW_TOOLS if t.name == name), None)
        if tool is None:
            raise UserError(f"Claw '{claw}' has no tool '{name}'")
        args = _check(tool, arguments)
        if name in ("ask", "tell"):
            return await _ask_or_tell(service, ctx, name, claw, args)
        if name in ("approvals", "decide"):
            return await _inbox(service, name, args, lambda c: c == claw)
        if name in ("result", "cancel"):
            return await _follow_up(service, name, args, lambda c: c == claw)
        if name == "status":
            return _text(_json(await service.status(claw)))
        if name == "schedule":
            schedule = await service.schedule(claw, args)
            await self.updated(f"claw://{claw}/schedules")
            return _text(
                f"schedule '{schedule.name}' saved as id {schedule.id}", structured={"id": schedule.id}
            )
        if name == "unschedule":
            await service.unschedule(claw, args["id"])
            await self.updated(f"claw://{claw}/schedules")
            return _text(f"schedule {args['id']} removed")
        return _text(_json(await service.schedules(claw)))

    # -- resources ---------------------------------------------------------------------------

    def _resource_handlers(self) -> dict[str, Any]:
        return {
            "on_list_resources": self._list_resources,
            "on_list_resource_templates": self._list_templates,
            "on_read_resource": self._read_resource,
            "on_completion": self._complete,
            "on_list_prompts": self._list_prompts,
            "on_get_prompt": self._get_prompt,
            "on_set_logging_level": self._set_logging_level,
        }

    def _prompts(self) -> dict[str, tuple[types.Prompt, str]]:
        """Each prompt of the Claw with the text of its one user message: "brief-me" (whose text
        takes the status when it is asked for), and the ask of each of its prompt schedules."""
        claw = self.claw
        brief = f"What the Claw '{claw}' did lately, what failed, what waits for a person and what comes next"
        prompts = {BRIEF: (types.Prompt(name=BRIEF, title=f"Brief me on {claw}", description=brief), brief)}
        for s in self.config.schedules:
            if s.prompt is not None and s.name != BRIEF:
                prompt = types.Prompt(
                    name=s.name, description=f"What the schedule '{s.name}' asks; ask it now."
                )
                prompts[s.name] = (
                    prompt,
                    f"Use the ask tool of the Claw '{claw}' with this message: {s.prompt}",
                )
        return prompts

    async def _list_prompts(self, ctx: Any, params: Any) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[p for p, _ in self._prompts().values()])

    async def _get_prompt(self, ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        found = self._prompts().get(params.name)
        if found is None:
            raise MCPError(INVALID_PARAMS, f"Claw '{self.claw}' has no prompt '{params.name}'")
        prompt, text = found
        if prompt.name == BRIEF:
            text = f"Brief me: {text}. Its status now:\n\n{_json(await self.service.status(self.claw))}"
        message = types.PromptMessage(role="user", content=types.TextContent(type="text", text=text))
        return types.GetPromptResult(description=prompt.description, messages=[message])

    async def _complete(self, ctx: Any, params: types.CompleteRequestParams) -> types.CompleteResult:
        """Thread names for the history template; nothing else has values to offer."""
        values: list[str] = []
        ref = params.ref
        if isinstance(ref, types.ResourceTemplateReference) and ref.uri.endswith("/history/{thread}"):
            threads = await self.service.threads(self.claw)
            values = [t for t in threads if t.startswith(params.argument.value)]
        return types.CompleteResult(
            completion=types.Completion(values=values[:100], total=len(values), has_more=len(values) > 100)
        )

    async def _set_logging_level(self, ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
        # Accepted for handshake-era clients; a Claw sends no log notifications (its steps come as
        # progress), so every level is honoured.
        return types.EmptyResult()

    async def _list_resources(self, ctx: Any, params: Any) -> types.ListResourcesResult:
        base = f"claw://{self.claw}"
        return types.ListResourcesResult(
            resources=[
                types.Resource(name=f"{self.claw} {part}", uri=f"{base}/{part}", mime_type="application/json")
                for part in ("status", "memory", "schedules", "approvals")
            ]
        )

    async def _list_templates(self, ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
        templates = [
            types.ResourceTemplate(
                name=f"{self.claw} {part}",
                uri_template=f"claw://{self.claw}/{part}/{{{key}}}",
                description=description,
                mime_type="application/json",
            )
            for part, key, description in [
                ("history", "thread", "the messages of one thread"),
                ("runs", "message_id", "what became of a message: state, reply, and its run's steps"),
            ]
        ]
        return types.ListResourceTemplatesResult(resource_templates=templates)

    async def _read_resource(
        self, ctx: Any, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        parts = "status|memory|schedules|approvals|history/(.+)|runs/([0-9]+)"
        match = re.fullmatch(rf"claw://{re.escape(self.claw)}/({parts})", uri)
        missing = no_resource(ctx, f"no resource '{uri}' (Claw '{self.claw}')")
        if not match:
            raise missing
        service = self.service
        if match[1] == "status":
            value: Any = await service.status(self.claw)
        elif match[1] == "memory":
            value = [
                {"id": n.id, "key": n.key, "text": n.text, "at": n.at} for n in await service.notes(self.claw)
            ]
        elif match[1] == "schedules":
            value = await service.schedules(self.claw)
        elif match[1] == "approvals":
            value = [describe(a) for a in await service.approvals(self.claw)]
        elif match[3] is not None:
            try:
                value = await service.result(int(match[3]), reaches=lambda c: c == self.claw)
            except UserError:
                raise missing from None
            steps = await service.steps(value["run_id"]) if value["run_id"] else []
            value["steps"] = [{"index": s.index, "kind": s.kind, "data": s.data, "at": s.at} for s in steps]
        else:
            entries = await service.history(self.claw, match[2], limit=200)
            value = [{"role": e.role, "content": e.content, "run": e.run_id, "at": e.at} for e in entries]
        contents = types.TextResourceContents(uri=uri, mime_type="application/json", text=_json(value))
        return types.ReadResourceResult(contents=[contents])


_HOST_TOOLS = [
    types.Tool(
        name="claws", description="The Claws of this host, with their state.", input_schema=_schema({}, [])
    ),
    types.Tool(
        name="ask",
        description="Run a Claw on a message and return its reply.",
        input_schema=_schema(
            {"claw": {"type": "string"}, "message": _MESSAGE, "thread": _THREAD}, ["claw", "message"]
        ),
    ),
    types.Tool(
        name="tell",
        description="Queue a message for a Claw and return its id at once.",
        input_schema=_schema(
            {"claw": {"type": "string"}, "message": _MESSAGE, "thread": _THREAD, "key": _KEY},
            ["claw", "message"],
        ),
    ),
    _APPROVALS,
    _DECIDE,
    *(
        t.model_copy(
            update={
                "input_schema": _schema(
                    t.input_schema["properties"] | {"claw": {"type": "string"}}, ["claw", "message_id"]
                )
            }
        )
        for t in (_RESULT, _CANCEL)
    ),
]


class HostServer(ServerBase):
    """The host-level server at `/mcp`: lists the Claws and can ask or tell any it may reach."""

    def __init__(self, service: Service, reaches: Callable[[Any, str], bool]) -> None:
        """`reaches(request, claw)`: whether the request (None over stdio) may reach the Claw."""
        self.service = service
        super().__init__("clawmcp", "A clawmcp host: list its Claws, ask or tell any of them.")
        self.reaches = reaches
        self._serve_tasks(service, lambda ctx, c: reaches(ctx.request, c))

    async def tools(self) -> list[types.Tool]:
        return _HOST_TOOLS

    async def call(self, ctx: Any, name: str, arguments: dict[str, Any]) -> Any:
        tool = next((t for t in _HOST_TOOLS if t.name == name), None)
        if tool is None:
            raise UserError(f"the host has no tool '{name}'")
        args = _check(tool, arguments)
        service, request = self.service, ctx.request
        if name == "claws":
            names = [c for c in sorted(service.manifest.claws) if self.reaches(request, c)]
            return _text(_json([await service.status(c) for c in names]))
        if name in ("approvals", "decide"):
            return await _inbox(service, name, args, lambda c: self.reaches(request, c))
        claw = args["claw"]
        service.manifest.check_claw(claw)
        if not self.reaches(request, claw):
            raise UserError(f"this token does not reach Claw '{claw}'")
        if name in ("result", "cancel"):
            return await _follow_up(service, name, args, lambda c: c == claw)
        return await _ask_or_tell(service, ctx, name, claw, args)
