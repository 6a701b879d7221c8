"""What the guard answers: how a run was admitted (:class:`Admission`, one :class:`Permit` per
resource), what a recorded outcome was (:class:`Outcome`), and what recording it said
(:class:`RecordResult`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Admission", "Outcome", "Permit", "RecordResult"]


class Outcome(enum.Enum):
    """How an admitted run went, as far as its resources' breakers are concerned."""

    OK = "ok"
    FAILED = "fail"  # the remote side's fault: counts against the breaker
    IGNORED = "ignore"  # an error that says nothing of the resource's health
    NONE = "none"  # nothing to record (a hint or a released lease only)


@dataclass(frozen=True, slots=True)
class Permit:
    """What admission granted on one resource."""

    resource: str
    generation: int
    state: str
    probe: bool
    remaining: int


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to :meth:`Guard.admit`."""

    admitted: bool
    ticket: str
    permits: tuple[Permit, ...] = ()
    retry_after_s: float = 0.0
    refused_by: str | None = None
    reason: str = ""
    # Redis could not be asked; the resources' fail modes decided.
    degraded: bool = False
    # Redis server time of the decision (µs since the epoch; 0 when Redis was not asked).
    at_us: int = 0
    # Admitted from this process's permit lease, without asking Redis (ticket and at_us: the
    # grant's).
    leased: bool = False

    @property
    def resources(self) -> tuple[str, ...]:
        """The configured resources this admission covers."""
        return tuple(p.resource for p in self.permits)


@dataclass(frozen=True, slots=True)
class RecordResult:
    """The answer to :meth:`Guard.record`."""

    retry_allowed: bool
    transitions: tuple[tuple[str, str], ...] = ()  # (resource, "from>to")
