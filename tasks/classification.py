"""What the classifier knows of trading: the error families of the trading and market-data
components, what a broker's refusal bodies mean, and that alpaca-py's errors are a client
library's.

``resilience`` classifies foreign exceptions generically (a 5xx is a ``RemoteServiceError``);
registered here, a 5xx of an order call is a ``TradingClientError`` and a 403 saying
"insufficient buying power" an ``InsufficientFundsError``.
"""

from __future__ import annotations

import re

from resilience.errors import (
    DataProviderError,
    DuplicateOrderError,
    InsufficientFundsError,
    MarketDataError,
    OrderExecutionError,
    PositionValidationError,
    TradingClientError,
    ValidationError,
)
from resilience.policy.classify import Classifier, default_classifier
from resilience.policy.domain import BodyRule, ClassifierDomain, ErrorFamilies

__all__ = [
    "MARKET_DATA",
    "TRADING",
    "TRADING_DOMAIN",
    "TRADING_MESSAGE_MASKS",
    "trading_classifier",
]

TRADING = "trading"
MARKET_DATA = "market_data"

_INSUFFICIENT_RE = re.compile(
    r"insufficient[\s_]+(buying|funds?|balance|cash|margin|equity|qty|quantity|shares|position|day)"
)
_REFUSED_ORDER_RE = re.compile(
    r"wash[\s_-]+trade|pattern[\s_]+day[\s_]+trad|not[\s_]+tradable|not[\s_]+shortable"
)
_DUPLICATE_RE = re.compile(
    r"client[\s_]?order[\s_]?id\W{0,4}\w*\W{0,4}(must[\s_]+be[\s_]+unique|unique|duplicate|"
    r"already)|duplicate[\s_]+(client[\s_]+)?order"
)
_POSITION_RE = re.compile(
    r"insufficient[\s_]+(qty|quantity|position|shares)|\bposition\b|qty[\s_]+available"
)

_ORDERS = ErrorFamilies(
    transient=TradingClientError, garbled=TradingClientError, refused=OrderExecutionError
)

TRADING_DOMAIN = ClassifierDomain(
    # Every component but market data fails like the trading API (escalation included).
    default=_ORDERS,
    components={
        TRADING: _ORDERS,
        MARKET_DATA: ErrorFamilies(
            transient=MarketDataError, garbled=DataProviderError, refused=ValidationError
        ),
    },
    body_rules=(
        BodyRule(403, _INSUFFICIENT_RE, InsufficientFundsError),
        # A refused order, not an intrusion: do not page security.
        BodyRule(403, _REFUSED_ORDER_RE, OrderExecutionError, components=frozenset({TRADING})),
        BodyRule(422, _DUPLICATE_RE, DuplicateOrderError),
        BodyRule(422, _POSITION_RE, PositionValidationError),
    ),
    network_packages=frozenset({"alpaca"}),
)


# Ticker symbols in error messages (AAPL, BRK.B), but not the capitals of protocols and units.
TRADING_MESSAGE_MASKS: tuple[tuple[str, str], ...] = (
    (
        r"(?<![\w<.])(?!(?:HTTP|HTTPS|API|URL|JSON|SSL|TLS|UTC|ID|OK|GET|POST|PUT|DELETE)\b)"
        r"[A-Z]{1,5}(?:\.[A-Z])?(?![\w>])",
        "<symbol>",
    ),
)


def trading_classifier() -> Classifier:
    """The default rules with the trading domain registered."""
    return default_classifier(TRADING_DOMAIN)
