"""The guard scripts' wire format, both ways: what :class:`~resilience.guard.admission.Guard`
sends to ``guard_admit.lua``, ``guard_record.lua`` and ``guard_settle.lua``, and what each
answers, with named fields (the scripts' headers document the same layout).

Replies and outcomes are named tuples: the hot path builds one per script call, and a tuple is
several times cheaper to make than a frozen dataclass.

Every resource's configuration travels as :func:`~resilience.guard.resources.config_argv` makes
it; its late successes as :meth:`~resilience.guard.settlement.Late.args` makes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from resilience.guard.settlement import Late

__all__ = [
    "AdmitReply",
    "Argv",
    "RecordReply",
    "ResourceOutcome",
    "ResourceReply",
    "admit_argv",
    "record_argv",
    "settle_argv",
    "transitions_of",
]

Argv = list[str | int | float]

# guard_admit.lua's reply: these fields, then PER_RESOURCE fields for each resource.
_ADMIT_FIELDS = 6
_PER_RESOURCE = 5


def _as_int(value: object) -> int:
    """An integer from a script's reply (redis-py gives Lua numbers as ``int`` already)."""
    return value if isinstance(value, int) else int(str(value))


def admit_argv(
    *,
    now_override: str,
    ticket: str,
    jitter: float,
    want: int,
    configs: Sequence[str | int | float],
    late: Sequence[Late],
) -> Argv:
    """ARGV of guard_admit.lua: ``configs`` holds every resource's configuration in order;
    ``late`` one entry per resource."""
    argv: Argv = [now_override, ticket, len(late), jitter, want, *configs]
    for carried in late:
        argv.extend(carried.args())
    return argv


class ResourceReply(NamedTuple):
    """What guard_admit.lua says of one resource."""

    generation: int
    state: str
    probe: bool
    remaining: int
    transition: str  # "from>to", or "" when the breaker stayed


class AdmitReply(NamedTuple):
    """guard_admit.lua's answer."""

    admitted: bool
    retry_after_us: int
    refused_index: int  # 1-based; 0 when admitted
    reason: str
    at_us: int  # Redis server time of the decision
    granted: int  # runs granted (a permit lease may ask for more than one)
    resources: tuple[ResourceReply, ...]

    @classmethod
    def decode(cls, reply: Sequence[object], count: int) -> AdmitReply:
        """The reply for ``count`` resources."""
        resources = []
        for i in range(count):
            start = _ADMIT_FIELDS + _PER_RESOURCE * i
            generation, state, probe, remaining, transition = reply[start : start + _PER_RESOURCE]
            resources.append(
                ResourceReply(
                    generation=_as_int(generation),
                    state=str(state),
                    probe=probe == 1,
                    remaining=_as_int(remaining),
                    transition=str(transition) if transition else "",
                )
            )
        return cls(
            admitted=_as_int(reply[0]) == 1,
            retry_after_us=_as_int(reply[1]),
            refused_index=_as_int(reply[2]),
            reason=str(reply[3]),
            at_us=_as_int(reply[4]),
            granted=_as_int(reply[5]),
            resources=tuple(resources),
        )


class ResourceOutcome(NamedTuple):
    """How a run went on one resource, as guard_record.lua reads it."""

    outcome: str  # ok | fail | ignore | none
    duration_us: int
    generation: int
    probe: bool
    push_us: int
    retry_cost: float
    success_refill: float

    def args(self) -> Argv:
        return [
            self.outcome,
            self.duration_us,
            self.generation,
            int(self.probe),
            self.push_us,
            self.retry_cost,
            self.success_refill,
        ]


def record_argv(
    *,
    now_override: str,
    ticket: str,
    jitter: float,
    configs: Sequence[Sequence[str | int | float]],
    outcomes: Sequence[ResourceOutcome],
) -> Argv:
    """ARGV of guard_record.lua: one configuration and one outcome per resource, in order."""
    argv: Argv = [now_override, ticket, len(outcomes), jitter]
    for config in configs:
        argv.extend(config)
    for outcome in outcomes:
        argv.extend(outcome.args())
    return argv


class RecordReply(NamedTuple):
    """guard_record.lua's answer: whether the retry budget pays the retry asked for, and each
    resource's breaker transition ("" when it stayed)."""

    retry_allowed: bool
    transitions: tuple[str, ...]

    @classmethod
    def decode(cls, reply: Sequence[object], count: int) -> RecordReply:
        return cls(
            retry_allowed=_as_int(reply[0]) == 1, transitions=transitions_of(reply[1:], count)
        )


def settle_argv(
    *,
    now_override: str,
    jitter: float,
    configs: Sequence[Sequence[str | int | float]],
    late: Sequence[Late],
) -> Argv:
    """ARGV of guard_settle.lua: one configuration and one late tally per resource."""
    argv: Argv = [now_override, len(late), jitter]
    for config in configs:
        argv.extend(config)
    for carried in late:
        argv.extend(carried.args())
    return argv


def transitions_of(reply: Sequence[object], count: int) -> tuple[str, ...]:
    """One breaker transition per resource ("" when it stayed): guard_settle.lua's whole
    reply, guard_record.lua's after its first field."""
    if len(reply) != count:
        raise ValueError(f"expected {count} transitions, got {len(reply)}")
    return tuple(str(t) if t else "" for t in reply)
