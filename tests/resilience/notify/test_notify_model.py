"""One notification per group of alike failures (resilience.notify.model)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from resilience.notify.model import (
    MAX_EXAMPLES,
    Example,
    Notification,
    NotificationStatus,
    group_key,
)
from resilience.policy.context import ErrorNotificationData
from resilience.policy.retry import ErrorSeverity


def failure(n: int = 1, **changes: Any) -> ErrorNotificationData:
    """The scrubbed notification data of final failure number ``n`` of an order."""
    data: ErrorNotificationData = {
        "severity": "high",
        "priority": "P2",
        "title": "InsufficientFundsError in trading: submit_order",
        "error_type": "InsufficientFundsError",
        "error_id": f"err-{n}",
        "message": f"buying power 10.00 < 5000.00 (order {n})",
        "component": "trading",
        "operation": "submit_order",
        "task_name": "tasks.submit_order",
        "occurred_at": f"2026-11-29T03:00:{n:02d}+00:00",
        "dead_letter_id": f"dl-{n}",
        "idempotency_key": f"alc-{n}",
        "attempts": 1,
    }
    data.update(changes)  # type: ignore[typeddict-item]
    return data


def test_one_failure_is_a_group_of_one() -> None:
    """from_failure: the group key is error type and component, count 1, the failure as its
    only example, firing, nothing held back."""
    note = Notification.from_failure(failure(), runbook_url="https://runbooks/ife")
    assert (
        note.key
        == "InsufficientFundsError:trading"
        == group_key("InsufficientFundsError", "trading")
    )
    assert (note.severity, note.count, note.status, note.held_back) == (
        ErrorSeverity.HIGH,
        1,
        NotificationStatus.FIRING,
        0,
    )
    assert note.examples == (
        Example(
            error_id="err-1",
            message="buying power 10.00 < 5000.00 (order 1)",
            task_name="tasks.submit_order",
            operation="submit_order",
            occurred_at="2026-11-29T03:00:01+00:00",
            dead_letter_id="dl-1",
            idempotency_key="alc-1",
            attempts=1,
            reason="",
        ),
    )
    assert note.runbook_url == "https://runbooks/ife"
    assert note.title == "[HIGH] InsufficientFundsError in trading"
    assert note.first_at == "2026-11-29T03:00:01+00:00"


def test_a_group_counts_all_and_shows_the_first_examples() -> None:
    """for_group: the count of the whole group (100 here), the first MAX_EXAMPLES as examples,
    the worst severity of the group, the count in the title."""
    failures = [failure(n) for n in range(1, 6)]
    failures[3] = failure(4, severity="critical")
    note = Notification.for_group(failures, count=100)
    assert note.count == 100
    assert [e.error_id for e in note.examples] == [f"err-{n}" for n in range(1, MAX_EXAMPLES + 1)]
    assert note.severity is ErrorSeverity.CRITICAL
    assert note.title == "[CRITICAL] InsufficientFundsError in trading x100"
    assert Notification.for_group(failures).count == 5


def test_a_group_refuses_failures_of_another_group_and_impossible_counts() -> None:
    """Failures of another error type or component, an empty group or a count below the
    failures given are mistakes, said so."""
    with pytest.raises(ValueError, match="another group"):
        Notification.for_group([failure(1), failure(2, component="market_data")])
    with pytest.raises(ValueError, match="at least one"):
        Notification.for_group([])
    with pytest.raises(ValueError, match="below"):
        Notification.for_group([failure(1), failure(2)], count=1)


def test_resolved_and_held_back_notices() -> None:
    """resolved() keeps the group and says it is resolved (and what was held back);
    with_held_back(n) says how many the rate limits held back."""
    note = Notification.for_group([failure(1), failure(2)])
    assert note.with_held_back(7).held_back == 7
    resolved = note.with_held_back(7).resolved()
    assert (resolved.status, resolved.held_back, resolved.key) == (
        NotificationStatus.RESOLVED,
        7,
        note.key,
    )
    assert resolved.title == "[RESOLVED] InsufficientFundsError in trading"


def test_unknown_severity_is_refused() -> None:
    """A severity outside the hierarchy's four is a ValueError, not a silent default."""
    with pytest.raises(ValueError):
        Notification.from_failure(failure(severity="apocalyptic"))


def test_a_notification_that_contradicts_itself_is_refused() -> None:
    """A key that is not the group of its error type and component, no examples, more than
    MAX_EXAMPLES, a count below the examples or a negative held_back is a ValueError."""
    one = Notification.from_failure(failure())
    example = one.examples[0]
    for changes in (
        {"key": "OtherError:trading"},
        {"examples": ()},
        {"examples": (example,) * (MAX_EXAMPLES + 1), "count": 10},
        {"examples": (example, example), "count": 1},
        {"held_back": -1},
    ):
        with pytest.raises(ValueError):
            replace(one, **changes)


def test_missing_attempts_and_the_reason_are_read() -> None:
    """attempts None reads as 0; the reason a failure was final is kept with its example."""
    note = Notification.from_failure(failure(attempts=None, reason="retries exhausted"))
    assert (note.examples[0].attempts, note.examples[0].reason) == (0, "retries exhausted")
