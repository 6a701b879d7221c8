"""Error text cannot format a Slack message or add an email header (issue 13, item 11): mrkdwn
markers are shown literally, and a line break never leaves the Subject."""

from __future__ import annotations

from resilience.notify.email import EmailChannel, EmailConfig
from resilience.notify.model import Example, Notification, group_key
from resilience.notify.render import slack
from resilience.policy.retry import ErrorSeverity
from tests.fakes.smtp_server import SmtpServer
from tests.resilience.notify.test_notify_render import blocks_of, failure, slack_texts

ZWSP = "\u200b"
INJECTED = "\r\nBcc: evil@example.com"


def literal(marker: str) -> str:
    """How a mrkdwn marker of error text reaches Slack: between zero-width spaces."""
    return f"{ZWSP}{marker}{ZWSP}"


def test_slack_shows_mrkdwn_markers_of_an_error_literally() -> None:
    """Markers (``*_`~``) of an error's text cannot open or close formatting in any mrkdwn
    text: each stands between zero-width spaces; ``&<>`` are Slack-escaped."""
    hostile = "*bold* _it_ `code` ~gone~ <!here> a&b"
    n = Notification.from_failure(failure(message=hostile, error_type="Err*_`~"))
    payload = slack(n)
    b, i, c, s = (literal(marker) for marker in "*_`~")
    expected = f"{b}bold{b} {i}it{i} {c}code{c} {s}gone{s} &lt;!here&gt; a&amp;b"
    mrkdwn = [*slack_texts(blocks_of(payload)[1:]), str(payload["text"])]
    assert any(expected in text for text in mrkdwn)
    for text in mrkdwn:
        bare = text
        for marker in (b, i, c, s):
            bare = bare.replace(marker, "")
        # What is left of a marker is the renderer's own bold labels (*Severity*).
        assert "_" not in bare and "`" not in bare and "~" not in bare
        assert "Err*" not in bare


def test_slack_plain_text_header_and_link_urls_are_not_marked_up() -> None:
    """The header (plain_text, never parsed as mrkdwn) and link URLs keep their characters."""
    runbook = "https://runbooks.example.com/insufficient_funds?a=1&b=2"
    n = Notification.for_group([failure(error_type="Insufficient_Funds")], runbook_url=runbook)
    blocks = blocks_of(slack(n))
    assert blocks[0]["text"]["text"].startswith("[CRITICAL] Insufficient_Funds in")
    links = blocks[-1]["text"]["text"]
    assert "<https://runbooks.example.com/insufficient_funds?a=1&amp;b=2|Runbook>" in links


def test_a_line_break_in_error_text_adds_no_email_header(smtp: SmtpServer) -> None:
    """An error type, component and message ending in ``\\r\\nBcc: evil@example.com`` give one
    Subject line and no Bcc header; the message goes to the configured recipient only."""
    example = Example(
        error_id="err-1",
        message=f"refused{INJECTED}",
        task_name="tasks.trading.submit_order",
        operation="submit_order",
        occurred_at="2026-03-02T14:30:01+00:00",
    )
    n = Notification(
        key=group_key(f"Oops{INJECTED}", f"trading{INJECTED}"),
        severity=ErrorSeverity.CRITICAL,
        error_type=f"Oops{INJECTED}",
        component=f"trading{INJECTED}",
        count=1,
        examples=(example,),
    )
    config = EmailConfig(
        host=smtp.host,
        port=smtp.port,
        sender="alerts@alchemiser.test",
        recipients=("ops@alchemiser.test",),
        security="none",
        timeout_s=5.0,
    )
    assert EmailChannel(config).send(n).delivered
    [received] = smtp.transactions
    assert received.rcpt_tos == ("ops@alchemiser.test",)
    head = received.raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode()
    names = [line.split(":", 1)[0].lower() for line in head.split("\n") if line[:1].strip()]
    assert names.count("subject") == 1
    assert "bcc" not in names
    assert received.message.get_all("Bcc") is None
    assert "\n" not in received.message["Subject"]
    assert "\r" not in received.message["Subject"]
