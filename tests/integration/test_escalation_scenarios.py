"""Escalation's guarantees on real workers, against real local peers (an aiosmtpd SMTP server,
HTTP receivers for Slack and a webhook), with the fleet's escalation clock moved by the chaos
drill (``ChaosStore.shift_clock``) instead of waiting: grouping and reminders, acknowledgement
and levels across a worker restart, retries after 429 and 421, fallback when a channel is down
for good, and secrets planted in kwargs that reach no payload.

Each deployment polls its alerts every second (``group_interval`` 1 s) so a clock jump is seen
within a second; the flushes each worker ran are read from its structured log
(``alert_flush``), so "nothing more was sent" is checked after flushes ran, not after a sleep.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from resilience.chaos import ChaosRule
from resilience.notify.alert_store import AlertStore
from resilience.notify.escalator import DeliveryStats
from tests.fakes.http_receiver import HttpReceiver, Reply, closed_port
from tests.fakes.smtp_server import SmtpServer
from tests.integration.harness import Deployment, order_kwargs, wait_for
from worker.cli.main import app as cli
from worker.fleet import WorkerProcess

pytestmark = pytest.mark.integration

SLACK_PATH = "/services/T000/B000/SlackSecret42"
POLL_EVERY_S = "1"


def email_settings(smtp: SmtpServer) -> dict[str, str]:
    return {
        "ALCHEMISER_SMTP_HOST": smtp.host,
        "ALCHEMISER_SMTP_PORT": str(smtp.port),
        "ALCHEMISER_SMTP_SECURITY": "none",
        "ALCHEMISER_SMTP_SENDER": "alchemiser@example.com",
        "ALCHEMISER_SMTP_RECIPIENTS": "oncall@example.com",
    }


def escalation(*rules: dict[str, Any]) -> str:
    return json.dumps({"rules": list(rules)})


def critical_at_once(*channels: str) -> str:
    """A policy telling ``channels`` of a critical failure at once."""
    return escalation(
        {
            "name": "critical",
            "severities": ["critical"],
            "group_wait_s": 0,
            "levels": [{"after_s": 0, "channels": list(channels)}],
        }
    )


def dead_letter_a_critical_order(deployment: Deployment) -> None:
    """Start two workers and have one order refused as a SecurityError (critical, never
    retried): dead-lettered and escalated."""
    deployment.runtime.chaos.inject(ChaosRule("broker.submit_order", "SecurityError", count=1))
    deployment.start_workers(concurrency=2)
    deployment.dead_letter(deployment.submit(order_kwargs("NVDA", 1)), 60)


def counts(deployment: Deployment, wanted: dict[str, int]) -> dict[str, int]:
    """The fleet's delivery counters named in ``wanted``, now (0 for one not yet written)."""
    stats = DeliveryStats(deployment.redis, deployment.runtime.resilience.keys).snapshot()
    return {name: int(stats.get(name, 0)) for name in wanted}


def flushes(deployment: Deployment, alert_id: str | None = None) -> list[dict[str, Any]]:
    """The alert flushes the deployment's workers ran (of one alert, if given), in order."""
    events = deployment.log_events("alert_flush")
    return [e for e in events if alert_id is None or e["alert_id"] == alert_id]


def flushes_by(worker: WorkerProcess, alert_id: str) -> list[dict[str, Any]]:
    """The flushes of ``alert_id`` one worker ran, in order."""
    events = []
    for line in worker.log_path.read_text(errors="replace").splitlines():
        if line.startswith('{"') and "alert_flush" in line:
            with contextlib.suppress(json.JSONDecodeError):  # the line being written
                events.append(json.loads(line))
    return [e for e in events if e.get("event") == "alert_flush" and e["alert_id"] == alert_id]


def wait_for_flushes(deployment: Deployment, alert_id: str, more: int) -> None:
    """Wait until ``more`` flushes of ``alert_id`` ran after the ones that ran so far."""
    target = len(flushes(deployment, alert_id)) + more
    wait_for(
        lambda: len(flushes(deployment, alert_id)) >= target, 30, f"{more} flushes of {alert_id}"
    )


def test_a_hundred_failures_within_group_wait_are_one_notification_then_one_reminder(
    deployment_factory: Callable[..., Deployment],
    smtp: SmtpServer,
    slack: HttpReceiver,
    hook: HttpReceiver,
) -> None:
    """100 orders refused for insufficient funds (never retried: 100 dead letters) within a
    10-minute group_wait are one alert of count 100; nobody hears of it until group_wait has
    passed, then each channel gets one notification saying 100; flushes after it send nothing
    until repeat_interval has passed, then exactly one reminder per channel."""
    deployment = deployment_factory(
        **email_settings(smtp),
        ALCHEMISER_SLACK_WEBHOOK_URL=f"{slack.url}{SLACK_PATH}",
        ALCHEMISER_WEBHOOK_URL=f"{hook.url}/alerts",
        ALCHEMISER_ESCALATION=escalation(
            {
                "name": "orders",
                "error_types": ["OrderExecutionError"],
                "levels": [{"after_s": 0, "channels": ["email", "slack", "webhook"]}],
            }
        ),
        ALCHEMISER_GROUPING_GROUP_WAIT_S="600",
        ALCHEMISER_GROUPING_GROUP_INTERVAL_S=POLL_EVERY_S,
        ALCHEMISER_GROUPING_REPEAT_INTERVAL_S="3600",
        ALCHEMISER_GROUPING_RESOLVE_AFTER_S="7200",
    )
    deployment.runtime.chaos.inject(
        ChaosRule("broker.submit_order", "InsufficientFundsError", count=100)
    )
    deployment.start_workers(concurrency=4)
    for _ in range(100):
        deployment.submit(order_kwargs("AAPL", 1))
    alerts = AlertStore(deployment.redis, deployment.runtime.resilience.keys)
    wait_for(
        lambda: [a.count for a in alerts.open_alerts()] == [100], 90, "100 failures in one alert"
    )
    (alert,) = alerts.open_alerts()
    wait_for_flushes(deployment, alert.alert_id, 3)
    assert (len(smtp.messages), len(slack.requests), len(hook.requests)) == (0, 0, 0)

    deployment.runtime.chaos.shift_clock(600)  # group_wait has passed
    wait_for(
        lambda: min(len(smtp.messages), len(slack.requests), len(hook.requests)) >= 1,
        30,
        "the first notification on every channel",
    )
    wait_for_flushes(deployment, alert.alert_id, 3)
    assert (len(smtp.messages), len(slack.requests), len(hook.requests)) == (1, 1, 1)
    assert hook.requests[0].json()["count"] == 100
    assert "100 failures" in slack.requests[0].body.decode()
    assert "100" in smtp.messages[0].message.get_body(("plain",)).get_content()

    deployment.runtime.chaos.shift_clock(3600)  # repeat_interval has passed
    wait_for(lambda: len(hook.requests) >= 2, 30, "the reminder")
    wait_for_flushes(deployment, alert.alert_id, 3)
    assert (len(smtp.messages), len(slack.requests), len(hook.requests)) == (2, 2, 2)
    assert hook.requests[1].json()["count"] == 100
    actions = [f["action"] for f in flushes(deployment, alert.alert_id) if f["action"] != "none"]
    assert [a for a in actions if a != "wait"] == ["notify", "repeat"]


def test_an_unacknowledged_alert_escalates_at_its_delay_after_a_worker_restart(
    deployment_factory: Callable[..., Deployment], smtp: SmtpServer, slack: HttpReceiver
) -> None:
    """Two alerts, each told to email at once; one is acknowledged. The worker that scheduled
    their flushes is stopped; 15 minutes later (the drill's clock) a new worker runs the chains
    it left: the unacknowledged alert reaches level 1 (Slack), the acknowledged one does not."""
    deployment = deployment_factory(
        **email_settings(smtp),
        ALCHEMISER_SLACK_WEBHOOK_URL=f"{slack.url}{SLACK_PATH}",
        ALCHEMISER_ESCALATION=escalation(
            {
                "name": "orders",
                "error_types": ["OrderExecutionError"],
                "group_wait_s": 0,
                "levels": [
                    {"after_s": 0, "channels": ["email"]},
                    {"after_s": 900, "channels": ["slack"]},
                ],
            }
        ),
        ALCHEMISER_GROUPING_GROUP_INTERVAL_S=POLL_EVERY_S,
        # A message the stopped worker still held comes back within this (plus a sweep) even if
        # its shutdown did not give it back: 2 of 5 full-suite runs waited the default 60 s.
        ALCHEMISER_VISIBILITY_TIMEOUT_S="8",
    )
    chaos = deployment.runtime.chaos
    (first,) = deployment.start_workers(concurrency=2)
    for error in ("InsufficientFundsError", "OrderExecutionError"):
        chaos.inject(ChaosRule("broker.submit_order", error, count=1))
        deployment.dead_letter(deployment.submit(order_kwargs("MSFT", 1)), 60)
    wait_for(lambda: len(smtp.messages) >= 2, 30, "level 0 of both alerts")
    alerts = {
        a.group: a
        for a in AlertStore(deployment.redis, deployment.runtime.resilience.keys).open_alerts()
    }
    acked = alerts["InsufficientFundsError:trading"]
    unacked = alerts["OrderExecutionError:trading"]
    assert AlertStore(deployment.redis, deployment.runtime.resilience.keys).ack(acked.alert_id)

    ids = (acked.alert_id, unacked.alert_id)
    # The first worker ran both chains: the flush's log line follows its email.
    wait_for(lambda: all(flushes(deployment, a) for a in ids), 30, "both flushes' log lines")
    first.stop()
    chaos.shift_clock(900)
    (second,) = deployment.start_workers(concurrency=2)

    # The new worker runs both chains on until each alert is resolved (quiet and escalated
    # as far as it will).
    def resolved(alert_id: str) -> bool:
        return any(f["action"] == "resolve" for f in flushes(deployment, alert_id))

    wait_for(lambda: all(resolved(a) for a in ids), 30, "both chains to run on and end")
    sent_after = {
        a: [
            (f["action"], f["levels"], f["delivered_to"])
            for f in flushes_by(second, a)
            if f["action"] not in ("none", "wait")
        ]
        for a in ids
    }
    assert sent_after[unacked.alert_id] == [
        ("notify", [1], ["slack"]),
        ("resolve", [0, 1], ["email", "slack"]),
    ]
    assert sent_after[acked.alert_id] == [("resolve", [0], ["email"])]
    slack_texts = [json.loads(r.body)["text"] for r in slack.requests]
    assert len(slack_texts) == 2
    assert all("OrderExecutionError" in text for text in slack_texts)


def test_slack_429_and_smtp_421_are_retried_and_the_429_after_its_retry_after(
    deployment_factory: Callable[..., Deployment], smtp: SmtpServer, slack: HttpReceiver
) -> None:
    """A critical dead letter: Slack answers 429 with Retry-After 2, SMTP answers 421 once.
    Each is tried again (the 429 no sooner than its Retry-After) and delivers; the failures
    are counted by reason, the notification went to the console fallback meanwhile."""
    slack.reply_with(Reply(429, headers={"Retry-After": "2"}))
    smtp.reply_to_data("421 4.3.2 Service not available, try again later")
    deployment = deployment_factory(
        **email_settings(smtp),
        ALCHEMISER_SLACK_WEBHOOK_URL=f"{slack.url}{SLACK_PATH}",
        ALCHEMISER_NOTIFICATION_RETRY_S="1",
        ALCHEMISER_ESCALATION=critical_at_once("email", "slack"),
    )
    dead_letter_a_critical_order(deployment)
    wait_for(
        lambda: len(slack.requests) >= 2 and len(smtp.messages) >= 1, 60, "the retries to deliver"
    )
    first_post, second_post = slack.requests[:2]
    assert second_post.monotonic_s - first_post.monotonic_s >= 2.0
    assert first_post.body == second_post.body
    refused, accepted = smtp.transactions[:2]
    assert (refused.reply[:3], accepted.accepted) == ("421", True)
    assert accepted.received_at_s - refused.received_at_s >= 1.0
    expected = {
        "notifications_total|slack": 2,
        "notifications_total|email": 2,
        "notifications_failed_total|slack|rate_limited": 1,
        "notifications_failed_total|email|server_error": 1,
        "notifications_total|console": 1,
    }
    # A delivery is counted after the receiver answered it: wait for the counts to land.
    wait_for(lambda: counts(deployment, expected) == expected, 30, "the delivery counts")


def test_a_channel_down_for_good_falls_back_and_nearly_everything_is_delivered(
    deployment_factory: Callable[..., Deployment], smtp: SmtpServer
) -> None:
    """Slack is down for the whole scenario (nothing listens on its port): 60 alerts from 60
    desks, each to be told on Slack, reach email, the level's fallback. Delivery counting
    fallbacks is measured at the SMTP server: at least 99 % (here every one)."""
    alerts = 60
    deployment = deployment_factory(
        **email_settings(smtp),
        ALCHEMISER_SLACK_WEBHOOK_URL=f"http://127.0.0.1:{closed_port()}{SLACK_PATH}",
        ALCHEMISER_NOTIFICATION_RETRY_S="600",
        ALCHEMISER_NOTIFICATION_LIMITS=json.dumps({"error": {"limit": 1000, "window_s": 60}}),
        ALCHEMISER_ESCALATION=escalation(
            {
                "name": "desks",
                "group_wait_s": 0,
                "levels": [{"after_s": 0, "channels": ["slack"], "fallback": ["email", "console"]}],
            }
        ),
    )
    deployment.start_workers(concurrency=4)
    now = datetime.now(UTC).isoformat()
    for desk in range(alerts):
        deployment.app.send_task(
            "tasks.escalate",
            kwargs={
                "notification": {
                    "severity": "high",
                    "priority": "P2",
                    "title": f"TradingClientError in desk-{desk}: rebalance",
                    "error_type": "TradingClientError",
                    "error_id": uuid.uuid4().hex,
                    "message": "broker answered 503",
                    "component": f"desk-{desk}",
                    "operation": "rebalance",
                    "task_name": "tasks.rebalance",
                    "occurred_at": now,
                }
            },
        )
    wait_for(lambda: len(smtp.messages) >= alerts, 90, "every alert by email")
    subjects = {str(m.message["Subject"]) for m in smtp.messages}
    delivered = sum(f"[HIGH] TradingClientError in desk-{d}" in subjects for d in range(alerts))
    assert delivered / alerts >= 0.99
    expected = {
        "notifications_total|email": alerts,
        "notifications_failed_total|slack|unreachable": alerts,
    }
    wait_for(lambda: counts(deployment, expected) == expected, 30, "the delivery counts")


def test_secrets_planted_in_kwargs_and_messages_reach_no_delivered_payload(
    deployment_factory: Callable[..., Deployment],
    smtp: SmtpServer,
    slack: HttpReceiver,
    hook: HttpReceiver,
) -> None:
    """One order carries a secret in an unexpected kwarg (a secret nobody configured, so only
    its name says what it is); another fails with the deployment's own API secret and a bearer
    token in the broker's error message. Both are told on email, Slack and the webhook, and no
    payload holds any of the secrets, byte for byte. (An error's context and details are not
    part of a notification at all: it carries the message, where and when, and the ids.)"""
    api_secret = "Zr7QpL2xVn9TkB4mWc8HsD3y"
    kwarg_secret = "hunter2-Planted-Kw9"
    bearer = "eyJhbGciOiJIUzI1NiJ9.Planted.Bearer"
    deployment = deployment_factory(
        **email_settings(smtp),
        ALPACA_SECRET_KEY=api_secret,
        ALCHEMISER_SLACK_WEBHOOK_URL=f"{slack.url}{SLACK_PATH}",
        ALCHEMISER_WEBHOOK_URL=f"{hook.url}/alerts",
        ALCHEMISER_ESCALATION=escalation(
            {
                "name": "everything",
                "group_wait_s": 0,
                "levels": [{"after_s": 0, "channels": ["email", "slack", "webhook"]}],
            }
        ),
    )
    deployment.start_workers(concurrency=2)
    invalid = deployment.submit(order_kwargs("AAPL", 1, broker_password=kwarg_secret))
    assert deployment.dead_letter(invalid, 60).error_type == "ValidationError"
    deployment.runtime.chaos.inject(
        ChaosRule(
            "broker.submit_order",
            "http:401",
            count=1,
            message=f"key {api_secret} rejected; sent Authorization: Bearer {bearer}",
        )
    )
    refused = deployment.submit(order_kwargs("AAPL", 1))
    assert deployment.dead_letter(refused, 60).error_type == "SecurityError"
    wait_for(
        lambda: min(len(smtp.messages), len(slack.requests), len(hook.requests)) >= 2,
        30,
        "both failures on every channel",
    )
    payloads = [m.raw for m in smtp.messages]
    payloads += [r.body for r in (*slack.requests, *hook.requests)]
    assert {json.loads(r.body)["error_type"] for r in hook.requests} == {
        "ValidationError",
        "SecurityError",
    }
    assert any(b"broker_password" in p for p in payloads)  # the field is named, not its value
    for payload in payloads:
        for secret in (api_secret, kwarg_secret, bearer, "SlackSecret42"):
            assert secret.encode() not in payload


def test_alerts_ack_acknowledges_the_pagerduty_incident(
    deployment_factory: Callable[..., Deployment], smtp: SmtpServer, hook: HttpReceiver
) -> None:
    """A critical dead letter triggers a PagerDuty incident (and an email); `alchemiser alerts
    ack` makes the workers send PagerDuty an acknowledge event for the same dedup_key; email
    hears nothing more."""
    routing_key = "R0UT1NGKEY0123456789abcdefghijkl"
    deployment = deployment_factory(
        **email_settings(smtp),
        ALCHEMISER_PAGERDUTY_ROUTING_KEY=routing_key,
        ALCHEMISER_PAGERDUTY_EVENTS_URL=f"{hook.url}/v2/enqueue",
        ALCHEMISER_ESCALATION=critical_at_once("pagerduty", "email"),
    )
    dead_letter_a_critical_order(deployment)
    wait_for(lambda: len(hook.requests) >= 1 and len(smtp.messages) >= 1, 30, "the incident")
    (alert,) = AlertStore(deployment.redis, deployment.runtime.resilience.keys).open_alerts()

    acked = CliRunner().invoke(cli, ["alerts", "ack", alert.alert_id], env=deployment.env)
    assert acked.exit_code == 0, acked.output
    wait_for(lambda: len(hook.requests) >= 2, 30, "the acknowledge event")
    trigger, acknowledge = (r.json() for r in hook.requests[:2])
    assert (trigger["event_action"], acknowledge["event_action"]) == ("trigger", "acknowledge")
    assert acknowledge == {
        "routing_key": routing_key,
        "event_action": "acknowledge",
        "dedup_key": trigger["dedup_key"],
    }
    assert len(smtp.messages) == 1


def test_the_sweep_restarts_an_alert_whose_first_flush_was_never_published(
    deployment_factory: Callable[..., Deployment], smtp: SmtpServer
) -> None:
    """An alert opened whose first flush never reached the broker (the escalation task noted
    the failure, then could not publish): a minute later beat's sweep (sent here as beat sends
    it) makes a worker flush it, and the email goes out once; a second sweep does nothing."""
    deployment = deployment_factory(
        **email_settings(smtp),
        ALCHEMISER_ESCALATION=escalation(
            {"name": "all", "group_wait_s": 0, "levels": [{"after_s": 0, "channels": ["email"]}]}
        ),
        ALCHEMISER_GROUPING_GROUP_INTERVAL_S=POLL_EVERY_S,
    )
    keys = deployment.runtime.resilience.keys
    store = AlertStore(deployment.redis, keys)
    policy = deployment.settings.escalation_policy
    failure = {
        "severity": "high",
        "priority": "P2",
        "title": "DatabaseError in trading: sync_positions",
        "error_type": "DatabaseError",
        "error_id": uuid.uuid4().hex,
        "message": "connection reset",
        "component": "trading",
        "operation": "sync_positions",
        "task_name": "tasks.sync_positions",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    noted = store.note(failure, policy.rules[0])  # type: ignore[arg-type]
    deployment.start_workers(concurrency=2)
    deployment.runtime.chaos.shift_clock(61)
    (worker,) = deployment.workers

    def sweep() -> None:
        deployment.app.send_task("tasks.escalate", kwargs={"sweep": {}})

    sweep()
    wait_for(
        lambda: len(smtp.messages) >= 1 and len(flushes_by(worker, noted.alert_id)) >= 1,
        30,
        "the restarted flush to send the email (and log it)",
    )
    assert [f["action"] for f in flushes_by(worker, noted.alert_id)][:1] == ["notify"]
    sweep()
    wait_for(
        lambda: (
            len(deployment.log_events("alert_chain_restarted")) >= 1
            and len(flushes_by(worker, noted.alert_id)) >= 2
        ),
        30,
        "the chain to run on",
    )
    assert len(deployment.log_events("alert_chain_restarted")) == 1
    assert len(smtp.messages) == 1


def test_a_breached_threshold_is_escalated_once_per_incident(
    deployment_factory: Callable[..., Deployment], smtp: SmtpServer
) -> None:
    """A critical dead letter breaches the plan's "1 critical error in 5 minutes": the
    evaluation beat asks for (sent here as beat sends it) escalates it as
    AlertThresholdBreached in monitoring, by email at once; the next evaluation, in the same
    incident, escalates nothing more."""
    deployment = deployment_factory(
        **email_settings(smtp), ALCHEMISER_ESCALATION=critical_at_once("email")
    )
    dead_letter_a_critical_order(deployment)
    wait_for(lambda: len(smtp.messages) >= 1, 30, "the dead letter's own email")

    def evaluate() -> None:
        deployment.app.send_task("tasks.escalate", kwargs={"evaluate": {}})

    evaluate()
    wait_for(lambda: len(smtp.messages) >= 2, 30, "the threshold's email")
    subjects = [str(m.message["Subject"]) for m in smtp.messages]
    assert subjects == [
        "[CRITICAL] SecurityError in trading",
        "[CRITICAL] AlertThresholdBreached in monitoring",
    ]
    evaluate()
    wait_for(
        lambda: (
            len(deployment.log_events("threshold_breached")) >= 1
            and len(deployment.log_events("escalation")) >= 2
        ),
        30,
        "the evaluations",
    )
    assert [e["threshold"] for e in deployment.log_events("threshold_breached")] == [
        "critical_errors"
    ]
