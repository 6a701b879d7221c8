"""A second source of quotes, used when the broker's market data fails.

``ALCHEMISER_QUOTE_FALLBACK`` names it: ``none``; ``paper`` (the paper exchange's own quotes, for
tests and demos; fault rules reach it as ``fallback.get_quote``); or ``module:factory``, a
callable taking no argument that returns a :class:`QuoteProvider` (a deployment's own data
vendor, configured from its own environment).
"""

from __future__ import annotations

import importlib
from typing import Protocol, runtime_checkable

from redis import Redis

from resilience.chaos import ChaosStore
from resilience.errors import ConfigurationError
from resilience.storage.clock import Clock
from resilience.storage.keys import KeySpace
from tasks.brokers.base import Quote
from tasks.brokers.paper import PaperBroker

__all__ = ["FALLBACK_CHAOS_TARGETS", "PaperQuotes", "QuoteProvider", "fallback_provider"]

FALLBACK_CHAOS_TARGETS = ("fallback.get_quote",)


@runtime_checkable
class QuoteProvider(Protocol):
    """Something that quotes a symbol (raising its own errors when it cannot)."""

    name: str

    def get_quote(self, symbol: str) -> Quote:
        """The latest quote of ``symbol``."""
        ...


class PaperQuotes:
    """The paper exchange's quotes as a second provider, with fault rules of its own."""

    name = "paper"

    def __init__(self, client: Redis, keys: KeySpace, *, clock: Clock, chaos: ChaosStore) -> None:
        # Its own paper exchange without the broker's fault rules: a fault injected into
        # broker.get_quote must not reach the second provider.
        self._paper = PaperBroker(client, keys, clock=clock, chaos=None)
        self._chaos = chaos

    def get_quote(self, symbol: str) -> Quote:
        """The paper exchange's quote of ``symbol``."""
        self._chaos.strike(FALLBACK_CHAOS_TARGETS[0], "before")
        quote = self._paper.get_quote(symbol)
        self._chaos.strike(FALLBACK_CHAOS_TARGETS[0], "after")
        return quote


def fallback_provider(
    name: str, client: Redis, keys: KeySpace, *, clock: Clock, chaos: ChaosStore
) -> QuoteProvider | None:
    """The second provider ``name`` (the setting's value) stands for; ``None`` for ``none``."""
    if name == "none":
        return None
    if name == "paper":
        return PaperQuotes(client, keys, clock=clock, chaos=chaos)
    module_name, _, attribute = name.partition(":")
    if not (module_name and attribute):
        raise ConfigurationError(
            f"ALCHEMISER_QUOTE_FALLBACK={name!r}: use none, paper or module:factory"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
        provider = factory()
    except Exception as failure:
        raise ConfigurationError(
            f"ALCHEMISER_QUOTE_FALLBACK={name!r}: could not build the provider:"
            f" {type(failure).__name__}: {failure}"
        ) from failure
    if not isinstance(provider, QuoteProvider):
        raise ConfigurationError(
            f"ALCHEMISER_QUOTE_FALLBACK={name!r} built a {type(provider).__name__}, which has"
            " no name and get_quote(symbol)"
        )
    return provider
