"""Local stand-ins for the outside services Alchemiser talks to (real servers on loopback)."""

from tests.fakes.alpaca_api import ANY_ROUTE, ROUTES, FakeAlpacaAPI, Fault, RequestRecord

__all__ = ["ANY_ROUTE", "ROUTES", "FakeAlpacaAPI", "Fault", "RequestRecord"]
