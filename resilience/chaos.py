"""Fault injection shared by every worker: rules in Redis, consulted by adapters per operation.

A rule names a target (an adapter operation such as ``broker.submit_order``), the error to
raise, a probability, an optional count and duration, extra latency, and a phase: ``before``
fails the operation before it takes effect, ``after`` lets it take effect and then fails (a
lost response: the ambiguous failure that idempotency must survive).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from redis import Redis
from redis.client import Pipeline

from resilience.errors import AlchemiserError, error_class_by_name
from resilience.storage.keys import KeySpace
from resilience.storage.scripts import register
from resilience.storage.server_clock import MAX_CLOCK_SHIFT_S, stored_shift_s

__all__ = ["FOREIGN_FAULTS", "ChaosHTTPError", "ChaosRule", "ChaosStore", "Phase", "build_fault"]

Phase = Literal["before", "after"]

HTTP_STATUS_MIN, HTTP_STATUS_MAX = 100, 599
FOREIGN_FAULTS = ("TimeoutError", "ConnectionError", "crash", "none", "http:<status>")


class ChaosHTTPError(Exception):
    """A foreign HTTP error as a remote API would raise it (classified by status)."""

    def __init__(self, status_code: int, body: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {body}")
        self.status_code = status_code
        self.headers = headers or {}
        self.body = body


@dataclass(frozen=True, slots=True)
class ChaosRule:
    """One fault rule."""

    target: str
    error: str
    probability: float = 1.0
    count: int | None = None
    expires_at_ms: int | None = None
    latency_ms: int = 0
    phase: Phase = "before"
    retry_after_s: float | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.probability <= 1.0:
            raise ValueError(f"probability must be in (0, 1], got {self.probability}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {self.latency_ms}")
        if self.phase not in ("before", "after"):
            raise ValueError(f"phase must be 'before' or 'after', got {self.phase!r}")
        build_fault(self)  # refuses unknown error names at injection time, not at fire time

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> ChaosRule:
        """Rebuild a stored rule."""
        data: dict[str, Any] = json.loads(raw)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def build_fault(rule: ChaosRule) -> BaseException | None:
    """The exception a rule raises (``None`` for latency-only and crash rules).

    ``error`` is a class of the hierarchy, ``TimeoutError``, ``ConnectionError``,
    ``http:<status>`` (a foreign HTTP error), ``crash`` (the worker process dies) or ``none``.
    """
    message = f"chaos: injected {rule.error} on {rule.target}"
    if rule.message:
        message = f"{message}: {rule.message}"
    name = rule.error
    if name in ("none", "crash"):
        return None
    if name == "TimeoutError":
        return TimeoutError(message)
    if name == "ConnectionError":
        return ConnectionResetError(message)
    if name.startswith("http:"):
        status_text = name.split(":", 1)[1]
        if not status_text.isdigit() or not HTTP_STATUS_MIN <= int(status_text) <= HTTP_STATUS_MAX:
            raise ValueError(f"bad fault {name!r}: use http:<status> with a status from 100 to 599")
        status = int(status_text)
        headers = {"Retry-After": str(rule.retry_after_s)} if rule.retry_after_s is not None else {}
        return ChaosHTTPError(status, message, headers)
    try:
        cls = error_class_by_name(name)
    except KeyError as unknown:
        raise ValueError(
            f"unknown fault {name!r}: use a class of resilience.errors or one of "
            + ", ".join(FOREIGN_FAULTS)
        ) from unknown
    error: AlchemiserError = cls(message, retry_after_s=rule.retry_after_s)
    return error


def _field(target: str, phase: Phase) -> str:
    return f"{target}@{phase}"


class ChaosStore:
    """Fault rules of one namespace."""

    def __init__(self, client: Redis, keys: KeySpace, *, rng: random.Random | None = None) -> None:
        self._client = client
        self._keys = keys
        self._rng = rng or random.Random()
        self._take = register(client, "resilience", "chaos_take")

    def inject(self, rule: ChaosRule) -> None:
        """Add or replace the rule for ``rule.target`` in ``rule.phase`` (one per phase)."""
        self._client.hset(self._keys.chaos_rules, _field(rule.target, rule.phase), rule.to_json())

    def clear(self, target: str | None = None) -> int:
        """Remove one target's rules, or every rule and the clock shift; returns how many rules
        were removed."""
        if target is None:
            removed = int(self._client.hlen(self._keys.chaos_rules))
            self._client.delete(self._keys.chaos_rules, self._keys.chaos_clock_shift)
            return removed
        fields = [_field(target, "before"), _field(target, "after")]
        return int(self._client.hdel(self._keys.chaos_rules, *fields))

    def shift_clock(self, seconds: float) -> float:
        """Move the fleet's escalation clock (:class:`resilience.storage.server_clock.ServerClock`)
        ``seconds`` further ahead (negative: back); returns the whole shift now in force.
        ``ValueError``, and no change, unless the shift stays finite and within
        ``MAX_CLOCK_SHIFT_S`` either way."""
        if not math.isfinite(seconds):
            raise ValueError(f"a clock shift is a finite number of seconds, got {seconds!r}")
        key = self._keys.chaos_clock_shift
        totals: list[float] = []  # one per attempt; the last one committed

        def apply(pipe: Pipeline) -> None:
            total = stored_shift_s(pipe.get(key)) + seconds
            if abs(total) > MAX_CLOCK_SHIFT_S:
                raise ValueError(
                    f"the clock shift would be {total:+g} s; it stays within "
                    f"+-{MAX_CLOCK_SHIFT_S:g} s (a year) either way"
                )
            pipe.multi()
            pipe.set(key, repr(total))
            totals.append(total)

        self._client.transaction(apply, key)
        return totals[-1]

    def clock_shift_s(self) -> float:
        """How far ahead the fleet's escalation clock runs, in seconds."""
        return stored_shift_s(self._client.get(self._keys.chaos_clock_shift))

    def rules(self) -> list[ChaosRule]:
        """Every active rule (expired ones are dropped lazily when consulted)."""
        raw = cast("dict[str, str]", self._client.hgetall(self._keys.chaos_rules))
        return [ChaosRule.from_json(v) for _, v in sorted(raw.items())]

    def fired(self) -> dict[str, int]:
        """How often each target's faults fired."""
        raw = cast("dict[str, str]", self._client.hgetall(self._keys.chaos_fired))
        return {k: int(v) for k, v in raw.items()}

    def strike(self, target: str, phase: Phase) -> None:
        """Apply the rule for ``target`` if it fires now: sleep, crash or raise."""
        raw = self._take(
            keys=[self._keys.chaos_rules, self._keys.chaos_fired],
            args=[_field(target, phase), target, self._rng.random()],
        )
        if raw is None:
            return
        rule = ChaosRule.from_json(str(raw))
        if rule.latency_ms:
            time.sleep(rule.latency_ms / 1000.0)
        if rule.error == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        fault = build_fault(rule)
        if fault is not None:
            raise fault
