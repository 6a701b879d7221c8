"""worker/sentry.py: which failures become Sentry events, how they are grouped, labelled and
scrubbed; run through a real sentry-sdk client with an in-process transport."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from celery._state import _task_stack
from celery.schedules import schedule
from sentry_sdk.envelope import Envelope
from sentry_sdk.scrubber import EventScrubber
from sentry_sdk.transport import Transport

from resilience.errors import (
    CircuitBreakerOpenError,
    InsufficientFundsError,
    TradingClientError,
)
from resilience.guard.admission import Admission, Permit
from resilience.observability.reporting import FailureReport
from resilience.scrub import SECRET_KEY_PARTS, Scrubber
from resilience.task import RUNTIME_SETTING
from tasks.trading import submit_order
from tests.fakes.sentry_receiver import SentryReceiver
from worker.application import create_app
from worker.sentry import SentryReporter, sentry_options
from worker.settings import Settings

SECRET = "Zr7QpL2xVn9TkB4mWc8HsD3y"  # a known secret value (the Alpaca secret key)
KEY_ONLY = "only-its-key-name-gives-it-away"  # a value the scrubber knows only by its key


class ListTransport(Transport):
    """Keeps every envelope, serialized as it would be sent."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.sent: list[bytes] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.sent.append(envelope.serialize())

    def items(self, item_type: str) -> list[dict[str, Any]]:
        found = []
        for raw in self.sent:
            envelope = Envelope.deserialize(raw)
            found.extend(
                json.loads(item.get_bytes()) for item in envelope.items if item.type == item_type
            )
        return found

    def events(self) -> list[dict[str, Any]]:
        return self.items("event")


def _settings(**overrides: Any) -> Settings:
    return Settings(sentry_dsn="http://public@127.0.0.1:9/1", **overrides)


@pytest.fixture
def reporter() -> SentryReporter:
    return SentryReporter(Scrubber([SECRET]))


@pytest.fixture
def transport(reporter: SentryReporter) -> Iterator[ListTransport]:
    """sentry-sdk initialised with this module's options, minus the Celery integration (which
    would patch Celery in the test process), sending to a list."""
    sent = ListTransport()
    options = sentry_options(_settings(), reporter)
    options.update(
        integrations=[],
        default_integrations=False,
        auto_enabling_integrations=False,
        transport=sent,
    )
    sentry_sdk.init(**options)
    with sentry_sdk.isolation_scope():
        yield sent
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def _raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def _dead_letter(error: Any = None, **changes: Any) -> FailureReport:
    error = error or InsufficientFundsError("buying power 10.00 < 1000000.00")
    fields: dict[str, Any] = {
        "action": "dead_letter",
        "error": error,
        "cause": None,
        "task_name": "tasks.submit_order",
        "task_id": "t-1",
        "component": "trading",
        "reason": "not retryable",
        "retry_count": 0,
        "resources": ("broker.api", "broker.orders"),
        "dead_letter_id": "t-1",
        "idempotency_key": "coid-1",
        "attempts": (
            {
                "attempt": 1,
                "at": "2026-01-05T14:30:00+00:00",
                "error_type": error.error_type,
                "message": error.message,
                "action": "dead_letter",
                "countdown_s": 0.0,
                "hostname": "w1",
            },
        ),
    }
    fields.update(changes)
    return FailureReport(**fields)


def test_a_dead_letter_is_one_event_grouped_by_class_component_and_operation(
    reporter: SentryReporter, transport: ListTransport
) -> None:
    """One event per dead letter, fingerprint [class, component, operation], our class last
    (the issue's title) after the cause that carries the stack."""
    cause = _raised(ConnectionResetError("peer reset"))
    error = TradingClientError("connection to the broker failed")
    reporter.report(_dead_letter(error, cause=cause, retry_count=4, reason="attempts exhausted"))
    sentry_sdk.flush()

    (event,) = transport.events()
    assert event["fingerprint"] == ["TradingClientError", "trading", "tasks.submit_order"]
    values = event["exception"]["values"]
    assert [v["type"] for v in values] == ["ConnectionResetError", "TradingClientError"]
    assert values[0]["stacktrace"]["frames"]
    assert event["level"] == "error"
    assert event["contexts"]["dead_letter"]["dead_letter_id"] == "t-1"
    assert event["contexts"]["dead_letter"]["client_order_id"] == "coid-1"
    assert event["contexts"]["dead_letter"]["reason"] == "attempts exhausted"


def test_a_dead_letter_is_tagged_for_search(
    reporter: SentryReporter, transport: ListTransport
) -> None:
    """Severity, component, operation, recoverable, task name, resource, retry count and the
    worst breaker state among the run's permits are tags."""
    admission = Admission(
        admitted=True,
        ticket="t-1:0.0",
        permits=(
            Permit("broker.api", 1, "closed", probe=False, remaining=5),
            Permit("broker.orders", 3, "half_open", probe=True, remaining=0),
        ),
    )
    error = TradingClientError("HTTP 503")
    reporter.report(_dead_letter(error, retry_count=4, admission=admission))
    sentry_sdk.flush()

    (event,) = transport.events()
    assert event["tags"] == {
        "kind": "final_failure",
        "error_type": "TradingClientError",
        "severity": "high",
        "component": "trading",
        "operation": "tasks.submit_order",
        "task_name": "tasks.submit_order",
        "recoverable": "true",
        "retry_count": "4",
        "resource": "broker.api,broker.orders",
        "breaker_state": "half_open",
    }


def test_a_refused_admission_names_its_resource_and_an_open_breaker(
    reporter: SentryReporter, transport: ListTransport
) -> None:
    """A dead letter of a breaker refusal is tagged with the refusing resource, breaker open."""
    error = CircuitBreakerOpenError(
        "broker.orders: breaker open", details={"resource": "broker.orders", "reason": "open"}
    )
    reporter.report(_dead_letter(error, reason="deadline passes before it may run again"))
    sentry_sdk.flush()

    (event,) = transport.events()
    assert event["tags"]["resource"] == "broker.orders"
    assert event["tags"]["breaker_state"] == "open"


def test_the_attempt_history_becomes_the_events_breadcrumbs(
    reporter: SentryReporter, transport: ListTransport
) -> None:
    """Each earlier attempt (retried in another delivery) is a breadcrumb of the dead letter."""
    error = TradingClientError("HTTP 503")
    attempts = tuple(
        {
            "attempt": n,
            "at": f"2026-01-05T14:30:0{n}+00:00",
            "error_type": "TradingClientError",
            "message": "HTTP 503",
            "action": "retry" if n < 3 else "dead_letter",
            "countdown_s": 0.5,
            "hostname": "w1",
        }
        for n in (1, 2, 3)
    )
    reporter.report(_dead_letter(error, attempts=attempts, retry_count=2))
    sentry_sdk.flush()

    (event,) = transport.events()
    crumbs = event["breadcrumbs"]["values"]
    assert [c["category"] for c in crumbs] == [
        "alchemiser.retry",
        "alchemiser.retry",
        "alchemiser.dead_letter",
    ]
    assert crumbs[0]["message"] == "attempt 1: TradingClientError"


def test_a_retry_or_a_deferral_is_a_breadcrumb_not_an_event(
    reporter: SentryReporter, transport: ListTransport
) -> None:
    """Retries and deferrals send nothing; they are breadcrumbs of a later event in scope."""
    error = TradingClientError("HTTP 503")
    reporter.report(_dead_letter(error, action="retry", countdown_s=0.5, attempts=()))
    reporter.report(_dead_letter(error, action="defer", countdown_s=30.0, attempts=()))
    sentry_sdk.flush()
    assert transport.events() == []

    sentry_sdk.capture_exception(_raised(KeyError("bug")))
    sentry_sdk.flush()
    (event,) = transport.events()
    crumbs = [c for c in event["breadcrumbs"]["values"] if c["category"].startswith("alch")]
    assert [c["category"] for c in crumbs] == ["alchemiser.retry", "alchemiser.defer"]
    assert crumbs[0]["message"] == "TradingClientError: retry in 0.500 s"


def test_the_reraise_of_a_dead_letter_is_dropped(
    reporter: SentryReporter, transport: ListTransport
) -> None:
    """The error ResilientTask re-raises after dead-lettering (which CeleryIntegration
    captures) makes no second event; another instance of the same class does."""
    error = _raised(InsufficientFundsError("no buying power"))
    assert isinstance(error, InsufficientFundsError)
    reporter.report(_dead_letter(error))
    sentry_sdk.capture_exception(error)
    sentry_sdk.flush()
    assert len(transport.events()) == 1

    sentry_sdk.capture_exception(_raised(InsufficientFundsError("never dead-lettered")))
    sentry_sdk.flush()
    events = transport.events()
    assert len(events) == 2
    assert events[1]["tags"]["kind"] == "internal_error"


def test_an_internal_error_is_an_event_grouped_like_the_rest(
    reporter: SentryReporter, transport: ListTransport
) -> None:
    """An exception that escapes our own code (a bug) is an event, critical, fingerprinted
    [class, component, operation] (the worker itself outside a task)."""
    sentry_sdk.capture_exception(_raised(KeyError("missing")))
    sentry_sdk.flush()

    (event,) = transport.events()
    assert event["fingerprint"] == ["KeyError", "worker", "worker"]
    assert event["tags"]["kind"] == "internal_error"
    assert event["tags"]["severity"] == "critical"
    assert event["tags"]["recoverable"] == "false"
    assert event["level"] == "fatal"


def test_an_internal_error_in_a_task_is_labelled_with_the_task(
    reporter: SentryReporter, transport: ListTransport, redis_url: str
) -> None:
    """Inside a running task, an internal error takes the task's component, operation and
    resources (and its retry count from the message header)."""
    task = create_app(Settings(redis_url=redis_url)).tasks[submit_order.name]
    task.push_request(id="t-9", headers={"alchemiser": {"failures": 2}})
    _task_stack.push(task)
    try:
        sentry_sdk.capture_exception(_raised(AttributeError("bug in our code")))
        sentry_sdk.flush()
    finally:
        _task_stack.pop()
        task.pop_request()

    (event,) = transport.events()
    assert event["fingerprint"] == ["AttributeError", "trading", "tasks.submit_order"]
    assert event["tags"]["resource"] == "broker.api,broker.orders"
    assert event["tags"]["retry_count"] == "2"
    assert "breaker_state" not in event["tags"]


def test_messages_and_log_records_are_not_events(
    reporter: SentryReporter, transport: ListTransport
) -> None:
    """capture_message and a log record (the logging integration's events) are dropped."""
    sentry_sdk.capture_message("something happened")
    sentry_sdk.flush()
    assert transport.events() == []
    record = logging.LogRecord("celery", logging.ERROR, __file__, 1, "boom", None, None)
    event: Any = {"exception": {"values": []}}
    error = _raised(RuntimeError("boom"))
    hint: Any = {"exc_info": (RuntimeError, error, None), "log_record": record}
    assert reporter.before_send(event, hint) is None


def test_a_check_in_passes(reporter: SentryReporter, transport: ListTransport) -> None:
    """Crons check-ins (beat tasks' monitors) go through before_send untouched."""
    sentry_sdk.crons.capture_checkin(monitor_slug="sync-positions", status="ok")
    sentry_sdk.flush()
    (check_in,) = transport.items("check_in")
    assert check_in["monitor_slug"] == "sync-positions"


def _leaky_cause(kwargs: dict[str, Any]) -> BaseException:
    """An exception whose frame holds ``kwargs`` and the secret in locals of its own."""
    alpaca_secret_key = KEY_ONLY  # noqa: F841 - a frame variable named like a secret
    headers = {"Authorization": f"Bearer {SECRET}"}  # noqa: F841
    try:
        raise ConnectionResetError(f"reset while sending {kwargs['note']}")
    except ConnectionResetError as caught:
        return caught


def test_secrets_are_scrubbed_at_any_depth_everywhere(
    reporter: SentryReporter, transport: ListTransport
) -> None:
    """A planted secret (known value) and values under secret key names, nested in dicts and
    lists of kwargs, frame variables, the message, details and breadcrumbs, appear nowhere in
    the envelope."""
    kwargs = {
        "symbol": "AAPL",
        "note": f"key {SECRET}",
        "deep": [{"level": {"webhook_url": KEY_ONLY, "items": [{"dsn": KEY_ONLY}]}}],
        "ALPACA_SECRET_KEY": KEY_ONLY,
    }
    cause = _leaky_cause(kwargs)
    error = TradingClientError(
        f"upstream said token {SECRET}", details={"request": {"nested": {"api_key": KEY_ONLY}}}
    )
    reporter.report(_dead_letter(error, action="retry", attempts=()))
    reporter.report(
        _dead_letter(
            error,
            cause=cause,
            attempts=({"attempt": 1, "message": f"secret={SECRET}", "action": "dead_letter"},),
        )
    )
    sentry_sdk.flush()

    (raw,) = transport.sent
    assert SECRET.encode() not in raw
    assert KEY_ONLY.encode() not in raw
    assert b"[Filtered]" in raw
    (event,) = transport.events()
    (cause_value, _) = event["exception"]["values"]
    frame_vars = [frame.get("vars", {}) for frame in cause_value["stacktrace"]["frames"]]
    assert any("kwargs" in v for v in frame_vars)  # the variables are sent, scrubbed
    crumbs = [c["category"] for c in event["breadcrumbs"]["values"]]
    assert sorted(crumbs) == ["alchemiser.dead_letter", "alchemiser.retry"]


def test_sentry_scrubber_is_recursive_and_knows_our_key_names() -> None:
    """sentry-sdk's own EventScrubber runs recursively with our secret key names added."""
    options = sentry_options(_settings(), SentryReporter(Scrubber()))
    scrubber = options["event_scrubber"]
    assert isinstance(scrubber, EventScrubber)
    assert scrubber.recursive
    assert set(SECRET_KEY_PARTS) <= set(scrubber.denylist)
    assert "send_default_pii" not in options  # off by default: task args stay [Filtered]
    event: Any = {"extra": {"job": [{"kwargs": {"webhook": KEY_ONLY}}]}}
    scrubber.scrub_event(event)
    assert KEY_ONLY not in str(event)


def test_environment_and_release_come_from_settings() -> None:
    """ALCHEMISER_SENTRY_ENVIRONMENT / _RELEASE reach sentry_sdk.init."""
    settings = _settings(sentry_environment="staging", sentry_release="alchemiser@1.2.3")
    options = sentry_options(settings, SentryReporter(Scrubber()))
    assert (options["environment"], options["release"]) == ("staging", "alchemiser@1.2.3")


def test_only_a_dsn_gives_the_runtime_a_sentry_reporter(redis_url: str) -> None:
    """No SENTRY_DSN: the runtime reports to nothing; with one, to a SentryReporter."""
    without = create_app(Settings(redis_url=redis_url)).conf[RUNTIME_SETTING]()
    assert without.reporters == ()
    with_dsn = create_app(_settings(redis_url=redis_url)).conf[RUNTIME_SETTING]()
    (reporter,) = with_dsn.reporters
    assert isinstance(reporter, SentryReporter)


def test_beat_intervals_are_whole_minutes_so_crons_can_monitor_them() -> None:
    """Sentry Crons monitors intervals of whole minutes; every beat entry is one."""
    app = create_app(Settings())
    for name, entry in app.conf.beat_schedule.items():
        every = entry["schedule"]
        seconds = every.seconds if isinstance(every, schedule) else float(every)
        assert seconds >= 60 and seconds % 60 == 0, name


def test_the_receiver_decodes_what_the_sdk_sends(reporter: SentryReporter) -> None:
    """The fake DSN endpoint decodes a real, gzip-compressed envelope from sentry-sdk."""
    with SentryReceiver() as receiver:
        options = sentry_options(Settings(sentry_dsn=receiver.dsn()), reporter)
        options.update(integrations=[], default_integrations=False)
        sentry_sdk.init(**options)
        try:
            reporter.report(_dead_letter())
            sentry_sdk.flush(timeout=5)
        finally:
            sentry_sdk.get_client().close()
            sentry_sdk.get_global_scope().set_client(None)
        (event,) = receiver.events()
        (envelope,) = receiver.envelopes()
    assert envelope.project == "1"
    assert event["fingerprint"] == ["InsufficientFundsError", "trading", "tasks.submit_order"]
