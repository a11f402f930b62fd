"""What the machine asks the world to do, as frozen values the caller carries out.

`Machine.wants()` derives the open requests from the state alone, so a coordinator that restarts
from its journal knows what to do next without remembering anything. `Machine.handle()` also
returns notices (a step completed, an exception was raised) for displays and logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ceremony.approval import Approval


@dataclass(frozen=True)
class Decision:
    pass


# --- requests: the caller obtains an event in answer ---------------------------------------------
@dataclass(frozen=True)
class Ask(Decision):
    """A person must act: `kind` is signin, acknowledge, record, seal, handover, signoff or
    decide."""

    step: int
    role: str
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Observe(Decision):
    """Obtain a value for a verify step from the world (never from a person's typing)."""

    step: int
    source: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan(Decision):
    """Ask the signer to plan a state-changing operation (answer: OperationPlanned)."""

    step: int
    action: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestApproval(Decision):
    """Officers of `role` are asked to approve this exact operation from their own consoles."""

    step: int  # the step whose operation is approved
    quorum: str
    role: str
    operation: dict[str, Any]
    digest: str
    have: int
    need: int
    approved_by: tuple[str, ...]
    expires_seconds: int


@dataclass(frozen=True)
class Execute(Decision):
    """Run an approved HSM operation. `reconcile` is set when it was started before a restart."""

    step: int
    operation: dict[str, Any]
    digest: str
    approvals: tuple[Approval, ...]
    secrets: tuple[str, ...] = ()  # names of secrets the operator supplies (never journaled)
    reconcile: bool = False


@dataclass(frozen=True)
class Perform(Decision):
    """Carry out a machine step that needs no approval (drive, transcript, HSM read)."""

    step: int
    action: str
    params: dict[str, Any] = field(default_factory=dict)


# --- notices --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepCompleted(Decision):
    step: int
    value: str | None = None


@dataclass(frozen=True)
class ExceptionRaised(Decision):
    step: int
    reason: str


@dataclass(frozen=True)
class CeremonyEnded(Decision):
    status: str  # "completed" | "aborted"
