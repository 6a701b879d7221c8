"""Builds the per-process runtime (Redis client, stores, broker adapter) from settings.

Built lazily on first use in each process, so a prefork child never shares a socket with its
parent; guarded by a lock for thread pools.
"""

from __future__ import annotations

import structlog
from redis import Redis

from resilience.chaos import ChaosStore
from resilience.notify.alert_store import AlertStore
from resilience.notify.escalator import DeliveryStats, Escalator
from resilience.notify.service import EscalationService
from resilience.notify.throttle import NotificationThrottle
from resilience.observability.metrics import ErrorMetrics
from resilience.observability.monitoring import FleetSignals, RedisCooldown, ThresholdMonitor
from resilience.observability.reporting import FailureReporter
from resilience.observability.thresholds import AlertEvaluator
from resilience.policy.classify import default_classifier
from resilience.runtime import LazyRuntime, build_resilience_runtime
from resilience.scrub import Scrubber
from resilience.storage.clock import Clock, SystemClock
from resilience.storage.keys import KeySpace
from resilience.storage.server_clock import ServerClock
from resilience.task import ResilienceRuntime
from tasks.brokers.base import BrokerAdapter
from tasks.brokers.paper import PaperBroker
from tasks.market_data.providers import fallback_provider
from tasks.market_data.quote_book import QuoteBook
from tasks.market_data.quote_cache import QuoteCache
from tasks.runtime import TradingRuntime
from tasks.spec import SPEC
from worker.channels import build_channels, resolved_to, unconfigured
from worker.settings import Settings

__all__ = [
    "ACCOUNT_RESOURCE",
    "RuntimeProvider",
    "build_escalation",
    "build_runtime",
    "build_thresholds",
]

_log = structlog.get_logger("alchemiser.escalation")

# The resource whose rate limit is the broker account's (tasks declare it; see tasks/trading.py).
ACCOUNT_RESOURCE = "broker.api"


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    reporters: tuple[FailureReporter, ...] = (),
) -> TradingRuntime:
    """Every service a worker process needs, wired from ``settings``; ``reporters`` (an error
    tracker) hear of every retry, deferral and dead letter."""
    clock = clock or SystemClock()
    resilience = build_resilience_runtime(
        settings.redis_url,
        settings.namespace,
        resources=settings.resource_configs,
        classifier=default_classifier(SPEC.domain),
        secrets=settings.secret_values(),
        clock=clock,
        reporters=reporters,
        escalation_task="tasks.escalate",
        recovery=SPEC.recovery(),
        message_masks=SPEC.message_masks,
        max_countdown_s=settings.max_countdown_s,
        max_redeliveries=settings.max_redeliveries,
        dlq_max_entries=settings.dlq_max_entries,
        dlq_retention_s=settings.dlq_retention_s,
        socket_timeout_s=settings.redis_socket_timeout_s,
    )
    client, keys, guard = resilience.redis, resilience.keys, resilience.guard
    chaos = ChaosStore(client, keys)
    broker: BrokerAdapter
    if settings.trading_broker == "paper":
        broker = PaperBroker(
            client,
            keys,
            clock=clock,
            chaos=chaos,
            market_hours=settings.paper_market_hours,
            initial_cash=settings.paper_initial_cash,
        )
    else:
        # alpaca-py takes seconds to import (pydantic models, pandas): paper deployments, the
        # CLI and the tests do not pay for it.
        from tasks.brokers.alpaca import AlpacaBroker, RateLimitHint  # noqa: PLC0415

        # Raises ConfigurationError naming ALPACA_API_KEY / ALPACA_SECRET_KEY when unset.
        # A spent window (remaining 0, or a 429) holds the whole fleet's account limiter back
        # until Alpaca's reset, not just this worker.
        def hold_account_limit(hint: RateLimitHint) -> None:
            if hint.reset_at_s is not None and guard is not None:
                guard.push(ACCOUNT_RESOURCE, max(hint.reset_at_s - clock.now_s(), 0.0))

        broker = AlpacaBroker.from_settings(settings, on_rate_limit=hold_account_limit)
    quotes = QuoteBook(
        broker=broker,
        cache=QuoteCache(client, keys, clock),
        fallback=fallback_provider(settings.quote_fallback, client, keys, clock=clock, chaos=chaos),
        max_age_s=settings.quote_max_age_s,
    )
    return TradingRuntime(
        resilience=resilience,
        broker=broker,
        chaos=chaos,
        order_ttl_s=settings.order_ttl_s,
        quotes=quotes,
        escalation=build_escalation(settings, client, keys),
        thresholds=build_thresholds(settings, client, keys),
    )


def build_thresholds(settings: Settings, client: Redis, keys: KeySpace) -> ThresholdMonitor:
    """The alert thresholds against the fleet's metrics, judged on the fleet's clock (Redis time
    plus a drill's shift, as alerts are) with their cool-down shared in Redis."""
    clock = ServerClock(client, keys)
    metrics = ErrorMetrics(client, keys, clock, scrubber=Scrubber(settings.secret_values()))
    breakers = sorted(n for n, r in settings.resource_configs.items() if r.breaker is not None)
    return ThresholdMonitor(
        AlertEvaluator(settings.alert_thresholds_config, RedisCooldown(client, keys)),
        FleetSignals(metrics, client, keys, breakers),
        clock,
    )


def build_escalation(settings: Settings, client: Redis, keys: KeySpace) -> EscalationService:
    """tasks.escalate's service: the fleet's alerts, the policy, the channels, the limits, on
    the fleet's clock (Redis time, so every worker's countdowns agree with the alerts')."""
    for name in unconfigured(settings):
        # Said once per process: the level's fallback (the console by default) takes over.
        _log.warning("notification_channel_not_configured", channel=name)
    escalator = Escalator(
        build_channels(settings),
        NotificationThrottle(client, keys, settings.notification_limits_config),
        DeliveryStats(client, keys),
        retry_s=settings.notification_retry_s,
        resolved_to=resolved_to(settings),
    )
    clock = ServerClock(client, keys)
    store = AlertStore(client, keys, settings.grouping_timing, server_clock=clock)
    return EscalationService(store, settings.escalation_policy, escalator, clock)


class RuntimeProvider:
    """Builds the runtime once per process, on first use."""

    def __init__(self, settings: Settings, *, reporters: tuple[FailureReporter, ...] = ()) -> None:
        self._runtime = LazyRuntime(lambda: build_runtime(settings, reporters=reporters))

    def __call__(self) -> TradingRuntime:
        return self._runtime()

    def flush(self) -> None:
        """Settle the successes still recorded late, if this process built a runtime."""
        built = self._runtime.built()
        if built is not None and built.resilience.guard is not None:
            built.resilience.guard.flush()

    def resilience(self) -> ResilienceRuntime:
        """The resilience part (what ``ResilientTask`` asks for)."""
        return self().resilience
