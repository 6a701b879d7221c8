"""Tests of ``resilience.notify.render``: each channel's payload shows the facts, escapes what it
interpolates, links only web URLs and stays within its channel's limits."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.notify.model import (
    MAX_EXAMPLES,
    Example,
    Notification,
    NotificationStatus,
    group_key,
)
from resilience.notify.render import (
    PAGERDUTY_SEVERITY,
    SLACK_HEADER_MAX_CHARS,
    SMS_MAX_CHARS,
    email,
    pagerduty,
    slack,
    sms,
    webhook,
)
from resilience.policy.context import ErrorNotificationData
from resilience.policy.retry import ErrorSeverity
from tests.builders import final_failure

XSS = '<script>alert(1)</script> & "quotes"'
RUNBOOK = "https://runbooks.example.com/insufficient-funds?team=trading&v=2"
DEAD_LETTERS = "https://ops.example.com/dead-letters?group=InsufficientFundsError:trading"


def failure(number: int = 1, **changes: Any) -> ErrorNotificationData:
    """One final failure of the InsufficientFundsError group in ``trading``."""
    return final_failure(
        number,
        **{
            "priority": "p1",
            "title": "Order rejected",
            "error_type": "InsufficientFundsError",
            "message": f"buying power 120.50 below order cost 980.00 (order {number})",
            "task_name": "tasks.trading.submit_order",
            "occurred_at": f"2026-03-02T14:30:0{number}+00:00",
            "idempotency_key": f"coid-{number}",
            "attempts": 3,
            **changes,
        },
    )


def group(count: int = 3, **links: str) -> Notification:
    """A firing group of ``count`` failures with the first three as examples."""
    failures = [failure(i) for i in range(1, 4)]
    return Notification.for_group(failures, count=count, **links)


def slack_texts(node: object) -> list[str]:
    """Every ``text`` string anywhere in a Slack payload."""
    if isinstance(node, dict):
        found = [node["text"]] if isinstance(node.get("text"), str) else []
        return found + [t for value in node.values() for t in slack_texts(value)]
    if isinstance(node, list):
        return [t for item in node for t in slack_texts(item)]
    return []


def blocks_of(payload: dict[str, object]) -> list[dict[str, Any]]:
    """The payload's blocks, typed for indexing."""
    return cast(list[dict[str, Any]], payload["blocks"])


# --- email ---------------------------------------------------------------------------------------


def test_email_subject_is_the_title() -> None:
    """The subject is the notification's one-line title."""
    n = group()
    assert email(n).subject == n.title == "[CRITICAL] InsufficientFundsError in trading x3"


def test_email_text_shows_count_examples_and_ids() -> None:
    """The text body has the count and each example's message, dead letter and client order."""
    text = email(group(count=17)).text
    assert "Failures: 17" in text
    assert "Showing the first 3 of 17 failures." in text
    for i in range(1, 4):
        assert f"(order {i})" in text
        assert f"dl-{i}" in text
        assert f"coid-{i}" in text
        assert f"2026-03-02T14:30:0{i}+00:00" in text


def test_email_single_failure_has_no_count() -> None:
    """A group of one does not state a count of failures."""
    content = email(Notification.from_failure(failure()))
    assert "Failures:" not in content.text
    assert "Failures" not in content.html


def test_email_html_escapes_every_value() -> None:
    """A hostile message, error type and component appear escaped, never raw."""
    n = Notification.from_failure(failure(message=XSS, error_type="<b>Bad</b>", component="a&b"))
    page = email(n).html
    assert XSS not in page
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    assert "<b>Bad</b>" not in page
    assert "&lt;b&gt;Bad&lt;/b&gt;" in page
    assert "a&amp;b" in page


def test_email_html_is_a_small_document_with_an_examples_table() -> None:
    """The HTML body is a whole document with inline styles only and a row per example."""
    page = email(group()).html
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    assert "<style" not in page
    assert "<link" not in page
    assert page.count("<td") >= 3 * 6
    for i in range(1, 4):
        assert f"dl-{i}" in page
        assert f"coid-{i}" in page


def test_email_links_only_web_urls() -> None:
    """A web runbook URL becomes an escaped ``href``; a ``javascript:`` one stays text."""
    page = email(group(runbook_url=RUNBOOK, dead_letter_url="javascript:alert(1)")).html
    assert '<a href="https://runbooks.example.com/insufficient-funds?team=trading&amp;v=2">' in page
    assert 'href="javascript' not in page
    assert "Dead letters: javascript:alert(1)" in page
    assert page.count("<a ") == 1


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example.com/x",
        "https://example.com/a b",
        "https://[::1",
        "ftp://example.com/runbook",
    ],
)
def test_email_never_links_a_non_web_url(url: str) -> None:
    """Only absolute http(s) URLs without whitespace become links."""
    page = email(group(runbook_url=url)).html
    assert "<a " not in page


def test_email_states_held_back_with_its_number() -> None:
    """Notifications held back by rate limits are counted in both bodies."""
    content = email(group().with_held_back(12))
    line = "12 more notifications of this kind were held back by rate limits since the last one"
    assert line in content.text
    assert line in content.html


def test_email_says_nothing_of_held_back_when_none() -> None:
    """With nothing held back, neither body mentions it."""
    content = email(group())
    assert "held back" not in content.text
    assert "held back" not in content.html


def test_email_resolved_notice_says_resolved() -> None:
    """A resolved notice says so in its subject and both bodies."""
    content = email(group().resolved())
    assert content.subject.startswith("[RESOLVED]")
    assert "RESOLVED" in content.text
    assert "has stopped failing" in content.text
    assert "RESOLVED" in content.html


def test_email_subject_is_one_line() -> None:
    """A line break in the error type cannot reach the subject header."""
    n = Notification.from_failure(failure(error_type="Oops\r\nBcc: victim@example.com"))
    assert "\n" not in email(n).subject
    assert "\r" not in email(n).subject


# --- Slack ---------------------------------------------------------------------------------------


def test_slack_has_text_fallback_and_blocks() -> None:
    """The payload carries a ``text`` fallback with the title and count, and Block Kit blocks."""
    payload = slack(group(count=5))
    assert payload["text"] == "[CRITICAL] InsufficientFundsError in trading x5 (5 failures)"
    blocks = blocks_of(payload)
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["type"] == "plain_text"
    assert blocks[0]["text"]["text"] == "[CRITICAL] InsufficientFundsError in trading x5"


def test_slack_fields_show_severity_type_component_and_count() -> None:
    """The fields section names the severity, error type, component and count."""
    fields_block = blocks_of(slack(group(count=5)))[1]
    texts = [f["text"] for f in fields_block["fields"]]
    assert all(f["type"] == "mrkdwn" for f in fields_block["fields"])
    assert "*Severity*\nCRITICAL" in texts
    assert "*Error type*\nInsufficientFundsError" in texts
    assert "*Component*\ntrading" in texts
    assert "*Failures*\n5" in texts
    assert len(texts) <= 10


def test_slack_one_section_per_example() -> None:
    """Each example has its own section with its message, dead letter and client order id."""
    sections = [b for b in blocks_of(slack(group())) if b["type"] == "section" and "text" in b]
    for i in range(1, 4):
        (section,) = [s for s in sections if f"(order {i})" in s["text"]["text"]]
        assert f"dl-{i}" in section["text"]["text"]
        assert f"coid-{i}" in section["text"]["text"]


def test_slack_escapes_every_text() -> None:
    """``&``, ``<`` and ``>`` are escaped in the header, fields, examples and fallback."""
    n = Notification.from_failure(
        failure(message="<!channel> a&b > c", error_type="<Err>", component="x&y")
    )
    texts = slack_texts(slack(n))
    assert texts
    for text in texts:
        assert "<" not in text
        assert ">" not in text
        assert "&" not in text.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "")
    assert any("&lt;!channel&gt; a&amp;b &gt; c" in text for text in texts)


def test_slack_header_is_at_most_150_chars() -> None:
    """A long error type is cut with an ellipsis to fit the header's limit."""
    n = Notification.from_failure(failure(error_type="E" * 400))
    header = blocks_of(slack(n))[0]["text"]["text"]
    assert len(header) == SLACK_HEADER_MAX_CHARS
    assert header.endswith("…")


def test_slack_truncates_a_long_message_to_the_section_limit() -> None:
    """A 10,000-character message is cut so its section text stays within 3,000 characters."""
    n = Notification.from_failure(failure(message="&" * 10_000))
    blocks = blocks_of(slack(n))
    for block in blocks:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
    example = blocks[2]["text"]["text"]
    assert "…" in example
    assert "&am…" not in example  # never cut inside an entity
    assert "dl-1" in example


def test_slack_stays_within_block_limits_for_a_large_group() -> None:
    """A group of a hundred failures still renders at most 50 blocks and 10 fields."""
    failures = [failure(i % 9 + 1) for i in range(100)]
    blocks = blocks_of(slack(Notification.for_group(failures, count=100)))
    assert len(blocks) <= 50
    assert all(len(b.get("fields", [])) <= 10 for b in blocks)
    assert "Showing the first 3 of 100 failures." in slack_texts(blocks)


def test_slack_states_held_back_in_a_context_block() -> None:
    """Held-back notifications are counted in a context block."""
    blocks = blocks_of(slack(group().with_held_back(4)))
    (context,) = [b for b in blocks if b["type"] == "context"]
    assert any(
        "4 more notifications of this kind were held back" in e["text"] for e in context["elements"]
    )


def test_slack_links_only_web_urls() -> None:
    """A web runbook URL is a mrkdwn link with ``&`` escaped; a ``javascript:`` one is text."""
    payload = slack(group(runbook_url=RUNBOOK, dead_letter_url="javascript:alert(1)"))
    texts = slack_texts(payload)
    link = "<https://runbooks.example.com/insufficient-funds?team=trading&amp;v=2|Runbook>"
    assert any(link in text for text in texts)
    assert not any("<javascript" in text for text in texts)
    assert any("Dead letters: javascript:alert(1)" in text for text in texts)


def test_slack_resolved_notice_says_resolved() -> None:
    """A resolved notice's header and fallback say RESOLVED."""
    payload = slack(group().resolved())
    assert str(payload["text"]).startswith("[RESOLVED]")
    assert blocks_of(payload)[0]["text"]["text"].startswith("[RESOLVED]")
    assert any("has stopped failing" in text for text in slack_texts(payload))


def test_slack_payload_is_json() -> None:
    """The payload survives ``json.dumps`` unchanged."""
    payload = slack(group(runbook_url=RUNBOOK).with_held_back(2))
    assert json.loads(json.dumps(payload)) == payload


# --- SMS -----------------------------------------------------------------------------------------


def test_sms_has_the_essentials() -> None:
    """Severity, error type, count, where, message and dead letter id, in that order."""
    assert sms(group()) == (
        "CRITICAL InsufficientFundsError x3 trading/submit_order: "
        "buying power 120.50 below order cost 980.00 (order 1) dl:dl-1"
    )


def test_sms_fits_a_2000_char_message() -> None:
    """A 2,000-character message is cut with "..." and the dead letter id still fits."""
    text = sms(Notification.from_failure(failure(message="x" * 2000)))
    assert len(text) == SMS_MAX_CHARS
    assert text.startswith("CRITICAL InsufficientFundsError trading/submit_order: xxx")
    assert "...dl:dl-1" in text.replace(" ", "")
    assert text.endswith(" dl:dl-1")


def test_sms_fits_a_long_error_type_and_component() -> None:
    """Long error types, components and operations are cut; the text still starts with severity."""
    n = Notification.from_failure(
        failure(error_type="E" * 500, component="c" * 500, operation="o" * 500, message="m" * 500)
    )
    text = sms(n)
    assert len(text) <= SMS_MAX_CHARS
    assert text.startswith("CRITICAL E")


def test_sms_states_held_back() -> None:
    """Held-back notifications are counted at the end."""
    assert sms(group().with_held_back(7)).endswith(" +7 held back")


def test_sms_resolved_starts_with_resolved() -> None:
    """A resolved notice starts ``RESOLVED``."""
    text = sms(group().resolved())
    assert text == "RESOLVED InsufficientFundsError trading/submit_order: stopped failing"


def test_sms_is_ascii_on_one_line() -> None:
    """Non-ASCII characters become "?" and line breaks a space."""
    text = sms(Notification.from_failure(failure(message="Kauf abgelehnt: €\nzu wenig")))
    assert text.isascii()
    assert "\n" not in text
    assert "Kauf abgelehnt: ? zu wenig" in text


# --- webhook -------------------------------------------------------------------------------------


def test_webhook_round_trips_through_json() -> None:
    """The document is plain JSON with the version and every top-level fact."""
    n = group(count=9, runbook_url=RUNBOOK).with_held_back(2)
    doc = webhook(n)
    assert json.loads(json.dumps(doc)) == doc
    assert {k: v for k, v in doc.items() if k != "examples"} == {
        "version": "1",
        "status": "firing",
        "key": "InsufficientFundsError:trading",
        "severity": "critical",
        "error_type": "InsufficientFundsError",
        "component": "trading",
        "count": 9,
        "held_back": 2,
        "title": "[CRITICAL] InsufficientFundsError in trading x9",
        "first_at": "2026-03-02T14:30:01+00:00",
        "runbook_url": RUNBOOK,
        "dead_letter_url": None,
    }


def test_webhook_examples_carry_every_field() -> None:
    """Each example has every field of :class:`Example`, with its values."""
    examples = cast(list[dict[str, Any]], webhook(group())["examples"])
    assert len(examples) == MAX_EXAMPLES
    assert {f.name for f in fields(Example)} == set(examples[0])
    assert examples[0] == {
        "error_id": "err-1",
        "message": "buying power 120.50 below order cost 980.00 (order 1)",
        "task_name": "tasks.trading.submit_order",
        "operation": "submit_order",
        "occurred_at": "2026-03-02T14:30:01+00:00",
        "dead_letter_id": "dl-1",
        "idempotency_key": "coid-1",
        "attempts": 3,
        "reason": "",
    }


def test_webhook_status_values() -> None:
    """The status is ``firing`` and then ``resolved``."""
    assert webhook(group())["status"] == "firing"
    assert webhook(group().resolved())["status"] == "resolved"


# --- PagerDuty -----------------------------------------------------------------------------------


def test_pagerduty_trigger_shape() -> None:
    """A firing group is a trigger event with the full payload and its web links."""
    n = group(count=4, runbook_url=RUNBOOK, dead_letter_url=DEAD_LETTERS).with_held_back(1)
    event = pagerduty(n, "R0UTING")
    assert json.loads(json.dumps(event)) == event
    assert event == {
        "routing_key": "R0UTING",
        "event_action": "trigger",
        "dedup_key": "InsufficientFundsError:trading",
        "payload": {
            "summary": "[CRITICAL] InsufficientFundsError in trading x4",
            "source": "alchemiser",
            "severity": "critical",
            "component": "trading",
            "group": "trading",
            "class": "InsufficientFundsError",
            "timestamp": "2026-03-02T14:30:01+00:00",
            "custom_details": {
                "count": 4,
                "held_back": 1,
                "examples": webhook(n)["examples"],
            },
        },
        "links": [
            {"href": RUNBOOK, "text": "Runbook"},
            {"href": DEAD_LETTERS, "text": "Dead letters"},
        ],
    }


def test_pagerduty_resolve_shape() -> None:
    """A resolved group is a resolve event with the routing key, action and dedup key only."""
    n = group(runbook_url=RUNBOOK)
    assert pagerduty(n.resolved(), "R0UTING") == {
        "routing_key": "R0UTING",
        "event_action": "resolve",
        "dedup_key": n.key,
    }


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (ErrorSeverity.CRITICAL, "critical"),
        (ErrorSeverity.HIGH, "error"),
        (ErrorSeverity.MEDIUM, "warning"),
        (ErrorSeverity.LOW, "info"),
    ],
)
def test_pagerduty_severity_mapping(severity: ErrorSeverity, expected: str) -> None:
    """Each severity maps to PagerDuty's own word."""
    assert PAGERDUTY_SEVERITY[severity] == expected
    event = pagerduty(Notification.from_failure(failure(severity=severity.value)), "R")
    assert cast(dict[str, Any], event["payload"])["severity"] == expected


def test_pagerduty_summary_is_at_most_1024_chars() -> None:
    """A long title is cut to PagerDuty's summary limit."""
    n = Notification.from_failure(failure(error_type="E" * 2000))
    summary = cast(dict[str, Any], pagerduty(n, "R")["payload"])["summary"]
    assert len(summary) == 1024
    assert summary.endswith("…")


def test_pagerduty_dedup_key_is_the_group_key() -> None:
    """The dedup key is the group key, the same for trigger and resolve."""
    n = group()
    assert pagerduty(n, "R")["dedup_key"] == group_key("InsufficientFundsError", "trading")
    assert pagerduty(n.resolved(), "R")["dedup_key"] == n.key


def test_pagerduty_dedup_key_of_an_overlong_group_key_fits_and_pairs() -> None:
    """A group key over 255 characters becomes a stable one PagerDuty accepts."""
    n = Notification.from_failure(failure(error_type="E" * 300))
    trigger = str(pagerduty(n, "R")["dedup_key"])
    assert len(trigger) <= 255
    assert trigger == pagerduty(n.resolved(), "R")["dedup_key"]


def test_pagerduty_links_only_web_urls() -> None:
    """Non-web URLs are left out of ``links``; with none left there is no ``links`` key."""
    only_web = pagerduty(
        group(runbook_url="javascript:alert(1)", dead_letter_url=DEAD_LETTERS), "R"
    )
    assert only_web["links"] == [{"href": DEAD_LETTERS, "text": "Dead letters"}]
    none_web = pagerduty(group(runbook_url="file:///etc/passwd"), "R")
    assert "links" not in none_web


# --- every renderer ------------------------------------------------------------------------------


def every_output(n: Notification) -> str:
    """Everything every renderer produces for ``n``, as one string."""
    content = email(n)
    outputs: list[object] = [
        content.subject,
        content.text,
        content.html,
        slack(n),
        sms(n),
        webhook(n),
        pagerduty(n, "R0UTING"),
    ]
    return json.dumps(outputs, ensure_ascii=False)


def test_renderers_add_nothing_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """No renderer reads settings or the environment: a secret there never reaches the output."""
    monkeypatch.setenv("ALCHEMISER_SLACK_WEBHOOK_URL", "https://hooks.slack.com/sk_live_abc")
    monkeypatch.setenv("STRIPE_KEY", "sk_live_0123456789abcdef")
    n = group(runbook_url=RUNBOOK, dead_letter_url=DEAD_LETTERS).with_held_back(3)
    assert "sk_live" not in every_output(n)
    assert "sk_live" not in every_output(n.resolved())


# --- properties ----------------------------------------------------------------------------------


@st.composite
def any_notifications(draw: st.DrawFn) -> Notification:
    """A notification of arbitrary text (its message always opens with ``<script>``), count,
    held-back number and status."""
    data = failure(
        message="<script>" + draw(st.text(max_size=600)),
        error_type=draw(st.text(min_size=1, max_size=300)),
        component=draw(st.text(min_size=1, max_size=300)),
        operation=draw(st.text(max_size=300)),
        dead_letter_id=draw(st.none() | st.text(max_size=200)),
    )
    n = Notification.for_group([data], count=draw(st.integers(min_value=1, max_value=10**12)))
    n = n.with_held_back(draw(st.integers(min_value=0, max_value=10**12)))
    return n.resolved() if draw(st.booleans()) else n


@settings(max_examples=150, deadline=None)
@given(n=any_notifications())
def test_limits_and_escaping_hold_for_any_text(n: Notification) -> None:
    """For any text: the SMS is ASCII within 160 characters and opens with the status, the Slack
    header is within 150 and the HTML body never holds a raw ``<script`` from the message."""
    text = sms(n)
    assert len(text) <= SMS_MAX_CHARS
    assert text.isascii()
    assert text.startswith("RESOLVED" if n.status is NotificationStatus.RESOLVED else "CRITICAL")
    payload = slack(n)
    assert len(blocks_of(payload)[0]["text"]["text"]) <= SLACK_HEADER_MAX_CHARS
    for block in blocks_of(payload):
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
    assert "<script" not in email(n).html
    json.dumps(payload)
    json.dumps(webhook(n))


def test_why_a_failure_was_final_is_shown() -> None:
    """An example's reason (why it failed for good) is in the email text and the Slack
    sections; absent, no empty line is added."""
    with_reason = Notification.from_failure(failure(1, reason="retries exhausted"))
    assert "Why final: retries exhausted" in email(with_reason).text
    assert "retries exhausted" in json.dumps(slack(with_reason))
    assert "Why final" not in email(Notification.from_failure(failure(1))).text
