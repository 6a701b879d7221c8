"""ResilientTask pieces that need no worker: delivery state and the retry hand-off."""

from __future__ import annotations

import pytest
from celery import Celery
from celery.canvas import Signature
from celery.exceptions import Reject, Retry

from resilience.deadletter.store import DeadLetterStore
from resilience.delivery import HISTORY_LIMIT, Delivery
from resilience.errors import AlchemiserError, TradingClientError
from resilience.observability.outcomes import OutcomeCounter
from resilience.policy.classify import Classifier, default_classifier
from resilience.runtime import build_resilience_runtime, install_runtime
from resilience.storage.connection import connect
from resilience.storage.keys import KeySpace
from resilience.task import HEADER, DeliveryState, ResilientTask


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


def delivery(args: tuple[object, ...], kwargs: dict[str, object]) -> Delivery:
    """A run of the task with ``args`` and ``kwargs`` (no runtime: retries do not need one)."""
    return Delivery(
        runtime=None,  # type: ignore[arg-type]
        task_id="t",
        hostname="",
        queue=None,
        args=args,
        kwargs=dict(kwargs),
        state=DeliveryState(),
        redelivered=False,
    )


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
            task._schedule_retry(delivery((), {}), 1.0, DeliveryState(), TradingClientError("503"))
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
            task._schedule_retry(delivery((), {"qty": 1}), 2.5, state, TradingClientError("503"))
    finally:
        task.pop_request()
    (options,) = published
    assert options["headers"] == {"other": 1, HEADER: state.to_header()}
    assert options["countdown"] == 2.5


def test_outcome_counting_never_fails_the_task() -> None:
    """A counter that cannot reach Redis is logged and skipped, never raised."""
    dead = connect("redis://127.0.0.1:1/0", connect_timeout_s=0.2, retries=0)
    OutcomeCounter(dead, KeySpace("unit")).incr("retried", "unit.noop")


class CountingClassifier(Classifier):
    """The default rules, counting how often a foreign exception is classified."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self._inner = default_classifier()

    def classify(self, exc: BaseException, *, component: str = "default") -> AlchemiserError:
        self.calls += 1
        return self._inner.classify(exc, component=component)


def test_a_failure_the_body_classified_is_not_classified_again(
    redis_url: str, keys: KeySpace
) -> None:
    """A body that classifies its failure to decide (as submit_order does) and lets it fail:
    one classification for the run, and the dead letter carries that very error."""
    classifier = CountingClassifier()
    runtime = build_resilience_runtime(redis_url, keys.namespace, classifier=classifier)
    app = Celery("unit", broker="memory://", set_as_current=False)
    install_runtime(app, lambda: runtime)
    seen: list[AlchemiserError] = []

    @app.task(bind=True, base=ResilientTask, name="unit.refused", shared=False)
    def refused(self: ResilientTask) -> None:
        try:
            raise ValueError("qty must be positive")
        except ValueError as exc:
            seen.append(self.classify(exc))
            raise

    refused.push_request(id="t-3", headers={}, delivery_info={}, called_directly=False)
    try:
        with pytest.raises(AlchemiserError) as failed:
            refused()
    finally:
        refused.pop_request()
    assert classifier.calls == 1
    assert failed.value is seen[0]
    (entry,) = DeadLetterStore(runtime.redis, keys).entries()
    assert (entry.error_type, entry.attempts[0]["error_type"]) == ("ValidationError",) * 2
