"""The manifest format (DESIGN §2) as pydantic models; their JSON Schema is `clawmcp schema`.

Checks that need one entry only live here; checks across entries (a Claw's model exists, ...)
live in `check.py`, where every entry is known.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "NAME_PATTERN",
    "PLACEHOLDER",
    "TEMPLATE",
    "Call",
    "Claw",
    "Host",
    "ManifestFile",
    "Model",
    "Rule",
    "Schedule",
    "Send",
    "Server",
    "Supervision",
    "Tool",
    "Trigger",
    "parse_duration",
    "placeholders",
    "render",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
WIRE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """`500ms`, `30s`, `15m`, `1h`, `2d` → seconds."""
    if isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m[1]) * _UNITS[m[2]]
        if seconds > 0:
            return seconds
    raise PydanticCustomError(
        "duration",
        "expected a duration above zero such as 500ms, 30s, 15m, 1h or 2d, got {got}",
        {"got": repr(value)},
    )


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"type": "string", "pattern": _DURATION.pattern, "examples": ["30s", "15m"]}),
]


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("manifest", message)


def _one_of(model: BaseModel, keys: tuple[str, ...], what: str = "") -> str:
    given = [k for k in keys if getattr(model, k) is not None]
    if len(given) != 1:
        names = ", ".join(f"'{k}'" for k in keys)
        found = f" (found {', '.join(given)})" if given else ""
        raise _fail(f"{what + ': ' if what else ''}give exactly one of {names}{found}")
    return given[0]


PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(text: str) -> list[str]:
    """The `{name}` fields of a command or URL template (other braces are left alone)."""
    return PLACEHOLDER.findall(text)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- host --------------------------------------------------------------------------------------


class Token(_Strict):
    name: Name
    token: SecretStr = Field(min_length=16, description="at least 16 characters; use ${VAR}")
    claws: list[str] = Field(default=["*"], description="glob patterns of the Claws it reaches")


class Auth(_Strict):
    tokens: list[Token] = []


class Supervision(_Strict):
    strategy: Literal["one_for_one", "one_for_all", "rest_for_one"] = Field(
        default="one_for_one", description="which children restart with a crashed one"
    )
    intensity: int = Field(default=5, ge=0, description="restarts within period before a child is failed")
    period: Duration = 60.0
    backoff: Duration = Field(default=0.5, description="wait before the first restart; doubles")
    max_backoff: Duration = 30.0


class Alerts(_Strict):
    """Where failures go as messages: to one Claw, or to a topic's subscribers."""

    to: Name | None = Field(default=None, description="the Claw that hears of failures")
    topic: str | None = Field(default=None, description="or a topic, to each Claw subscribed to it")

    @model_validator(mode="after")
    def _shape(self) -> Alerts:
        _one_of(self, ("to", "topic"))
        return self


class Host(_Strict):
    listen: str = Field(default="127.0.0.1:8765", description="HOST:PORT for HTTP")
    data_dir: str | None = Field(default=None, description="default $CLAWMCP_HOME or ~/.clawmcp")
    auth: Auth = Auth()
    allowed_hosts: list[str] = []
    supervision: Supervision = Supervision()
    store: str = Field(
        default="sqlite",
        description="sqlite (data_dir/state.db) or a postgresql:// URL shared by several hosts",
    )
    name: str = Field(default="", description="unique among the hosts of one store; default: machine:port")
    lease: Duration = Field(default=10.0, description="a host not heard from this long loses its Claws")
    alerts: Alerts | None = Field(
        default=None, description="failed runs, dead letters, failed fires and tool servers, as messages"
    )

    @field_validator("store")
    @classmethod
    def _store(cls, v: str) -> str:
        if v != "sqlite" and not v.startswith(("postgresql://", "postgres://")):
            raise _fail("expected sqlite or a postgresql://USER:PASSWORD@HOST:PORT/DATABASE URL")
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, _, port = v.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise _fail(f"expected HOST:PORT such as 127.0.0.1:8765 (port 0: any free one), got '{v}'")
        return v


# -- models ------------------------------------------------------------------------------------

TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_TEMPLATE_FORMS = re.compile(r"^(input|match\.(?P<group>\w+)|results\[(?P<index>\d+)\])$")


def render(template: re.Pattern[str], value: Any, field: Callable[[re.Match[str]], str]) -> Any:
    """Fill the templates in every string of a JSON value."""
    if isinstance(value, str):
        return template.sub(field, value)
    if isinstance(value, dict):
        return {k: render(template, v, field) for k, v in value.items()}
    if isinstance(value, list):
        return [render(template, v, field) for v in value]
    return value


class ScriptStep(_Strict):
    tool: str = Field(pattern=WIRE_PATTERN, description="wire name, e.g. time__get_current_time")
    arguments: dict[str, Any] = {}


class Rule(_Strict):
    when: str | None = Field(default=None, description="regex; a rule without it always matches")
    steps: list[ScriptStep] = []
    reply: str

    @model_validator(mode="after")
    def _templates(self) -> Rule:
        groups: set[str] = set()
        if self.when is not None:
            try:
                groups = set(re.compile(self.when).groupindex)
            except (re.error, OverflowError, RecursionError) as e:
                raise _fail(f"when: bad regular expression: {e}") from None
        texts = [self.reply, *(repr(s.arguments) for s in self.steps)]
        for expr in (m[1] for t in texts for m in TEMPLATE.finditer(t)):
            form = _TEMPLATE_FORMS.match(expr)
            if not form:
                raise _fail(f"unknown template '{{{{ {expr} }}}}': use input, match.NAME or results[N]")
            if form["group"] and form["group"] not in groups:
                raise _fail(f"'{{{{ {expr} }}}}': the 'when' regex has no group named '{form['group']}'")
            if form["index"] and int(form["index"]) >= len(self.steps):
                raise _fail(f"'{{{{ {expr} }}}}': this rule has only {len(self.steps)} steps")
        return self


class Model(_Strict):
    provider: Literal["openai", "anthropic", "scripted"]
    model: str | None = Field(default=None, description="the provider's model name")
    base_url: str | None = None
    api_key: SecretStr | None = Field(default=None, description="use ${VAR}, never inline")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    headers: dict[str, str] = {}
    timeout: Duration = Field(default=60.0, description="per request")
    rules: list[Rule] | None = Field(default=None, description="scripted only")

    @model_validator(mode="after")
    def _provider(self) -> Model:
        if self.provider == "scripted":
            if not self.rules:
                raise _fail("provider 'scripted' needs 'rules'")
            if extra := [k for k in ("model", "base_url", "api_key") if getattr(self, k)]:
                raise _fail(f"provider 'scripted' takes no {', '.join(extra)}")
        else:
            if not self.model:
                raise _fail(f"provider '{self.provider}' needs 'model'")
            if self.rules is not None:
                raise _fail(f"'rules' are for provider 'scripted', not '{self.provider}'")
        return self


# -- servers and manifest tools ----------------------------------------------------------------


class Server(_Strict):
    """The shape of a Claude Desktop `mcpServers` entry, plus `transport` for URLs."""

    command: str | None = Field(default=None, description="stdio: the program to run")
    args: list[str] = []
    env: dict[str, str] = {}
    cwd: str | None = Field(default=None, description="default: the manifest's folder")
    url: str | None = Field(default=None, description="streamable HTTP or SSE endpoint")
    headers: dict[str, str] = {}
    transport: Literal["stdio", "http", "sse"] | None = Field(
        default=None, description="default: stdio with command, http with url"
    )
    type: Literal["stdio", "http", "sse"] | None = Field(default=None, description="same as transport")
    pin: bool = Field(default=True, description="hold tools whose definitions change after the first listing")
    auth: Literal["oauth"] | None = Field(
        default=None,
        description="oauth: log in once with clawmcp login SERVER; the host refreshes the tokens",
    )
    client_id: str | None = Field(default=None, description="oauth: a registered client (else: registration)")
    scopes: list[str] = Field(default=[], description="oauth: the scopes to ask for")

    @model_validator(mode="after")
    def _shape(self) -> Server:
        kind = _one_of(self, ("command", "url"), "a server")
        if self.transport and self.type and self.transport != self.type:
            raise _fail("'transport' and 'type' disagree")
        transport = self.kind
        if kind == "command":
            if transport != "stdio" or self.headers or self.auth or self.client_id or self.scopes:
                raise _fail("a stdio server (command) takes no 'headers', 'auth' and no http/sse transport")
        elif self.auth is None and (self.client_id or self.scopes):
            raise _fail("'client_id' and 'scopes' go with auth: oauth")
        else:
            if transport == "stdio" or self.args or self.env or self.cwd:
                raise _fail("a URL server takes no 'args', 'env', 'cwd' or stdio transport")
            if not re.match(r"^https?://", self.url or ""):
                raise _fail(f"url must start with http:// or https://, got '{self.url}'")
        return self

    @property
    def kind(self) -> Literal["stdio", "http", "sse"]:
        return self.transport or self.type or ("stdio" if self.command else "http")


class HttpCall(_Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(description="{name} is replaced by the argument")
    headers: dict[str, str] = {}
    body: Any = Field(default=None, description="JSON body; strings may use {name}")


class Tool(_Strict):
    description: str = ""
    input: dict[Name, dict[str, Any]] = Field(
        default={}, description="JSON Schema properties; required unless a default is given"
    )
    command: list[str] | None = Field(default=None, min_length=1, description="argv, never a shell")
    cwd: str | None = Field(default=None, description="for command; default: the manifest's folder")
    env: dict[str, str] = Field(
        default={}, description="for command: its environment beyond HOME, LOGNAME, PATH, SHELL, TERM, USER"
    )
    http: HttpCall | None = None
    timeout: Duration = 30.0

    @model_validator(mode="after")
    def _shape(self) -> Tool:
        kind = _one_of(self, ("command", "http"), "a tool")
        if kind == "command":
            texts = list(self.command or [])
        else:
            assert self.http is not None
            texts = [self.http.url, *self.http.headers.values(), repr(self.http.body)]
        for name in (p for t in texts for p in placeholders(t)):
            if name not in self.input:
                declared = ", ".join(self.input) or "none"
                raise _fail(f"'{{{name}}}' is not a declared input (declared: {declared})")
        return self


# -- Claws -------------------------------------------------------------------------------------


class Call(_Strict):
    tool: str = Field(description="SERVER.TOOL")
    arguments: dict[str, Any] = {}


class Send(_Strict):
    to: Name
    content: str


EVERY_MIN, EVERY_MAX = 1.0, 36_500 * 86_400.0
"""The shortest and longest `every`: once a second, once a hundred years."""


class Schedule(_Strict):
    name: Name
    every: Duration | None = None
    cron: str | None = Field(
        default=None, description="five fields, e.g. '0 9 * * mon-fri' (six fields: seconds first)"
    )
    timezone: str | None = Field(default=None, description="IANA zone for cron and at; default UTC")
    at: datetime | None = Field(default=None, description="one shot, e.g. 2026-12-01T09:00:00Z")
    prompt: str | None = None
    call: Call | None = None
    send: Send | None = None
    misfire: Literal["latest", "all", "skip"] = "latest"

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                CronSim(v, datetime.now(UTC))
            except CronSimError as e:
                raise _fail(f"bad cron expression '{v}': {e}") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, a name too long
                raise _fail(f"unknown timezone '{v}' (use an IANA name such as Europe/Lisbon)") from None
        return v

    @field_validator("every")
    @classmethod
    def _every(cls, v: float | None) -> float | None:
        if v is not None and not EVERY_MIN <= v <= EVERY_MAX:
            raise _fail(f"from 1s to {EVERY_MAX / 86400:.0f}d, got {v:g}s")
        return v

    @field_validator("at")
    @classmethod
    def _at(cls, v: datetime | None) -> datetime | None:
        if v is not None:
            try:
                ok = 1970 <= datetime.fromtimestamp(v.timestamp(), UTC).year <= 9999
            except (OverflowError, OSError, ValueError):
                ok = False
            if not ok:
                raise _fail(f"{v} is out of range (years 1970 to 9999)")
        return v

    @model_validator(mode="after")
    def _shape(self) -> Schedule:
        when = _one_of(self, ("every", "cron", "at"))
        _one_of(self, ("prompt", "call", "send"))
        if self.timezone and when == "every":
            raise _fail("'timezone' applies to cron and at, not every")
        return self


_TRIGGER_TEMPLATES = {
    "webhook": re.compile(r"^(body|headers\.[A-Za-z0-9_-]+)$"),
    "resource": re.compile(r"^uri$"),
}


class Webhook(_Strict):
    secret: SecretStr | None = Field(default=None, description="use ${VAR}; not with signature none")
    signature: Literal["github", "stripe", "hmac-sha256", "none"] = Field(
        description="github: X-Hub-Signature-256; stripe: Stripe-Signature; hmac-sha256: X-Signature; "
        "none: no check (only on a loopback listen)"
    )

    @model_validator(mode="after")
    def _secret(self) -> Webhook:
        if (self.signature == "none") != (self.secret is None):
            raise _fail(
                "signature 'none' takes no secret"
                if self.secret
                else f"signature '{self.signature}' needs a secret"
            )
        return self


class Watched(_Strict):
    server: Name = Field(description="a server under servers:")
    uri: str = Field(min_length=1, description="the resource whose updates wake the Claw")


class Trigger(_Strict):
    """What wakes a Claw besides messages and the clock: a signed webhook, or an upstream
    resource's updates. Its action is a schedule's: prompt, call or send."""

    name: Name
    webhook: Webhook | None = Field(default=None, description="POST /hooks/CLAW/NAME")
    resource: Watched | None = None
    prompt: str | None = Field(
        default=None, description="{{ body }}, {{ headers.NAME }} (webhook) or {{ uri }} (resource)"
    )
    call: Call | None = None
    send: Send | None = None

    @model_validator(mode="after")
    def _shape(self) -> Trigger:
        source = _one_of(self, ("webhook", "resource"))
        _one_of(self, ("prompt", "call", "send"))
        texts = [
            self.prompt or "",
            self.send.content if self.send else "",
            repr(self.call.arguments if self.call else ""),
        ]
        for expr in (m[1] for t in texts for m in TEMPLATE.finditer(t)):
            if not _TRIGGER_TEMPLATES[source].match(expr):
                forms = "body or headers.NAME" if source == "webhook" else "uri"
                raise _fail(f"unknown template '{{{{ {expr} }}}}': a {source} trigger has {forms}")
        return self


class Memory(_Strict):
    history: int = Field(default=40, ge=0, description="messages of the thread in the context")
    context_tokens: int | None = Field(
        default=None,
        gt=0,
        description="estimated tokens (4 characters each) the thread's history may take in the context",
    )
    compact: Literal["summary", "drop"] = Field(
        default="drop",
        description="summary: the Claw's model summarises the oldest entries into one; drop: they fall off",
    )


class Limits(_Strict):
    max_steps: int = Field(default=8, ge=1, description="model/tool rounds per run")
    run_timeout: Duration = Field(default=120.0, description="not counting waits for approval")
    tokens_per_run: int | None = Field(default=None, gt=0, description="input + output tokens a run may use")
    tokens_per_day: int | None = Field(default=None, gt=0, description="per Claw, per UTC day")
    approval_timeout: Duration = Field(default=86400.0, description="no decision by then counts as denied")


class Expose(_Strict):
    tools: bool = Field(default=False, description="MCP clients may call the allowed tools directly")


def _model_names(value: object) -> object:
    """`model: brain` is `model: [brain]`."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise PydanticCustomError("model_names", "expected a model name or a list of model names")
    return value


ModelNames = Annotated[
    list[Name],
    Field(min_length=1),
    BeforeValidator(_model_names),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": NAME_PATTERN},
                {"type": "array", "items": {"type": "string", "pattern": NAME_PATTERN}, "minItems": 1},
            ]
        }
    ),
]
"""A Claw's models: the first answers, the next ones when it is rate-limited or down."""


class Claw(_Strict):
    description: str = ""
    instructions: str = ""
    model: ModelNames = Field(description="a name under models:, or a list of them in fallback order")
    tools: list[str] = Field(default=[], description="glob patterns over SERVER.TOOL")
    approve: list[str] = Field(
        default=[], description="calls that wait for a person: globs over SERVER.TOOL, or @destructive"
    )
    talks_to: list[str] = Field(default=[], description="Claws it may message")
    subscribe: list[str] = Field(default=[], description="topics it receives")
    schedules: list[Schedule] = []
    triggers: list[Trigger] = Field(default=[], description="webhooks and resource updates that wake it")
    memory: Memory = Memory()
    limits: Limits = Limits()
    expose: Expose = Expose()
    isolation: Literal["task", "process"] = "task"


class ManifestFile(_Strict):
    """One manifest file. Several files merge by name (see `load`)."""

    model_config = ConfigDict(title="clawmcp manifest")

    version: Literal[1] = 1
    host: Host | None = None
    models: dict[Name, Model] = {}
    servers: dict[Name, Server] = {}
    tools: dict[Name, Tool] = {}
    claws: dict[Name, Claw] = {}
