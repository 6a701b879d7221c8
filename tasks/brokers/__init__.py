"""Broker adapters behind one Protocol: the paper broker (Redis) and, later, Alpaca."""

from tasks.brokers.base import Account, BrokerAdapter, BrokerAPIError, Order, Position, Quote

__all__ = ["Account", "BrokerAPIError", "BrokerAdapter", "Order", "Position", "Quote"]
