"""The exceptions of clawmcp.

ClawError                    root: everything clawmcp raises on purpose
├── UserError                a mistake the user can fix; shown as one line, no traceback
│   ├── ManifestError        one or more manifest problems, each FILE:LINE:COL: message
│   └── HostBusy             another host already owns the data_dir
└── RuntimeFault             something failed while running; names what it concerns
    ├── StoreError           the state store cannot be opened or used
    │   └── StoreUnavailable the store cannot commit for now (disk full, I/O error, locked)
    ├── ToolRefused          a Claw called a tool it may not use, or one that does not exist
    ├── ToolServerError      a tool server could not run a call
    ├── ModelError           a model provider refused a request or could not be reached
    │   └── ModelUnavailable rate-limited or down through all its tries: another model may answer
    ├── MessageRefused       a message a Claw may not send, or an ask that cannot be answered
    ├── BudgetSpent          the Claw spent its tokens_per_day: no new run until the next UTC day
    ├── Stopping             the host is stopping: no new run starts
    │   └── LeaseLost        this host no longer owns the Claw (several hosts on one store)
    └── WorkerLost           the worker process of a Claw ended or stopped answering
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BudgetSpent",
    "ClawError",
    "HostBusy",
    "LeaseLost",
    "ManifestError",
    "MessageRefused",
    "ModelError",
    "ModelUnavailable",
    "NeedsLogin",
    "Problem",
    "RuntimeFault",
    "Stopping",
    "StoreError",
    "StoreUnavailable",
    "ToolRefused",
    "ToolServerError",
    "UserError",
    "WorkerLost",
    "unwrap",
]


class ClawError(Exception):
    """Root of every error clawmcp raises on purpose."""


class UserError(ClawError):
    """A mistake of the user: the message alone tells them what to change."""


@dataclass(frozen=True, order=True)
class Problem:
    """One problem in a manifest, at a place in a file."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ManifestError(UserError):
    """The manifests have problems; `problems` holds all of them, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class HostBusy(UserError):
    """Another clawmcp host holds the lock on the data_dir."""


class RuntimeFault(ClawError):
    """A failure at run time."""


class StoreError(RuntimeFault):
    """The state store cannot be opened or used."""


class StoreUnavailable(StoreError):
    """The store cannot commit for now (disk full, an I/O error, locked by another process): the
    same write may succeed later."""


class ToolRefused(RuntimeFault):
    """A Claw called a tool outside its allowlist, or one that does not exist."""


class ToolServerError(RuntimeFault):
    """A tool server could not run a call: down, timed out, or the connection was lost."""


class NeedsLogin(ToolServerError):
    """A tool server with `auth: oauth` has no tokens the host can use (none yet, or a refresh
    was refused): a person must run `clawmcp login SERVER`."""

    def __init__(self, server: str) -> None:
        super().__init__(f"tool server '{server}' needs a login: run clawmcp login {server}")


class ModelError(RuntimeFault):
    """A model provider refused a request (bad key, bad request) or gave no usable answer."""


class ModelUnavailable(ModelError):
    """A model provider was rate-limited or down (429, 408, 409, 5xx, a timeout, no connection)
    through all its tries: a Claw with `model: [primary, backup]` goes on with the next model.
    A refusal of the request itself (400, 401, ...) is a plain `ModelError`: no other model is tried."""


class MessageRefused(RuntimeFault):
    """A message a Claw may not send, or an ask that cannot be answered (loop, depth, timeout)."""


class BudgetSpent(RuntimeFault):
    """The Claw has spent its `tokens_per_day`: it starts no new run before `until` (the next UTC
    midnight, seconds since the epoch)."""

    def __init__(self, message: str, until: float) -> None:
        super().__init__(message)
        self.until = until


class Stopping(RuntimeFault):
    """The host is stopping: a run asked for now does not start (it may be asked again later)."""


class LeaseLost(Stopping):
    """This host no longer owns the Claw (its lease expired or moved to another host): the store
    refuses its writes for that Claw, and the Claw's work stops here; the new owner goes on."""


class WorkerLost(RuntimeFault):
    """The worker process of a Claw with `isolation: process` ended or stopped answering."""


def unwrap(error: BaseException) -> BaseException:
    """The one error inside nested task-group exception groups, if there is exactly one."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
