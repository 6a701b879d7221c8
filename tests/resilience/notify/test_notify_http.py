"""One HTTP POST to a notification receiver, answered as a Delivery (resilience.notify.http_post).

Every send goes to a real local receiver (:class:`~tests.fakes.http_receiver.HttpReceiver`);
``parse_retry_after`` is tested as a pure function of the header and an injected time.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from email.utils import formatdate

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from resilience.notify.channel import Delivery, FailureReason
from resilience.notify.http_post import parse_retry_after, post
from tests.fakes.http_receiver import HttpReceiver, Reply, closed_port

NOW_S = 1_800_000_000.0  # an injected wall time: 2027-01-15T08:00:00Z
SECRET_PATH = "/services/T000/B000/sekrit-token-123"
SECRET_QUERY = "token=sekrit-q"
SLACK_URL = f"https://hooks.slack.com{SECRET_PATH}"  # what a receiver might echo in its body


def send(session: requests.Session, url: str, *, timeout_s: float = 5.0) -> Delivery:
    """``post`` a small JSON payload to ``url`` on the ``webhook`` channel at :data:`NOW_S`."""
    return post(
        session,
        url,
        channel="webhook",
        timeout_s=timeout_s,
        json_body={"text": "InsufficientFundsError in trading"},
        wall=lambda: NOW_S,
    )


# --- delivered -------------------------------------------------------------------------------


def test_a_2xx_is_delivered_with_the_json_body_as_sent(
    receiver: HttpReceiver, session: requests.Session
) -> None:
    """A 200 is a delivery with a latency; the receiver got the JSON body as sent, typed as
    JSON."""
    body: dict[str, object] = {
        "text": "InsufficientFundsError in trading — 3 failures",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*P1* `alc-1`"}}],
        "count": 3,
        "resolved": False,
        "runbook": None,
    }
    delivery = post(
        session, f"{receiver.url}/hooks/alerts", channel="slack", timeout_s=5.0, json_body=body
    )
    assert delivery == Delivery(channel="slack", delivered=True, latency_s=delivery.latency_s)
    assert delivery.latency_s >= 0
    [received] = receiver.requests
    assert (received.method, received.path) == ("POST", "/hooks/alerts")
    assert received.headers["content-type"] == "application/json"
    assert received.json() == body


def test_latency_is_measured_on_the_injected_clock(
    receiver: HttpReceiver, session: requests.Session
) -> None:
    """The latency is the injected clock's reading after the answer minus before the send."""
    readings = iter([10.0, 10.25])
    delivery = post(
        session,
        receiver.url,
        channel="webhook",
        timeout_s=5.0,
        json_body={},
        clock=readings.__next__,
    )
    assert delivery.delivered
    assert delivery.latency_s == 0.25


def test_a_form_with_basic_auth_arrives_in_twilios_shape(
    receiver: HttpReceiver, session: requests.Session
) -> None:
    """A form posts as ``application/x-www-form-urlencoded`` with its fields intact, and the
    auth pair arrives as ``Authorization: Basic`` of ``user:password``."""
    receiver.reply_with(Reply(201, b'{"sid": "SM123", "status": "queued"}'))
    fields = {
        "To": "+15005550006",
        "From": "+15005550001",
        "Body": "Échec P1: 3 InsufficientFundsError & more=yes + 100%",
    }
    delivery = post(
        session,
        f"{receiver.url}/2010-04-01/Accounts/AC0123/Messages.json",
        channel="sms",
        timeout_s=5.0,
        form=fields,
        auth=("AC0123", "auth-token:with-colon"),
    )
    assert delivery.delivered
    [received] = receiver.requests
    assert received.headers["content-type"] == "application/x-www-form-urlencoded"
    assert received.form() == fields
    scheme, _, credentials = received.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == "AC0123:auth-token:with-colon"


# --- refused, rate limited, failed -----------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "expected_s"),
    [
        ("3", 3.0),
        (formatdate(NOW_S + 5, usegmt=True), 5.0),
        ("soon", None),
    ],
    ids=["seconds", "http-date", "unreadable"],
)
def test_a_429_is_rate_limited_with_its_retry_after(
    receiver: HttpReceiver,
    session: requests.Session,
    retry_after: str,
    expected_s: float | None,
) -> None:
    """A 429 is RATE_LIMITED and transient; its Retry-After, in seconds or as an HTTP date
    against the injected wall time, is the delivery's retry_after_s (None when unreadable)."""
    receiver.reply_with(Reply(429, b"rate_limited", {"Retry-After": retry_after}))
    delivery = send(session, receiver.url)
    assert not delivery.delivered
    assert delivery.reason is FailureReason.RATE_LIMITED
    assert delivery.reason.transient
    assert delivery.retry_after_s == expected_s
    assert delivery.detail == "HTTP 429 rate_limited"


def test_a_400_with_an_error_code_is_a_client_error_naming_it(
    receiver: HttpReceiver, session: requests.Session
) -> None:
    """A 400 answered with Slack's ``invalid_payload`` is a CLIENT_ERROR, not transient, whose
    detail is the status and that code."""
    receiver.reply_with(Reply(400, b"invalid_payload"))
    delivery = send(session, receiver.url)
    assert delivery.reason is FailureReason.CLIENT_ERROR
    assert not delivery.reason.transient
    assert delivery.detail == "HTTP 400 invalid_payload"
    assert delivery.retry_after_s is None


@pytest.mark.parametrize(
    "body",
    [
        f"no_service {SLACK_URL}".encode(),
        SLACK_URL.encode(),
        b"The request could not be processed because the payload was not valid JSON.",
        b"a" * 41,
        b'{"error": "invalid_payload"}',
    ],
    ids=["code-and-url", "url", "sentence", "41-letters", "json"],
)
def test_a_400_body_other_than_an_error_code_stays_out_of_the_detail(
    receiver: HttpReceiver, session: requests.Session, body: bytes
) -> None:
    """A 400 whose body is anything but a short error code (a URL, a sentence, JSON) has the
    bare status as its detail."""
    receiver.reply_with(Reply(400, body))
    delivery = send(session, receiver.url)
    assert delivery.reason is FailureReason.CLIENT_ERROR
    assert delivery.detail == "HTTP 400"


@pytest.mark.parametrize(
    ("reply", "reason", "retry_after_s"),
    [
        (Reply(500, b""), FailureReason.SERVER_ERROR, None),
        (Reply(503, b"", {"Retry-After": "2"}), FailureReason.SERVER_ERROR, 2.0),
        (Reply(408, b""), FailureReason.TIMEOUT, None),
    ],
    ids=["500", "503-retry-after", "408"],
)
def test_5xx_is_a_server_error_and_408_a_timeout(
    receiver: HttpReceiver,
    session: requests.Session,
    reply: Reply,
    reason: FailureReason,
    retry_after_s: float | None,
) -> None:
    """A 500 or 503 is a transient SERVER_ERROR (with the 503's Retry-After); a 408 is a
    TIMEOUT."""
    receiver.reply_with(reply)
    delivery = send(session, receiver.url)
    assert (delivery.delivered, delivery.reason) == (False, reason)
    assert reason.transient
    assert delivery.retry_after_s == retry_after_s
    assert delivery.detail == f"HTTP {reply.status}"


@pytest.mark.parametrize("status", [301, 302])
def test_a_redirect_is_not_followed(
    receiver: HttpReceiver, session: requests.Session, status: int
) -> None:
    """A 301 or 302 is a CLIENT_ERROR naming the status only; the redirect target gets
    nothing."""
    with HttpReceiver() as target:
        location = f"{target.url}/moved"
        receiver.reply_with(
            Reply(status, f'<a href="{location}">Moved</a>'.encode(), {"Location": location})
        )
        delivery = send(session, receiver.url)
        assert delivery.reason is FailureReason.CLIENT_ERROR
        assert delivery.detail == f"HTTP {status}"
        assert len(receiver.requests) == 1
        assert target.requests == []


# --- no answer -------------------------------------------------------------------------------


def test_a_receiver_slower_than_the_timeout_is_a_timeout(
    receiver: HttpReceiver, session: requests.Session
) -> None:
    """A receiver that answers after 2 s is a TIMEOUT of a 0.2 s send, which returns after
    about 0.2 s."""
    receiver.reply_with(Reply(delay_s=2.0))
    started = time.perf_counter()
    delivery = send(session, receiver.url, timeout_s=0.2)
    elapsed_s = time.perf_counter() - started
    assert (delivery.delivered, delivery.reason) == (False, FailureReason.TIMEOUT)
    assert issubclass(getattr(requests.exceptions, delivery.detail), requests.Timeout)
    assert 0.2 * 0.9 <= delivery.latency_s < 1.5
    assert elapsed_s < 1.5
    assert len(receiver.requests) == 1


def test_a_receiver_stalling_mid_body_is_not_unreachable(
    receiver: HttpReceiver, session: requests.Session
) -> None:
    """A 200 whose body stops arriving is delivered or a TIMEOUT, never UNREACHABLE (which
    means no connection)."""
    receiver.reply_with(Reply(200, b"ok", {"Content-Length": "1000"}))
    delivery = send(session, receiver.url, timeout_s=0.2)
    assert delivery.delivered or delivery.reason is FailureReason.TIMEOUT


def test_a_port_nothing_listens_on_is_unreachable(session: requests.Session) -> None:
    """A refused connection is UNREACHABLE, described by the exception's class name."""
    delivery = send(session, f"http://127.0.0.1:{closed_port()}/hook")
    assert not delivery.delivered
    assert delivery.reason is FailureReason.UNREACHABLE
    assert delivery.reason.transient
    assert issubclass(getattr(requests.exceptions, delivery.detail), requests.RequestException)


# --- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "timeout_s", "reason"),
    [
        (Reply(400, f"no_service {SLACK_URL}".encode()), 5.0, FailureReason.CLIENT_ERROR),
        (Reply(429, SLACK_URL.encode(), {"Retry-After": "1"}), 5.0, FailureReason.RATE_LIMITED),
        (Reply(500, SLACK_URL.encode()), 5.0, FailureReason.SERVER_ERROR),
        (Reply(delay_s=2.0), 0.05, FailureReason.TIMEOUT),
        (None, 5.0, FailureReason.UNREACHABLE),
    ],
    ids=["400", "429", "500", "timeout", "unreachable"],
)
def test_no_failure_detail_holds_the_url(
    receiver: HttpReceiver,
    session: requests.Session,
    reply: Reply | None,
    timeout_s: float,
    reason: FailureReason,
) -> None:
    """Whatever the failure, neither the detail nor the delivery's repr holds the URL's secret
    path segment, its token query or its host and port."""
    if reply is None:
        host_port = f"127.0.0.1:{closed_port()}"
    else:
        host_port = receiver.url.removeprefix("http://")
        receiver.reply_with(reply)
    delivery = send(session, f"http://{host_port}{SECRET_PATH}?{SECRET_QUERY}", timeout_s=timeout_s)
    assert delivery.reason is reason
    for text in (delivery.detail, repr(delivery)):
        assert "sekrit" not in text
        assert host_port not in text
    if reply is not None and reply.delay_s == 0:
        [received] = receiver.requests
        assert (received.path, received.query) == (SECRET_PATH, SECRET_QUERY)


# --- parse_retry_after -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected_s"),
    [
        ("0", 0.0),
        ("3", 3.0),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("2.5", 2.5),
        ("0.25", 0.25),
    ],
)
def test_retry_after_in_seconds(value: str, expected_s: float) -> None:
    """Whole or fractional seconds, surrounding blanks aside, are read as they are."""
    assert parse_retry_after(value, NOW_S) == expected_s


@pytest.mark.parametrize("value", ["-1", "-0.5", "-3600"])
def test_negative_retry_after_is_zero(value: str) -> None:
    """Negative seconds mean come back now: 0.0."""
    assert parse_retry_after(value, NOW_S) == 0.0


def test_retry_after_as_a_future_http_date_counts_from_now() -> None:
    """An HTTP date is the seconds from the given wall time to it."""
    assert parse_retry_after(formatdate(NOW_S + 90, usegmt=True), NOW_S) == 90.0
    assert parse_retry_after("Fri, 15 Jan 2027 08:00:30 GMT", NOW_S) == 30.0


def test_retry_after_as_a_past_http_date_is_zero() -> None:
    """An HTTP date already past means come back now: 0.0."""
    assert parse_retry_after(formatdate(NOW_S - 60, usegmt=True), NOW_S) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", NOW_S) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        "Fri, 15 Jan 2027 08:00:30",  # no zone: naive
        "Fri, 15 Jan 2027 08:00:30 -0000",  # zone unknown: naive
        "soon",
        "3 seconds",
        "0x10",
        "in a minute",
        "Fri, 32 Jan 2027 08:00:30 GMT",
    ],
)
def test_unreadable_retry_after_is_none(value: str) -> None:
    """A naive date or text that is neither seconds nor an HTTP date is None."""
    assert parse_retry_after(value, NOW_S) is None


@pytest.mark.parametrize("value", [None, "", "   ", "\t"])
def test_absent_or_blank_retry_after_is_none(value: str | None) -> None:
    """No header, or a blank one, is None."""
    assert parse_retry_after(value, NOW_S) is None


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_retry_after_is_none(value: str) -> None:
    """``nan`` and ``inf`` are no delay-seconds (RFC 9110): unreadable, so None."""
    assert parse_retry_after(value, NOW_S) is None


@given(st.floats(min_value=0.0, allow_nan=False, allow_infinity=False))
def test_any_seconds_read_back_exactly(seconds: float) -> None:
    """Any finite seconds >= 0, written with ``repr``, read back as the same float."""
    assert parse_retry_after(repr(seconds), NOW_S) == seconds


# --- the receiver itself ---------------------------------------------------------------------


def test_receiver_answers_its_script_in_order_then_the_default(
    receiver: HttpReceiver, session: requests.Session
) -> None:
    """Scripted replies answer one request each, in order; then the default does, 200 ``ok``
    until the test sets another."""
    receiver.reply_with(Reply(503, b"busy"), Reply(201, b"made", {"X-Seen": "yes"}))
    answers = [session.post(receiver.url, data=b"x", timeout=5) for _ in range(3)]
    assert [(a.status_code, a.text) for a in answers] == [(503, "busy"), (201, "made"), (200, "ok")]
    assert answers[1].headers["X-Seen"] == "yes"
    assert receiver.pending_replies() == 0
    receiver.default = Reply(202, b"queued")
    answer = session.get(f"{receiver.url}/status?full=1", timeout=5)
    assert (answer.status_code, answer.text) == (202, "queued")
    assert [(r.method, r.path, r.query) for r in receiver.requests][-1] == (
        "GET",
        "/status",
        "full=1",
    )


def test_a_payload_that_is_not_json_is_a_client_error_not_an_exception(
    receiver: HttpReceiver, session: requests.Session
) -> None:
    """A payload json cannot write (a datetime, a NaN) is a CLIENT_ERROR, not transient, and
    nothing is sent: post() never raises for a failed send."""
    for body in ({"at": datetime.now(UTC)}, {"x": float("nan")}):
        delivery = post(session, receiver.url, channel="webhook", timeout_s=1.0, json_body=body)
        assert (delivery.delivered, delivery.reason) == (False, FailureReason.CLIENT_ERROR)
        assert delivery.detail.startswith("payload is not JSON")
    assert receiver.requests == []


@pytest.mark.parametrize("url", ["http://[::1", "ftp://example.com/hook", "example.com/hook"])
def test_a_url_http_cannot_use_is_a_client_error(session: requests.Session, url: str) -> None:
    """A malformed URL, another scheme or none is a CLIENT_ERROR (sending again would fail the
    same way), not UNREACHABLE, and the detail is the exception's class name only."""
    delivery = post(session, url, channel="webhook", timeout_s=1.0, json_body={"a": 1})
    assert (delivery.delivered, delivery.reason) == (False, FailureReason.CLIENT_ERROR)
    assert url not in delivery.detail
    assert delivery.detail.isidentifier()
