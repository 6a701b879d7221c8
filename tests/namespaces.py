"""Namespaces of this test run's own.

Every namespace a test makes carries the run's id, so the run can check what it left in Redis
without mistaking another run's keys (two suites may share one Redis) for its own. This lives
outside conftest.py: pytest imports a conftest under a name of its own, and a test module that
imported it again would get a second module with another run id.
"""

from __future__ import annotations

from uuid import uuid4

__all__ = ["RUN_ID", "fresh_namespace"]

RUN_ID = uuid4().hex[:8]


def fresh_namespace(kind: str) -> str:
    """A namespace of this test run's own: ``<kind>-<run id>-<random>``."""
    return f"{kind}-{RUN_ID}-{uuid4().hex[:10]}"
