"""What an application tells the classifier about its world (a :class:`ClassifierDomain`): the
error families of each of its components, rules read off HTTP bodies, and the client packages
whose errors mean "the remote side failed". ``resilience`` ships none of its own."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from resilience.errors import AlchemiserError, RemoteServiceError, ValidationError

__all__ = ["BodyRule", "ClassifierDomain", "Component", "ErrorFamilies"]

# What part of an application a task belongs to ("trading", "mail", ...): chooses the error
# families its failures fall into, and labels its metrics.
Component: TypeAlias = str


@dataclass(frozen=True, slots=True)
class ErrorFamilies:
    """The hierarchy classes a component's foreign failures become."""

    # Timeouts, 5xx, 408, connection trouble: worth another try.
    transient: type[AlchemiserError] = RemoteServiceError
    # A reply that cannot be read (bad JSON, a decoding error).
    garbled: type[AlchemiserError] = RemoteServiceError
    # A 4xx the remote side refused (other than 401, 403, 429 and a domain's body rules).
    refused: type[AlchemiserError] = ValidationError


@dataclass(frozen=True, slots=True)
class BodyRule:
    """An HTTP ``status`` whose body matches ``pattern`` means ``error`` (e.g. a 403 saying
    "insufficient buying power"), for the given components or, with ``None``, for all."""

    status: int
    pattern: re.Pattern[str]
    error: type[AlchemiserError]
    components: frozenset[str] | None = None

    def matches(self, status: int, body: str, component: Component) -> bool:
        """Whether this rule decides a ``status`` reply with ``body`` for ``component``."""
        if status != self.status:
            return False
        if self.components is not None and component not in self.components:
            return False
        return self.pattern.search(body) is not None


@dataclass(frozen=True, slots=True)
class ClassifierDomain:
    """What an application tells the classifier about its world: the error families of each
    component (``default`` for any other), rules read off HTTP bodies, and the top-level
    packages of client libraries whose errors mean "the remote side failed"."""

    default: ErrorFamilies = field(default_factory=ErrorFamilies)
    components: Mapping[str, ErrorFamilies] = field(default_factory=dict)
    body_rules: tuple[BodyRule, ...] = ()
    network_packages: frozenset[str] = frozenset()

    def families(self, component: Component) -> ErrorFamilies:
        """The families of ``component``."""
        return self.components.get(component, self.default)
