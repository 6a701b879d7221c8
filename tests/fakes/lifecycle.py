"""The context-manager half every fake server shares: ``with Fake() as fake`` starts it and
stops it whatever happens."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["Served"]


class Served(ABC):
    """A local server a test starts and stops; ``with`` does both."""

    @abstractmethod
    def start(self) -> Self:
        """Listen; return self."""

    @abstractmethod
    def stop(self) -> None:
        """Stop listening and release the port."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
