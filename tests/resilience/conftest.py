"""Fixtures the notification tests share: a local HTTP receiver and a requests session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.fakes.http_receiver import HttpReceiver


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    """A started receiver on a free loopback port; stopped, its threads joined, afterwards."""
    with HttpReceiver() as started:
        yield started


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A requests session, closed afterwards."""
    with requests.Session() as opened:
        yield opened
