"""ResilientTask pieces that need no worker: delivery state and the retry hand-off."""

from __future__ import annotations

import pytest
from celery import Celery
from celery.canvas import Signature
from celery.exceptions import Reject, Retry

from resilience.connection import connect
from resilience.errors import TradingClientError
from resilience.keys import KeySpace
from resilience.outcomes import OutcomeCounter
from resilience.task import HEADER, HISTORY_LIMIT, DeliveryState, ResilientTask


def test_delivery_state_round_trips_through_the_header() -> None:
    """The header carries failures, deferrals, history and replay_of unchanged."""
    state = DeliveryState(failures=2, deferrals=1, history=({"attempt": 1},), replay_of="dl-1")
    assert DeliveryState.from_headers({HEADER: state.to_header()}) == state
    assert DeliveryState.from_headers(None) == DeliveryState()


def test_a_retry_spends_an_attempt_and_a_deferral_does_not() -> None:
    """after() counts failures and deferrals apart; the delivery id changes with either."""
    state = DeliveryState()
    retried = state.after({"attempt": 1}, deferred=False)
    deferred = retried.after({"attempt": 2}, deferred=True)
    assert (retried.failures, retried.deferrals) == (1, 0)
    assert (deferred.failures, deferred.deferrals) == (1, 1)
    assert len({state.delivery, retried.delivery, deferred.delivery}) == 3


def test_history_is_bounded() -> None:
    """Only the newest HISTORY_LIMIT attempt records travel with the message."""
    state = DeliveryState()
    for n in range(HISTORY_LIMIT + 10):
        state = state.after({"attempt": n}, deferred=True)
    assert len(state.history) == HISTORY_LIMIT
    assert state.history[-1] == {"attempt": HISTORY_LIMIT + 9}


@pytest.fixture
def task() -> ResilientTask:
    app = Celery("unit", broker="memory://", set_as_current=False)

    @app.task(bind=True, base=ResilientTask, name="unit.noop", shared=False)
    def noop(self: ResilientTask) -> None:
        return None

    return noop  # type: ignore[return-value]


def test_retry_publish_failure_requeues_instead_of_deleting(
    task: ResilientTask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery rejects without requeue when the retry cannot be published (the message would
    be deleted); ResilientTask turns that into a requeue so the task is not lost."""

    def broker_down(self: Signature, *args: object, **kwargs: object) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(Signature, "apply_async", broker_down)
    task.push_request(id="t-1", headers={}, delivery_info={}, called_directly=False)
    try:
        with pytest.raises(Reject) as rejected:
            task._schedule_retry((), {}, 1.0, DeliveryState(), TradingClientError("503"))
    finally:
        task.pop_request()
    assert rejected.value.requeue is True


def test_retry_carries_the_delivery_state_header(
    task: ResilientTask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry message is published with the next delivery state in its header."""
    published: list[dict[str, object]] = []

    def capture(self: Signature, *args: object, **kwargs: object) -> None:
        published.append(dict(self.options))

    monkeypatch.setattr(Signature, "apply_async", capture)
    state = DeliveryState(failures=1, history=({"attempt": 1},))
    task.push_request(id="t-2", headers={"other": 1}, delivery_info={}, called_directly=False)
    try:
        with pytest.raises(Retry):
            task._schedule_retry((), {"qty": 1}, 2.5, state, TradingClientError("503"))
    finally:
        task.pop_request()
    (options,) = published
    assert options["headers"] == {"other": 1, HEADER: state.to_header()}
    assert options["countdown"] == 2.5


def test_outcome_counting_never_fails_the_task() -> None:
    """A counter that cannot reach Redis is logged and skipped, never raised."""
    dead = connect("redis://127.0.0.1:1/0", connect_timeout_s=0.2, retries=0)
    OutcomeCounter(dead, KeySpace("unit")).incr("retried", "unit.noop")
