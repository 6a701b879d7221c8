"""Alchemiser's resilience building blocks for Celery apps: a typed error hierarchy whose classes
declare their retry policy, the task base class that applies it, dead letters, fleet-wide guards
in Redis, and escalation.

What an app author needs is exported here (README, "Your own resilient task")::

    class MailServerBusy(AlchemiserError):
        policy = RetryPolicy(retryable=True, max_attempts=4, backoff=Exponential(base_s=0.5))

    @app.task(base=ResilientTask)
    def send(to: str) -> None: ...
"""

from resilience.errors import AlchemiserError, ErrorSeverity
from resilience.guard.resources import (
    BreakerConfig,
    ConcurrencyConfig,
    RateLimitConfig,
    ResourceConfig,
    RetryBudgetConfig,
)
from resilience.policy.backoff import Decorrelated, Exponential, Fibonacci, Fixed, Jitter, Linear
from resilience.policy.classify import default_classifier
from resilience.policy.domain import BodyRule, ClassifierDomain, ErrorFamilies
from resilience.policy.resolver import Action, Decision, decide
from resilience.policy.retry import RetryPolicy, never_retry
from resilience.runtime import LazyRuntime, build_resilience_runtime, install_runtime
from resilience.task import ResilienceRuntime, ResilientTask

__all__ = [
    "Action",
    "AlchemiserError",
    "BodyRule",
    "BreakerConfig",
    "ClassifierDomain",
    "ConcurrencyConfig",
    "Decision",
    "Decorrelated",
    "ErrorFamilies",
    "ErrorSeverity",
    "Exponential",
    "Fibonacci",
    "Fixed",
    "Jitter",
    "LazyRuntime",
    "Linear",
    "RateLimitConfig",
    "ResilienceRuntime",
    "ResilientTask",
    "ResourceConfig",
    "RetryBudgetConfig",
    "RetryPolicy",
    "build_resilience_runtime",
    "decide",
    "default_classifier",
    "install_runtime",
    "never_retry",
]
