"""The runbook generator, unit level: causes from the history, resolutions ranked by what
worked, dead letters replayed and discarded, who is told, and its Markdown."""

from __future__ import annotations

from resilience.errors import InsufficientFundsError, RateLimitError, TradingClientError
from resilience.notify.escalation_policy import DEFAULT_POLICY
from resilience.patterns.history import ErrorEvent
from resilience.runbooks.generator import RunbookInputs, build_runbook
from tasks.runbooks import TRADING_GUIDANCE

T0 = 1_790_000_000.0


def inputs(**changes: object) -> RunbookInputs:
    events = [
        ErrorEvent(T0 + i, "TradingClientError", "trading", "tasks.submit_order", "HTTP <n>")
        for i in range(7)
    ] + [ErrorEvent(T0 + 9, "TradingClientError", "trading", "tasks.cancel_order", "timed out")]
    parts: dict[str, object] = {
        "events": events,
        "patterns": [],
        "resolutions": {
            "succeeded_at:2": 5, "recovered:order_lookup": 2, "succeeded_at:3": 1,
            "dead_lettered": 3,
        },
        "dead_letters": {"dead": 1, "replayed": 2},
        "discarded": 0,
        "policy": DEFAULT_POLICY,
        "guidance": TRADING_GUIDANCE,
    }  # fmt: skip
    parts.update(changes)
    return RunbookInputs(**parts)  # type: ignore[arg-type]


def test_resolutions_are_ranked_by_what_worked_here() -> None:
    book = build_runbook(TradingClientError, inputs(discarded=1), now_s=T0 + 60)
    assert [(r.how, r.count) for r in book.resolutions] == [
        ("succeeded_at:2", 5),
        ("recovered:order_lookup", 2),
        ("replayed", 2),
        ("discarded", 1),
        ("succeeded_at:3", 1),
    ]
    assert book.resolutions[0].description == "Retried; succeeded at attempt 2"
    assert (book.occurrences, book.waiting) == (8, 1)
    assert book.causes[0] == {
        "template": "HTTP <n>",
        "count": 7,
        "components": {"trading": 7},
        "operations": {"tasks.submit_order": 7},
    }
    assert book.last_seen == "2026-09-21T14:13:29+00:00"
    markdown = book.to_markdown()
    assert "1. Retried; succeeded at attempt 2: **5**" in markdown
    assert "2. Recovered automatically by the `order_lookup` strategy: **2**" in markdown
    assert "1 dead letters of this type wait for an operator" in markdown
    assert "Severity high; retried up to 5 attempts; escalated when it fails for good." in markdown


def test_a_type_never_seen_says_so_and_names_who_is_told() -> None:
    book = build_runbook(
        InsufficientFundsError,
        inputs(events=[], resolutions={}, dead_letters={}),
        now_s=T0,
    )
    markdown = book.to_markdown()
    assert "- None recorded yet." in markdown
    assert "Nothing has resolved it here yet." in markdown
    assert book.told and book.told[0]["levels"]
    assert book.diagnose[0].startswith("The broker refused the order as sent")


def test_without_a_policy_or_escalation_nobody_is_told() -> None:
    no_policy = build_runbook(RateLimitError, inputs(policy=None), now_s=T0)
    assert no_policy.told == []
    assert "- Nobody: no escalation policy is configured." in no_policy.to_markdown()
