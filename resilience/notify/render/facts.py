"""The facts every renderer shows, worked out once from a notification."""

from __future__ import annotations

from urllib.parse import urlsplit

from resilience.notify.model import MAX_EXAMPLES, Example, Notification, NotificationStatus

ELLIPSIS = "…"


def shown(n: Notification) -> tuple[Example, ...]:
    """The examples every channel shows (the model already holds at most MAX_EXAMPLES)."""
    return n.examples[:MAX_EXAMPLES]


def is_resolved(n: Notification) -> bool:
    return n.status is NotificationStatus.RESOLVED


def is_firing(n: Notification) -> bool:
    return n.status is NotificationStatus.FIRING


def status_word(n: Notification) -> str:
    return n.status.value.upper()


def notice_line(n: Notification) -> str:
    """What a resolved or acknowledged notice says (a firing one says nothing of the kind)."""
    if is_resolved(n):
        return f"Resolved: {n.error_type} in {n.component} has stopped failing."
    return f"Acknowledged: someone is on {n.error_type} in {n.component}; no further escalation."


def held_back_line(n: Notification) -> str:
    if n.held_back == 1:
        return "1 more notification of this kind was held back by rate limits since the last one."
    return (
        f"{n.held_back} more notifications of this kind were held back by rate limits "
        "since the last one."
    )


def more_line(n: Notification) -> str | None:
    """Says how many failures the examples leave out, when they leave any out."""
    count = len(shown(n))
    return f"Showing the first {count} of {n.count} failures." if n.count > count else None


def example_facts(e: Example) -> list[tuple[str, str]]:
    """An example's facts besides its message, as (label, value), the optional ones when set."""
    facts = [("When", e.occurred_at), ("Operation", e.operation), ("Task", e.task_name)]
    if e.dead_letter_id:
        facts.append(("Dead letter", e.dead_letter_id))
    if e.idempotency_key:
        facts.append(("Idempotency key", e.idempotency_key))
    if e.attempts > 0:
        facts.append(("Attempts", str(e.attempts)))
    if e.reason:
        facts.append(("Why final", e.reason))
    facts.append(("Error id", e.error_id))
    return facts


def links(n: Notification) -> list[tuple[str, str]]:
    """The (label, url) of each link the notification carries, web or not."""
    links = [("Runbook", n.runbook_url), ("Dead letters", n.dead_letter_url)]
    return [(label, url) for label, url in links if url]


def web_url(url: str) -> str | None:
    """``url`` when it is an absolute http(s) URL safe to link to, else ``None``."""
    # Whitespace and control characters are refused outright: browsers strip them, which is
    # how "java\tscript:" style URLs slip past a scheme check.
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    return url if parts.scheme.lower() in {"http", "https"} and parts.netloc else None


def fit(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def one_line(text: str) -> str:
    """``text`` without line breaks or control characters (for headers such as a subject)."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def summary_facts(n: Notification) -> list[tuple[str, str]]:
    """Status, severity, error type, component, and the count when more than one failed."""
    facts = [
        ("Status", status_word(n)),
        ("Severity", n.severity.value.upper()),
        ("Error type", n.error_type),
        ("Component", n.component),
    ]
    if n.count > 1:
        facts.append(("Failures", str(n.count)))
    return facts
