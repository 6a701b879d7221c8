"""How tasks reach their services: a runtime the application provides per process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from celery import Celery

from resilience.chaos import ChaosStore
from resilience.notify.service import EscalationService
from resilience.observability.monitoring import ThresholdMonitor
from resilience.task import ResilienceRuntime
from tasks.brokers.base import BrokerAdapter
from tasks.market_data.quote_book import QuoteBook

__all__ = ["ORDER_TTL_SETTING", "TRADING_RUNTIME_SETTING", "TradingRuntime", "trading_runtime"]

TRADING_RUNTIME_SETTING = "alchemiser_trading_runtime"
# An order's time to live in seconds, read where it is enqueued (no runtime is built there).
ORDER_TTL_SETTING = "alchemiser_order_ttl_s"


@dataclass(frozen=True, slots=True)
class TradingRuntime:
    """Everything a trading task needs besides its payload."""

    resilience: ResilienceRuntime
    broker: BrokerAdapter
    chaos: ChaosStore
    order_ttl_s: float
    # Quotes: the broker, then the second provider, then the last good quote (bounded age).
    quotes: QuoteBook
    # tasks.escalate's: alerts, the policy and the channels (None: it only logs).
    escalation: EscalationService | None = None
    # tasks.escalate's evaluate step: the alert thresholds against the fleet (None: off).
    thresholds: ThresholdMonitor | None = None


def trading_runtime(app: Celery) -> TradingRuntime:
    """This process's trading runtime (the application puts a provider in its config)."""
    provider: Callable[[], TradingRuntime] = app.conf[TRADING_RUNTIME_SETTING]
    return provider()
