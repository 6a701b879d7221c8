"""What every admission of one tuple of resource names sends, worked out once per tuple: the
configured names among them, their keys and configuration arguments, and whether the round trip
may lease permits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog

from resilience.guard.resources import ResourceConfig

__all__ = ["Plan", "Plans"]

_log = structlog.get_logger("alchemiser.guard")


@dataclass(frozen=True, slots=True)
class Plan:
    """The arguments of one tuple of resource names."""

    names: tuple[str, ...]  # the configured ones
    keys: tuple[str, ...]
    configs: tuple[str | int | float, ...]
    # The most runs one round trip may ask for: > 1 when every resource leases permits (the
    # smallest lease of them), else 1; and for how long a lease may be spent.
    permits: int = 1
    lease_ttl_s: float = 0.0


class Plans:
    """The plans of a guard's resources; a name nobody configured is logged once."""

    def __init__(
        self,
        resources: Mapping[str, ResourceConfig],
        unguarded: frozenset[str],
        resource_keys: Mapping[str, tuple[str, ...]],
        argv: Mapping[str, list[str | int | float]],
    ) -> None:
        self._resources = resources
        self._unguarded = unguarded  # configured with every protection off: silently skipped
        self._resource_keys = resource_keys
        self._argv = argv
        self._plans: dict[tuple[str, ...], Plan] = {}
        self._warned_unknown: set[str] = set()

    def configured(self, names: Sequence[str]) -> tuple[str, ...]:
        """The names among ``names`` that have a configuration (others are not guarded)."""
        plan = self._plans.get(names) if isinstance(names, tuple) else None
        if plan is not None:
            return plan.names
        known = tuple(n for n in names if n in self._resources)
        for name in names:
            if (
                name not in self._resources
                and name not in self._unguarded
                and name not in self._warned_unknown
            ):
                self._warned_unknown.add(name)
                _log.warning("resource_not_configured", resource=name)
        return known

    def plan(self, names: Sequence[str]) -> Plan:
        """The plan of ``names``, worked out at its first admission."""
        key = tuple(names)
        plan = self._plans.get(key)
        if plan is None:
            known = self.configured(key)
            leases = [self._resources[name].permit_lease for name in known]
            leasing = [lease for lease in leases if lease is not None]
            every = bool(known) and len(leasing) == len(known)
            plan = Plan(
                names=known,
                keys=tuple(k for name in known for k in self._resource_keys[name]),
                configs=tuple(arg for name in known for arg in self._argv[name]),
                permits=min(lease.permits for lease in leasing) if every else 1,
                lease_ttl_s=min(lease.ttl_s for lease in leasing) if every else 0.0,
            )
            self._plans[key] = plan
        return plan
