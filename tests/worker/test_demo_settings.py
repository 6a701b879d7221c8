"""The demo's settings are the configured ones, pointed at its Redis, with its resources."""

from __future__ import annotations

from resilience.guard.resources import ResourceConfig
from worker.demo import DEMO_RESOURCES, demo_settings
from worker.settings import Settings


def test_demo_settings_carry_the_demo_resources_validated() -> None:
    base = Settings(redis_url="redis://127.0.0.1:6379/0", namespace="alchemiser")
    settings = demo_settings(
        base,
        redis_url="redis://127.0.0.1:51571/0",
        broker_url="redis://127.0.0.1:51571/0",
        namespace="alchemiser-demo-abc123",
    )
    configs = settings.resource_configs
    assert settings.redis_url == "redis://127.0.0.1:51571/0"
    assert settings.namespace == "alchemiser-demo-abc123"
    assert settings.trading_broker == "paper"
    assert settings.log_level == "ERROR"
    assert all(isinstance(config, ResourceConfig) for config in configs.values())
    for name in DEMO_RESOURCES:
        assert name in configs
