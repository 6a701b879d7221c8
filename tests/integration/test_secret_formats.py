"""Secrets of well-known formats that nobody configured (a Stripe key, a ``private_key=``
assignment) in a broker's error message reach no log, no dead letter, no Redis key, no Sentry
event and no Slack or webhook payload on real workers (issue 13, item 8)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import cast

import pytest
from redis import Redis

from resilience.chaos import ChaosRule
from tests.fakes.http_receiver import HttpReceiver
from tests.fakes.sentry_receiver import SentryReceiver
from tests.integration.harness import Deployment, order_kwargs, wait_for

pytestmark = pytest.mark.integration

STRIPE_KEY = "sk_live_ABC123SECRET"
PRIVATE_KEY = "PRIVKEY0001"
SECRETS = (STRIPE_KEY, PRIVATE_KEY)


def read(client: Redis, key: str) -> object:
    """The value of ``key``, whatever its type."""
    match client.type(key):
        case "string":
            return client.get(key)
        case "hash":
            return client.hgetall(key)
        case "list":
            return client.lrange(key, 0, -1)
        case "set":
            return client.smembers(key)
        case "zset":
            return client.zrange(key, 0, -1, withscores=True)
        case "stream":
            return client.xrange(key)
        case other:
            raise AssertionError(f"{key} is a {other!r}")


def stored_text(deployment: Deployment) -> str:
    """Every value of the deployment's keys but the chaos rules (the injected message)."""
    client = deployment.redis
    rules = deployment.runtime.resilience.keys.chaos_rules
    pattern = f"{deployment.settings.namespace}:*"
    found = client.scan_iter(match=pattern, count=1000)
    keys = [cast(str, key) for key in found if key != rules]  # decode_responses
    return "\n".join(f"{key} {read(client, key)!r}" for key in keys)


def test_token_formats_in_a_broker_error_leak_nowhere(
    deployment_factory: Callable[..., Deployment],
    slack: HttpReceiver,
    hook: HttpReceiver,
    sentry: SentryReceiver,
) -> None:
    """The broker refuses an order with ``sk_live_…`` and ``private_key=…`` in its message: the
    dead letter says [Filtered], and neither value is in the worker's log, any Redis key of the
    deployment, the Sentry event, or what Slack and the webhook received."""
    deployment = deployment_factory(
        SENTRY_DSN=sentry.dsn(),
        ALCHEMISER_SLACK_WEBHOOK_URL=f"{slack.url}/services/T000/B000/XXXX",
        ALCHEMISER_WEBHOOK_URL=f"{hook.url}/alerts",
        ALCHEMISER_ESCALATION=json.dumps(
            {
                "rules": [
                    {
                        "name": "everything",
                        "group_wait_s": 0,
                        "levels": [{"after_s": 0, "channels": ["slack", "webhook"]}],
                    }
                ]
            }
        ),
    )
    deployment.runtime.chaos.inject(
        ChaosRule(
            "broker.submit_order",
            "http:401",
            message=f"card declined for {STRIPE_KEY}; signing with private_key={PRIVATE_KEY}",
        )
    )
    deployment.start_workers(concurrency=1)
    task_id = deployment.submit(order_kwargs())
    entry = deployment.dead_letter(task_id, 60)
    wait_for(lambda: bool(slack.requests and hook.requests), 30, "the Slack and webhook posts")
    wait_for(lambda: bool(sentry.events()), 30, "the dead letter's Sentry event")

    assert "[Filtered]" in entry.message
    logs = "".join(w.log() for w in deployment.workers)
    assert "task_dead_lettered" in logs
    stored = stored_text(deployment)
    assert entry.id in stored  # the dead letter is among the values read
    payloads = [r.body.decode() for r in (*slack.requests, *hook.requests)]
    assert any(entry.id in payload for payload in payloads)
    events = [envelope.body.decode() for envelope in sentry.envelopes()]
    assert any("card declined for [Filtered]" in event for event in events)
    payloads += events
    for secret in SECRETS:
        assert secret not in entry.to_json()
        assert secret not in logs
        assert secret not in stored
        for payload in payloads:
            assert secret not in payload
