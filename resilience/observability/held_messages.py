"""Messages workers hold unacknowledged, and whether a dead worker's are waiting to come back.

On a broker with a visibility timeout (Redis), a message a worker took stays in the broker's
unacknowledged set until acknowledged; a live worker renews its lease on it, so a lease older
than the timeout belongs to a worker that stopped renewing (killed, or its host lost). Another
worker's sweep puts such a message back on its queue; if none does (no worker running), it
waits there while its deadline passes. This module says how it stands; the broker adapter
(``worker.held_messages``) reads the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from resilience.observability.health import HealthCheck, HealthStatus

__all__ = ["HeldMessages", "held_messages_check"]


@dataclass(frozen=True, slots=True)
class HeldMessages:
    """The broker's unacknowledged messages at one moment."""

    held: int
    past_timeout: int  # leases older than the visibility timeout: their worker stopped renewing
    oldest_lease_age_s: float  # 0.0 with nothing held
    visibility_timeout_s: float


def held_messages_check(held: HeldMessages, *, critical_after_s: float) -> HealthCheck:
    """HEALTHY while every lease is renewed; WARNING while a dead worker's messages wait for
    a sweep; CRITICAL once one has waited ``critical_after_s`` (nobody is sweeping)."""
    age = round(held.oldest_lease_age_s, 1)
    if held.past_timeout == 0:
        return HealthCheck(
            "held_messages",
            HealthStatus.HEALTHY,
            f"{held.held} messages held by live workers",
            observed=age,
            threshold=held.visibility_timeout_s,
        )
    if held.oldest_lease_age_s < critical_after_s:
        return HealthCheck(
            "held_messages",
            HealthStatus.WARNING,
            f"{held.past_timeout} messages held by a worker that stopped renewing them {age:g} s"
            " ago: the next restore sweep of a running worker puts them back on their queue",
            observed=age,
            threshold=held.visibility_timeout_s,
        )
    return HealthCheck(
        "held_messages",
        HealthStatus.CRITICAL,
        f"{held.past_timeout} messages unacknowledged for {age:g} s by a worker that is gone,"
        f" and no worker restored them within {critical_after_s:g} s: start a worker on this"
        " broker (it restores them at start)",
        observed=age,
        threshold=critical_after_s,
    )
