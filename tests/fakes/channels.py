"""A notification channel that answers from a script, for escalation tests."""

from __future__ import annotations

from collections import deque

from resilience.notify.channel import Delivery
from resilience.notify.model import Notification

__all__ = ["ScriptedChannel"]


class ScriptedChannel:
    """Answers each send with the next scripted Delivery, then delivers; records what it was
    sent."""

    def __init__(self, name: str, *answers: Delivery) -> None:
        self._name = name
        self._answers = deque(answers)
        self.sent: list[Notification] = []

    @property
    def name(self) -> str:
        return self._name

    def send(self, notification: Notification) -> Delivery:
        self.sent.append(notification)
        return self._answers.popleft() if self._answers else Delivery.ok(self._name, 0.01)
