"""Broker adapters behind one Protocol: the paper broker (Redis, ``tasks.brokers.paper``) and
Alpaca (``tasks.brokers.alpaca``, not imported here: alpaca-py takes seconds to import)."""

from tasks.brokers.base import Account, BrokerAdapter, BrokerAPIError, Order, Position, Quote

__all__ = ["Account", "BrokerAPIError", "BrokerAdapter", "Order", "Position", "Quote"]
