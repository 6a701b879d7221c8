"""Alchemiser's reusable resilience building blocks (no knowledge of trading or the app)."""

from resilience.backoff import Decorrelated, Exponential, Fibonacci, Fixed, Jitter, Linear
from resilience.errors import AlchemiserError, ErrorSeverity
from resilience.policy import RetryPolicy
from resilience.resolver import Action, Decision, decide

__all__ = [
    "Action",
    "AlchemiserError",
    "Decision",
    "Decorrelated",
    "ErrorSeverity",
    "Exponential",
    "Fibonacci",
    "Fixed",
    "Jitter",
    "Linear",
    "RetryPolicy",
    "decide",
]
