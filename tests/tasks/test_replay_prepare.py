"""Tests of ``tasks.replay.prepare_replay``: what may be replayed, and with which payload."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from resilience.deadletter.replay import ReplayRefused
from resilience.deadletter.store import DeadLetter
from resilience.storage.clock import ManualClock
from tasks.payloads import OrderRequest, parse_payload
from tasks.replay import REPLAYABLE, prepare_replay
from tests.builders import dead_order

NOW = datetime(2026, 1, 6, 15, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 with offset."""
    return moment.isoformat()


def entry(
    task: str = "tasks.submit_order",
    *,
    kwargs: dict[str, Any] | None = None,
    idempotency_key: str | None = "alc-original",
) -> DeadLetter:
    """A dead letter of ``task`` (by default an order valid for another hour)."""
    if kwargs is None:
        kwargs = {
            "symbol": "AAPL",
            "side": "buy",
            "qty": 10,
            "client_order_id": "alc-original",
            "valid_until": iso(NOW + timedelta(hours=1)),
        }
    return dead_order(
        task=task,
        kwargs=kwargs,
        idempotency_key=idempotency_key,
        dead_at=iso(NOW - timedelta(minutes=5)),
    )


@pytest.fixture
def clock() -> ManualClock:
    """Now is Tuesday 2026-01-06 15:00 UTC."""
    return ManualClock(NOW.timestamp())


def refusal(prepare: Any, dead: DeadLetter) -> str:
    """The reason ``prepare`` refuses ``dead`` with."""
    with pytest.raises(ReplayRefused) as refused:
        prepare(dead)
    return str(refused.value)


def test_registered_tasks_are_the_trading_tasks() -> None:
    """Exactly the CONTRACT's trading tasks are replayable (not escalations)."""
    assert set(REPLAYABLE) == {
        "tasks.submit_order",
        "tasks.cancel_order",
        "tasks.fetch_quote",
        "tasks.rebalance",
        "tasks.sync_positions",
    }


def test_valid_order_is_prepared_unchanged(clock: ManualClock) -> None:
    """A valid order within its deadline replays with its stored kwargs."""
    dead = entry()
    kwargs = prepare_replay(now_s=clock.now_s)(dead)
    assert kwargs == dead.kwargs
    assert kwargs is not dead.kwargs
    parse_payload(OrderRequest, kwargs)


def test_unregistered_task_is_refused(clock: ManualClock) -> None:
    """A task that is not a registered trading task is never replayed."""
    reason = refusal(prepare_replay(now_s=clock.now_s), entry("os.system", kwargs={}))
    assert reason == "'os.system' is not a registered trading task"
    reason = refusal(prepare_replay(now_s=clock.now_s), entry("tasks.escalate", kwargs={}))
    assert "not a registered trading task" in reason


def test_payload_that_no_longer_validates_is_refused(clock: ManualClock) -> None:
    """A stored payload that fails validation is refused with the validation message."""
    dead = entry(kwargs={**entry().kwargs, "qty": -3})
    reason = refusal(prepare_replay(now_s=clock.now_s), dead)
    assert reason.startswith("payload no longer validates: invalid OrderRequest payload:")
    assert "qty: Input should be greater than 0" in reason


def test_non_order_payloads_are_validated_too(clock: ManualClock) -> None:
    """A quote request with a bad symbol is refused; a good one passes."""
    prepare = prepare_replay(now_s=clock.now_s)
    bad = entry("tasks.fetch_quote", kwargs={"symbol": "not a symbol"}, idempotency_key=None)
    assert "symbol: " in refusal(prepare, bad)
    good = entry("tasks.fetch_quote", kwargs={"symbol": "SPY"}, idempotency_key=None)
    assert prepare(good) == {"symbol": "SPY"}
    sync = entry("tasks.sync_positions", kwargs={"force": True}, idempotency_key=None)
    assert "Extra inputs are not permitted" in refusal(prepare, sync)


def test_order_past_its_deadline_is_refused_with_a_ttl_hint(clock: ManualClock) -> None:
    """An order whose valid_until has passed is refused, pointing at --ttl."""
    dead = entry(kwargs={**entry().kwargs, "valid_until": iso(NOW - timedelta(seconds=1))})
    reason = refusal(prepare_replay(now_s=clock.now_s), dead)
    assert "valid_until has passed" in reason
    assert "--ttl" in reason


def test_deadline_is_judged_by_the_injected_clock(clock: ManualClock) -> None:
    """The same order is replayable before its deadline and refused once the clock passes it."""
    prepare = prepare_replay(now_s=clock.now_s)
    dead = entry()
    prepare(dead)
    clock.advance(3601)
    assert "--ttl" in refusal(prepare, dead)


def test_renew_ttl_sets_a_new_deadline(clock: ManualClock) -> None:
    """With ``renew_ttl_s`` an expired order gets valid_until = now + ttl and replays."""
    dead = entry(kwargs={**entry().kwargs, "valid_until": iso(NOW - timedelta(days=2))})
    kwargs = prepare_replay(now_s=clock.now_s, renew_ttl_s=600)(dead)
    assert kwargs["valid_until"] == "2026-01-06T15:10:00+00:00"
    parsed = parse_payload(OrderRequest, kwargs)
    assert parsed.valid_until == NOW + timedelta(seconds=600)


def test_renew_ttl_gives_a_deadline_to_an_order_that_had_none(clock: ManualClock) -> None:
    """An order stored without valid_until replays once renewed, and is refused otherwise."""
    kwargs = {k: v for k, v in entry().kwargs.items() if k != "valid_until"}
    dead = entry(kwargs=kwargs)
    assert "valid_until: Field required" in refusal(prepare_replay(now_s=clock.now_s), dead)
    renewed = prepare_replay(now_s=clock.now_s, renew_ttl_s=60)(dead)
    assert renewed["valid_until"] == "2026-01-06T15:01:00+00:00"


def test_client_order_id_is_taken_from_the_entry(clock: ManualClock) -> None:
    """The entry's idempotency key is the order's client_order_id: it wins over (or fills in)
    the one in the kwargs."""
    prepare = prepare_replay(now_s=clock.now_s)
    differing = entry(kwargs={**entry().kwargs, "client_order_id": "alc-other"})
    assert prepare(differing)["client_order_id"] == "alc-original"

    missing = {k: v for k, v in entry().kwargs.items() if k != "client_order_id"}
    assert prepare(entry(kwargs=missing))["client_order_id"] == "alc-original"


def test_entry_kwargs_are_not_modified(clock: ManualClock) -> None:
    """Preparing a replay leaves the stored entry's kwargs as they were."""
    dead = entry(kwargs={**entry().kwargs, "client_order_id": "alc-other"})
    before = dict(dead.kwargs)
    prepare_replay(now_s=clock.now_s, renew_ttl_s=60)(dead)
    assert dead.kwargs == before
