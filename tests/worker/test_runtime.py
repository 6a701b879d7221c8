"""Tests of ``worker.runtime.build_runtime``: the broker adapter it builds from settings."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import requests

from resilience.errors import ConfigurationError
from tasks.brokers.alpaca import AlpacaBroker
from tasks.runtime import TradingRuntime
from tests.fakes.alpaca_api import FakeAlpacaAPI, Fault
from tests.namespaces import fresh_namespace
from worker.application import create_app
from worker.runtime import build_runtime
from worker.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the environment the tests run in."""
    for name in list(os.environ):
        if name.upper().startswith(("ALCHEMISER_", "ALPACA_")):
            monkeypatch.delenv(name)


def alpaca_settings(redis_url: str, **changes: object) -> Settings:
    """Settings of an Alpaca deployment, with ``changes``."""
    fields: dict[str, object] = {"redis_url": redis_url, "trading_broker": "alpaca", **changes}
    return Settings(**fields)  # type: ignore[arg-type]


@pytest.fixture
def runtime(redis_url: str, fake_alpaca: FakeAlpacaAPI) -> Iterator[TradingRuntime]:
    """A runtime built for Alpaca, pointed at the fake, with a 0.3 s timeout."""
    built = build_runtime(
        alpaca_settings(
            redis_url,
            alpaca_api_key=fake_alpaca.api_key,
            alpaca_secret_key=fake_alpaca.secret_key,
            alpaca_base_url=fake_alpaca.url,
            alpaca_data_url=fake_alpaca.url,
            alpaca_timeout_s=0.3,
        )
    )
    yield built
    assert isinstance(built.broker, AlpacaBroker)
    built.broker.close()
    built.resilience.redis.close()


def test_alpaca_broker_is_built_from_settings(
    runtime: TradingRuntime, fake_alpaca: FakeAlpacaAPI
) -> None:
    """ALCHEMISER_TRADING_BROKER=alpaca builds the adapter with the URLs, keys and timeout."""
    broker = runtime.broker

    assert isinstance(broker, AlpacaBroker)
    assert broker.get_account().cash == 100_000.0
    assert broker.get_quote("AAPL").ask > 0
    fake_alpaca.inject("GET /v2/account", Fault.hang(30))
    started_s = time.monotonic()
    with pytest.raises(requests.Timeout):
        broker.get_account()
    assert time.monotonic() - started_s < 1.3


@pytest.mark.parametrize(
    ("keys", "named", "not_named"),
    [
        ({}, ["ALPACA_API_KEY", "ALPACA_SECRET_KEY"], []),
        ({"alpaca_api_key": "PKKEY"}, ["ALPACA_SECRET_KEY"], ["ALPACA_API_KEY"]),
        ({"alpaca_secret_key": "secret"}, ["ALPACA_API_KEY"], ["ALPACA_SECRET_KEY"]),
    ],
)
def test_alpaca_without_keys_is_a_configuration_error(
    redis_url: str, keys: dict[str, str], named: list[str], not_named: list[str]
) -> None:
    """A missing key stops the build with a message naming exactly the variables to set."""
    with pytest.raises(ConfigurationError) as refused:
        build_runtime(alpaca_settings(redis_url, **keys))

    for name in named:
        assert name in refused.value.message
    for name in not_named:
        assert name not in refused.value.message


def test_a_spent_alpaca_window_holds_back_the_whole_fleets_account_limiter(
    redis_url: str, fake_alpaca: FakeAlpacaAPI
) -> None:
    """A 429 with X-RateLimit-Reset seen by one worker pushes the shared ``broker.api``
    limiter to the reset: another worker's admission is refused until then."""
    namespace = fresh_namespace("rt")
    settings = alpaca_settings(
        redis_url,
        namespace=namespace,
        alpaca_api_key=fake_alpaca.api_key,
        alpaca_secret_key=fake_alpaca.secret_key,
        alpaca_base_url=fake_alpaca.url,
        alpaca_data_url=fake_alpaca.url,
    )
    first, second = build_runtime(settings), build_runtime(settings)
    try:
        second_guard = second.resilience.guard
        assert second_guard is not None
        assert second_guard.admit(["broker.api"]).admitted
        reset_at = int(time.time()) + 20
        fake_alpaca.inject("GET /v2/account", Fault.rate_limited(reset_at_s=reset_at))
        with pytest.raises(Exception, match="429"):
            first.broker.get_account()
        refused = second_guard.admit(["broker.api"])
        assert not refused.admitted
        assert refused.reason == "rate limited"
        assert reset_at - time.time() - 1.5 <= refused.retry_after_s <= reset_at - time.time() + 0.5
    finally:
        for built in (first, second):
            assert isinstance(built.broker, AlpacaBroker)
            built.broker.close()
        client = first.resilience.redis
        for key in client.scan_iter(match=f"{namespace}:*"):
            client.delete(key)
        client.close()
        second.resilience.redis.close()


def test_an_alpaca_worker_imports_alpaca_py_before_its_pool_forks(redis_url: str) -> None:
    """The worker's parent imports the adapter (Celery's include), so prefork children inherit
    it instead of each paying ~2 s on its first order; paper workers never import it."""
    assert "tasks.brokers.alpaca" in create_app(alpaca_settings(redis_url)).conf.include
    paper = Settings(redis_url=redis_url)
    assert "tasks.brokers.alpaca" not in create_app(paper).conf.include


def test_beat_sweeps_alerts_and_evaluates_thresholds_every_minute(redis_url: str) -> None:
    """Beat publishes tasks.escalate(sweep) and tasks.escalate(evaluate) every minute, routed
    to the escalation queue."""
    app = create_app(Settings(redis_url=redis_url))
    thresholds = app.conf.beat_schedule["alert-thresholds"]
    assert (thresholds["task"], thresholds["schedule"], thresholds["kwargs"]) == (
        "tasks.escalate",
        60.0,
        {"evaluate": {}},
    )
    entry = app.conf.beat_schedule["escalation-sweep"]
    assert (entry["task"], entry["schedule"], entry["kwargs"]) == (
        "tasks.escalate",
        60.0,
        {"sweep": {}},
    )
    assert app.amqp.router.route({}, "tasks.escalate")["queue"].name == "escalation"
