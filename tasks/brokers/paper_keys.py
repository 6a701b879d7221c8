"""The paper broker's keys (the simulated exchange), under the deployment's namespace and one
hash tag, so its Lua scripts may touch them all."""

from __future__ import annotations

from dataclasses import dataclass

from resilience.storage.keys import KeySpace

__all__ = ["PaperKeys"]

_TAG = "paper"


@dataclass(frozen=True, slots=True)
class PaperKeys:
    """The paper broker's keys in ``keys``' namespace."""

    keys: KeySpace

    @property
    def orders(self) -> str:
        return self.keys.app_key(_TAG, "orders")

    @property
    def order_ids(self) -> str:
        return self.keys.app_key(_TAG, "order_ids")

    @property
    def positions(self) -> str:
        return self.keys.app_key(_TAG, "positions")

    @property
    def account(self) -> str:
        return self.keys.app_key(_TAG, "account")

    @property
    def quotes(self) -> str:
        return self.keys.app_key(_TAG, "quotes")

    @property
    def log(self) -> str:
        """The exchange's event log (a stream): every order booked, filled, canceled."""
        return self.keys.app_key(_TAG, "log")
