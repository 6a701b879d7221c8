"""ResilientTask's use of the Guard, unit level: admission before the body (defer, dead-letter at
the deadline, fail modes without Redis), outcome recording after it (leases, breaker window,
retry budget, rate-limit push). Tasks are called with a pushed request as a worker would; the
guard scripts run on the real test Redis with time injected through a ManualClock."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
import redis
import requests
from celery import Celery
from celery.canvas import Signature
from celery.exceptions import Ignore, Reject, Retry

from resilience.deadletter.store import DeadLetter, DeadLetterStore
from resilience.errors import (
    InsufficientFundsError,
    RateLimitError,
    TradingClientError,
)
from resilience.guard.admission import Admission, Guard, Outcome
from resilience.guard.resources import (
    BreakerConfig,
    ConcurrencyConfig,
    RateLimitConfig,
    ResourceConfig,
    RetryBudgetConfig,
)
from resilience.guard.status import GuardStatus
from resilience.observability.outcomes import OutcomeCounter
from resilience.policy.handler import ErrorHandler
from resilience.scrub import Scrubber
from resilience.storage.clock import ManualClock
from resilience.storage.connection import connect
from resilience.storage.keys import KeySpace
from resilience.task import (
    ADMISSION_JITTER,
    RUNTIME_SETTING,
    DeliveryState,
    ResilienceRuntime,
    ResilientTask,
)
from tasks.classification import trading_classifier
from tests.builders import deliver_as_worker

WINDOW, LEASES, BUDGET = 1, 5, 6  # indexes into KeySpace.resource(name)
SEED = 7
# The runtime rng's first draw: the jitter a refused run's retry-after is stretched by.
JITTER = random.Random(SEED).uniform(0.0, ADMISSION_JITTER)
TASK_ID = "task-1"
WAIT_IN_OPEN_S = 30.0
PREVIOUS = DeliveryState(
    failures=2,
    deferrals=1,
    history=({"attempt": 1, "error_type": "TradingClientError", "action": "retry"},),
)

Body = Callable[..., Any]


# --- harness ---------------------------------------------------------------------------------


def breaker(**overrides: Any) -> BreakerConfig:
    """A breaker that trips after two failures and stays OPEN exactly WAIT_IN_OPEN_S."""
    settings: dict[str, Any] = {
        "window_s": 10,
        "minimum_calls": 2,
        "slow_call_rate_threshold": 0.0,
        "wait_duration_in_open_s": WAIT_IN_OPEN_S,
        "wait_jitter": 0.0,
    }
    settings.update(overrides)
    return BreakerConfig(**settings)


class MaxJitter(random.Random):
    """A random source whose ``uniform`` always gives the upper bound."""

    def uniform(self, a: float, b: float) -> float:
        return b


class DeadlineTask(ResilientTask):
    """A task whose deadline is its ``valid_until_s`` kwarg (as an order's ``valid_until``) and
    whose idempotency key is its ``client_order_id``."""

    def deadline_s(self, kwargs: dict[str, Any]) -> float | None:
        value = kwargs.get("valid_until_s")
        return float(value) if value is not None else None

    def idempotency_key_of(self, kwargs: dict[str, Any]) -> str | None:
        value = kwargs.get("client_order_id")
        return str(value) if value is not None else None


@dataclass
class Harness:
    """One Celery app, its runtime on the test namespace, and what the task published."""

    client: redis.Redis
    keys: KeySpace
    clock: ManualClock
    app: Celery
    retries: list[dict[str, Any]] = field(default_factory=list)
    escalations: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def dead_letters(self) -> DeadLetterStore:
        return DeadLetterStore(self.client, self.keys)

    def guard(
        self, *resources: ResourceConfig, client: redis.Redis | None = None, **opts: Any
    ) -> Guard:
        """A Guard on the test namespace whose server time is the harness clock."""
        opts.setdefault("server_clock", self.clock)
        opts.setdefault("monotonic", self.clock.now_s)
        return Guard(client or self.client, self.keys, {r.name: r for r in resources}, **opts)

    def install(self, guard: Guard | None, *, rng: random.Random | None = None) -> None:
        """Make the app's runtime use ``guard`` (and ``rng`` for jitter)."""
        scrubber = Scrubber()
        runtime = ResilienceRuntime(
            redis=self.client,
            keys=self.keys,
            dead_letters=self.dead_letters,
            handler=ErrorHandler(classifier=trading_classifier(), scrubber=scrubber),
            scrubber=scrubber,
            outcomes=OutcomeCounter(self.client, self.keys),
            clock=self.clock,
            max_countdown_s=3600.0,
            guard=guard,
            rng=rng or random.Random(SEED),
        )
        self.app.conf[RUNTIME_SETTING] = lambda: runtime

    def task(
        self,
        *resources: str,
        body: Body | None = None,
        base: type[ResilientTask] = ResilientTask,
        name: str = "unit.guarded",
    ) -> ResilientTask:
        """A task declaring ``resources``; every run of its body is appended to ``runs``."""
        runs = self.runs

        def guarded(self: ResilientTask, /, **kwargs: Any) -> Any:
            runs.append({"admission": self.admission, "kwargs": kwargs})
            return body(self, **kwargs) if body is not None else "done"

        return self.app.task(bind=True, base=base, name=name, shared=False, resources=resources)(
            guarded
        )

    def state_of_retry(self, index: int = -1) -> DeliveryState:
        """The delivery state a published retry carries."""
        return DeliveryState.from_headers(self.retries[index]["headers"])

    def leases(self, name: str = "api") -> int:
        return int(self.client.zcard(self.keys.resource(name)[LEASES]))

    def window(self, name: str = "api") -> dict[str, str]:
        return self.client.hgetall(self.keys.resource(name)[WINDOW])  # type: ignore[return-value]

    def budget_tokens(self, name: str = "api") -> float:
        return float(self.client.hget(self.keys.resource(name)[BUDGET], "tokens"))  # type: ignore[arg-type]

    def dead_letter(self) -> DeadLetter:
        entry = self.dead_letters.get(TASK_ID)
        assert entry is not None, "no dead letter was written"
        return entry


@pytest.fixture
def h(client: redis.Redis, keys: KeySpace, monkeypatch: pytest.MonkeyPatch) -> Harness:
    app = Celery("unit", broker="memory://", set_as_current=False)
    # Start at Redis's own time: the dead-letter store evicts entries older than its retention
    # by Redis time, and the dead letters are stamped with this clock.
    harness = Harness(client=client, keys=keys, clock=ManualClock(float(client.time()[0])), app=app)

    def capture_retry(self: Signature, *args: object, **kwargs: object) -> None:
        harness.retries.append(dict(self.options))

    def capture_escalation(name: str, *args: object, **kwargs: object) -> None:
        harness.escalations.append(name)

    monkeypatch.setattr(Signature, "apply_async", capture_retry)
    monkeypatch.setattr(app, "send_task", capture_escalation)
    return harness


def deliver(task: ResilientTask, *, state: DeliveryState | None = None, **kwargs: Any) -> Any:
    """Run ``task`` as a worker delivers it from ``trading``."""
    return deliver_as_worker(task, task_id=TASK_ID, queue="trading", state=state, **kwargs)


@pytest.fixture
def dead_client() -> Iterator[redis.Redis]:
    """A client of a port nothing listens on, giving up within 0.2 s."""
    conn = connect("redis://127.0.0.1:1/0", socket_timeout_s=0.2, connect_timeout_s=0.2, retries=0)
    yield conn
    conn.close()


@contextmanager
def hung_server() -> Iterator[int]:
    """A TCP server on loopback that accepts connections and never answers; yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    stop = threading.Event()
    held: list[socket.socket] = []

    def hold() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:  # the accept timeout: look at the stop flag again
                continue
            held.append(conn)

    thread = threading.Thread(target=hold, name="hung-redis", daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=2.0)
        server.close()
        for conn in held:
            conn.close()


# --- 1. a refused run is deferred, not run, no attempt spent ------------------------------------


def trip_with_failures(h: Harness, guard: Guard) -> None:
    for _ in range(2):
        admission = guard.admit(["api"])
        assert admission.admitted
        guard.record(admission, Outcome.FAILED)


def force_open(h: Harness, guard: Guard) -> None:
    status = GuardStatus(h.client, h.keys, guard.resources, server_clock=h.clock)
    assert status.force_open("api") == "closed>forced_open"


def take_rate(h: Harness, guard: Guard) -> None:
    assert guard.admit(["api"]).admitted


def hold_lease(h: Harness, guard: Guard) -> None:
    assert guard.admit(["api"]).admitted


@dataclass(frozen=True)
class Refusal:
    """How a resource is made to refuse the next run, and what the task should make of it."""

    config: ResourceConfig
    refuse: Callable[[Harness, Guard], None]
    error_type: str
    retry_after_s: float
    leases: int  # leases held by others (the refused run must add none)


WITH_BREAKER = ResourceConfig("api", breaker=breaker(), concurrency=ConcurrencyConfig(limit=4))
REFUSALS = [
    pytest.param(
        Refusal(WITH_BREAKER, trip_with_failures, "CircuitBreakerOpenError", WAIT_IN_OPEN_S, 0),
        id="breaker-tripped-by-failures",
    ),
    pytest.param(
        Refusal(WITH_BREAKER, force_open, "CircuitBreakerOpenError", WAIT_IN_OPEN_S, 0),
        id="breaker-forced-open",
    ),
    pytest.param(
        Refusal(
            ResourceConfig("api", rate_limit=RateLimitConfig(rate=1, period_s=10.0)),
            take_rate,
            "AdmissionRefusedError",
            10.0,
            0,
        ),
        id="rate-limited",
    ),
    pytest.param(
        Refusal(
            ResourceConfig("api", concurrency=ConcurrencyConfig(limit=1, lease_s=60.0)),
            hold_lease,
            "AdmissionRefusedError",
            0.25,  # guard_admit.lua: a full concurrency limit asks to come back within 250 ms
            1,
        ),
        id="concurrency-limit",
    ),
]


@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_refused_run_is_deferred_without_running_or_spending_an_attempt(
    h: Harness, refusal: Refusal
) -> None:
    """Refused by its resource, the body does not run; a retry is published after the
    retry-after stretched by the seeded jitter, with deferrals +1 and failures unchanged."""
    guard = h.guard(refusal.config)
    refusal.refuse(h, guard)
    error_type, retry_after_s = refusal.error_type, refusal.retry_after_s
    h.install(guard)
    task = h.task("api")

    with pytest.raises(Retry) as deferred:
        deliver(task, state=PREVIOUS)

    assert h.runs == []
    expected_s = retry_after_s * (1.0 + JITTER)
    assert retry_after_s <= expected_s <= retry_after_s * (1.0 + ADMISSION_JITTER)
    (published,) = h.retries
    assert published["countdown"] == expected_s
    assert deferred.value.when == expected_s
    assert type(deferred.value.exc).__name__ == error_type
    state = h.state_of_retry()
    assert (state.failures, state.deferrals) == (2, 2)
    assert len(state.history) == 2
    record = state.history[-1]
    assert record["error_type"] == error_type
    assert record["action"] == "defer"
    assert record["attempt"] == 3
    assert record["countdown_s"] == round(expected_s, 3)
    assert h.leases() == refusal.leases  # the refused run took nothing
    assert h.dead_letters.get(TASK_ID) is None


# --- 2. refused past the deadline: dead-lettered, not deferred ------------------------------


def forced_open_task(
    h: Harness, rng: random.Random | None = None, base: type[ResilientTask] = DeadlineTask
) -> ResilientTask:
    config = ResourceConfig("api", breaker=breaker())
    guard = h.guard(config)
    force_open(h, guard)
    h.install(guard, rng=rng)
    return h.task("api", base=base, name="unit.order")


def test_a_refusal_that_would_land_past_the_deadline_dead_letters_the_task(h: Harness) -> None:
    """Breaker open for 30 s, deadline in 20 s: the task is dead-lettered (reason names the
    deadline), no retry is published and the body never runs."""
    task = forced_open_task(h)
    valid_until_s = h.clock.now_s() + 20.0

    with pytest.raises(Ignore):
        deliver(task, state=PREVIOUS, valid_until_s=valid_until_s, client_order_id="co-1")

    assert h.runs == []
    assert h.retries == []
    entry = h.dead_letter()
    assert entry.reason == "deadline passes before it may run again"
    assert entry.error_type == "CircuitBreakerOpenError"
    assert entry.idempotency_key == "co-1"
    assert entry.attempts[-1]["error_type"] == "CircuitBreakerOpenError"
    assert entry.attempts[-1]["action"] == "dead_letter"
    assert OutcomeCounter(h.client, h.keys).totals()["dead_lettered:unit.order"] == 1
    assert h.escalations == ["tasks.escalate"]


def test_a_refusal_well_before_the_deadline_is_deferred(h: Harness) -> None:
    """The same refusal with the deadline an hour away is deferred, not dead-lettered."""
    task = forced_open_task(h)

    with pytest.raises(Retry):
        deliver(task, valid_until_s=h.clock.now_s() + 3600.0)

    assert h.runs == []
    assert h.retries[0]["countdown"] == WAIT_IN_OPEN_S * (1.0 + JITTER)
    assert h.dead_letters.get(TASK_ID) is None


def test_jitter_does_not_dead_letter_a_run_that_can_still_meet_its_deadline(h: Harness) -> None:
    """Breaker reopens in 30 s, deadline in 35 s: deferred to no later than the deadline."""
    task = forced_open_task(h, rng=MaxJitter(SEED))
    now_s = h.clock.now_s()

    with pytest.raises(Retry):
        deliver(task, valid_until_s=now_s + 35.0)

    assert h.dead_letters.get(TASK_ID) is None
    assert WAIT_IN_OPEN_S <= h.retries[0]["countdown"] <= 35.0


# --- 3. outcome recording: lease returned, breaker window fed per the error's policy --------


@pytest.mark.parametrize(
    ("failure", "classified_as", "window"),
    [
        pytest.param(None, None, {"calls": "1", "fails": "0"}, id="success-ok"),
        pytest.param(
            ConnectionResetError("connection reset by peer"),
            "TradingClientError",
            {"calls": "1", "fails": "1"},
            id="trading-client-error-failed",
        ),
        pytest.param(
            InsufficientFundsError("insufficient buying power"),
            "InsufficientFundsError",
            {},
            id="insufficient-funds-ignored",
        ),
    ],
)
def test_the_outcome_releases_the_lease_and_feeds_the_breaker_per_policy(
    h: Harness, failure: Exception | None, classified_as: str | None, window: dict[str, str]
) -> None:
    """The lease held during the body is returned afterwards; success counts one call, a
    failure classified TradingClientError (retried) one failed call, an InsufficientFundsError
    (dead-lettered, not retryable) nothing at all."""
    config = ResourceConfig(
        "api", breaker=breaker(minimum_calls=20), concurrency=ConcurrencyConfig(limit=4)
    )
    h.install(h.guard(config))
    leases_in_body: list[int] = []

    def body(task: ResilientTask) -> str:
        leases_in_body.append(h.leases())
        if failure is not None:
            raise failure
        return "filled"

    task = h.task("api", body=body)
    if classified_as is None:
        assert deliver(task) == "filled"
    elif classified_as == "TradingClientError":
        with pytest.raises(Retry):
            deliver(task)
        assert h.state_of_retry().history[-1]["error_type"] == classified_as
    else:
        with pytest.raises(InsufficientFundsError):
            deliver(task)
        entry = h.dead_letter()
        assert (entry.error_type, entry.reason) == (classified_as, "not retryable")

    assert leases_in_body == [1]
    assert h.leases() == 0
    assert {k: v for k, v in h.window().items() if k in ("calls", "fails")} == window


def _celery_retry(task: ResilientTask) -> None:
    raise task.retry(countdown=1.0)


def _ignore(task: ResilientTask) -> None:
    raise Ignore()


def _reject(task: ResilientTask) -> None:
    raise Reject("unprocessable", requeue=False)


@pytest.mark.parametrize(
    ("body", "raised"),
    [
        pytest.param(_celery_retry, Retry, id="Retry"),
        pytest.param(_ignore, Ignore, id="Ignore"),
        pytest.param(_reject, Reject, id="Reject"),
    ],
)
def test_a_body_raising_retry_ignore_or_reject_returns_its_lease_and_records_nothing(
    h: Harness, body: Body, raised: type[BaseException]
) -> None:
    """Celery's own control-flow exceptions pass through unchanged: the lease is returned and
    the breaker window is not touched (Outcome.NONE)."""
    config = ResourceConfig(
        "api", breaker=breaker(minimum_calls=20), concurrency=ConcurrencyConfig(limit=4)
    )
    h.install(h.guard(config))

    with pytest.raises(raised):
        deliver(h.task("api", body=body))

    assert len(h.runs) == 1
    assert h.leases() == 0
    assert h.window() == {}
    assert h.dead_letters.get(TASK_ID) is None


# --- 4. retry budget -------------------------------------------------------------------------


BUDGET_CONFIG = ResourceConfig(
    "api",
    retry_budget=RetryBudgetConfig(
        capacity=10.0, retry_cost=5.0, timeout_cost=8.0, success_refill=0.0, refill_per_s=0.0
    ),
)


def failing_task(h: Harness, *failures: Exception) -> ResilientTask:
    """A task on BUDGET_CONFIG whose n-th run raises ``failures[n]``."""
    h.install(h.guard(BUDGET_CONFIG))
    pending = list(failures)

    def body(task: ResilientTask) -> None:
        raise pending.pop(0)

    return h.task("api", body=body)


def test_the_retry_budget_dead_letters_the_third_transient_failure(h: Harness) -> None:
    """Capacity 10, 5 per retry: two failures are retried, the third is dead-lettered with
    reason "retry budget exhausted" though its policy allows five attempts."""
    task = failing_task(h, *(TradingClientError("503 from the trading API") for _ in range(3)))

    with pytest.raises(Retry):
        deliver(task)
    assert h.budget_tokens() == 5.0
    with pytest.raises(Retry):
        deliver(task, state=h.state_of_retry())
    assert h.budget_tokens() == 0.0
    with pytest.raises(TradingClientError):
        deliver(task, state=h.state_of_retry())

    assert len(h.runs) == 3
    assert len(h.retries) == 2
    entry = h.dead_letter()
    assert entry.reason == "retry budget exhausted"
    assert entry.error_type == "TradingClientError"
    assert [a["action"] for a in entry.attempts] == ["retry", "retry", "dead_letter"]
    assert h.budget_tokens() == 0.0  # a refused retry spends nothing


@pytest.mark.parametrize(
    "timeout",
    [
        pytest.param(TimeoutError("read timed out"), id="builtin-TimeoutError"),
        pytest.param(requests.exceptions.ReadTimeout("read timed out"), id="requests-ReadTimeout"),
    ],
)
def test_a_timeout_costs_the_timeout_cost(h: Harness, timeout: Exception) -> None:
    """A timeout spends timeout_cost (8 of 10), so the next plain failure (5) is refused."""
    task = failing_task(h, timeout, TradingClientError("503 from the trading API"))

    with pytest.raises(Retry) as retried:
        deliver(task)
    assert isinstance(retried.value.exc, TradingClientError)
    assert h.budget_tokens() == 2.0
    with pytest.raises(TradingClientError):
        deliver(task, state=h.state_of_retry())

    assert h.dead_letter().reason == "retry budget exhausted"
    assert h.budget_tokens() == 2.0


# --- 5. a server's Retry-After holds the fleet's rate limiter back ---------------------------


class TooManyRequestsError(Exception):
    """An HTTP client's 429, as the classifier reads it (status and headers)."""

    status_code = 429

    def __init__(self, retry_after: str) -> None:
        super().__init__("429 Too Many Requests")
        self.headers = {"Retry-After": retry_after}


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(RateLimitError("slow down", retry_after_s=7.0), id="RateLimitError"),
        pytest.param(TooManyRequestsError("7"), id="foreign-429"),
    ],
)
def test_a_rate_limit_error_pushes_the_resource_rate_limiter(
    h: Harness, failure: Exception
) -> None:
    """After a RateLimitError with retry_after_s=7, another Guard on the namespace is refused
    by the rate limiter for exactly 7 s; the task itself retries after 7 s."""
    config = ResourceConfig("api", rate_limit=RateLimitConfig(rate=10, period_s=1.0))
    h.install(h.guard(config))

    def body(task: ResilientTask) -> None:
        raise failure

    with pytest.raises(Retry) as retried:
        deliver(h.task("api", body=body))
    assert isinstance(retried.value.exc, RateLimitError)
    assert h.retries[0]["countdown"] == 7.0

    refused = h.guard(config).admit(["api"])
    assert not refused.admitted
    assert refused.reason == "rate limited"
    assert refused.retry_after_s == 7.0


# --- 6 and 7. Redis unavailable or hung: the fail mode decides, quickly ---------------------


def test_redis_down_fail_open_runs_the_body(h: Harness, dead_client: redis.Redis) -> None:
    """fail_mode "open": the body runs with a degraded admission, counted on the guard."""
    config = ResourceConfig("api", breaker=breaker(), fail_mode="open")
    guard = h.guard(config, client=dead_client, server_clock=None)
    h.install(guard)

    assert deliver(h.task("api")) == "done"

    (run,) = h.runs
    admission: Admission = run["admission"]
    assert admission.admitted and admission.degraded
    assert admission.at_us == 0
    assert dict(guard.degraded_decisions) == {"api:admitted": 1}
    assert h.retries == []


def test_redis_down_fail_closed_defers_by_fail_closed_retry_s(
    h: Harness, dead_client: redis.Redis
) -> None:
    """fail_mode "closed": the body does not run; the task is deferred by fail_closed_retry_s
    stretched by the jitter, as an AdmissionRefusedError."""
    config = ResourceConfig("api", breaker=breaker(), fail_mode="closed", fail_closed_retry_s=4.0)
    guard = h.guard(config, client=dead_client, server_clock=None)
    h.install(guard)

    with pytest.raises(Retry):
        deliver(h.task("api"), state=PREVIOUS)

    assert h.runs == []
    assert h.retries[0]["countdown"] == 4.0 * (1.0 + JITTER)
    state = h.state_of_retry()
    assert (state.failures, state.deferrals) == (2, 2)
    assert state.history[-1]["error_type"] == "AdmissionRefusedError"
    assert dict(guard.degraded_decisions) == {"api:refused": 1}


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
def test_a_hung_redis_does_not_hang_the_task(h: Harness, fail_mode: str) -> None:
    """A Redis that accepts and never answers: admission gives up within the socket timeout
    and the fail mode decides, all within 2 s."""
    config = ResourceConfig("api", breaker=breaker(), fail_mode=fail_mode)  # type: ignore[arg-type]
    with hung_server() as port:
        hung = connect(
            f"redis://127.0.0.1:{port}/0",
            socket_timeout_s=0.2,
            connect_timeout_s=0.2,
            retries=0,
        )
        guard = h.guard(config, client=hung, server_clock=None)
        h.install(guard)
        task = h.task("api")
        started = time.monotonic()
        try:
            if fail_mode == "open":
                assert deliver(task) == "done"
            else:
                with pytest.raises(Retry):
                    deliver(task)
        finally:
            elapsed_s = time.monotonic() - started
            hung.close()

    assert 0.2 <= elapsed_s < 2.0  # it waited for the socket timeout, and only for that
    decision = "admitted" if fail_mode == "open" else "refused"
    assert dict(guard.degraded_decisions) == {f"api:{decision}": 1}
    assert len(h.runs) == (1 if fail_mode == "open" else 0)


# --- 8. the admission is visible to the body -------------------------------------------------


def _redis_now_us(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1_000_000 + int(micros)


def test_the_body_sees_its_admission_stamped_with_redis_time(h: Harness) -> None:
    """task.admission inside the body is the granted Admission, at_us from Redis TIME."""
    config = ResourceConfig("api", concurrency=ConcurrencyConfig(limit=2))
    h.install(h.guard(config, server_clock=None))
    task = h.task("api")

    before_us = _redis_now_us(h.client)
    deliver(task, state=PREVIOUS)
    after_us = _redis_now_us(h.client)

    (run,) = h.runs
    admission: Admission = run["admission"]
    assert admission.admitted and not admission.degraded
    assert admission.resources == ("api",)
    assert admission.ticket == f"{TASK_ID}:2.1"
    assert before_us <= admission.at_us <= after_us


# --- 9. no resources, no guard -------------------------------------------------------------


def test_a_task_without_resources_never_asks_the_guard(h: Harness) -> None:
    """No declared resources: no admit, no record, no key written, admission None; a task
    declaring one on the same spy is admitted and recorded once each."""
    spy = mock.Mock(wraps=h.guard(ResourceConfig("api", concurrency=ConcurrencyConfig(limit=2))))
    h.install(spy)

    assert deliver(h.task(name="unit.free")) == "done"
    assert h.runs[-1]["admission"] is None
    assert list(h.client.scan_iter(match=f"{h.keys.namespace}:*")) == []

    def reset(task: ResilientTask) -> None:
        raise ConnectionResetError("connection reset by peer")

    with pytest.raises(Retry):
        deliver(h.task(body=reset, name="unit.free_failing"))
    assert spy.admit.call_count == 0
    assert spy.record.call_count == 0

    deliver(h.task("api", name="unit.guarded_control"))
    assert spy.admit.call_count == 1
    assert spy.record.call_count == 1


# --- 6. before a dead letter: was the work already done? -----------------------------------


class SettledTask(DeadlineTask):
    """An order whose earlier attempt already did its work: the hook finds it."""

    def settled_elsewhere(self, kwargs: dict[str, Any], state: DeliveryState) -> Any | None:
        return {"found": kwargs["client_order_id"], "failures": state.failures}


class UnknowableTask(DeadlineTask):
    """An order whose broker cannot be asked whether the work was done."""

    def settled_elsewhere(self, kwargs: dict[str, Any], state: DeliveryState) -> Any | None:
        raise ConnectionError("broker unreachable")


def test_a_refusal_past_the_deadline_of_work_already_done_is_a_success(h: Harness) -> None:
    """Breaker open past the deadline, but the hook finds the work done: the task returns the
    hook's result, writes no dead letter, escalates nothing and counts one recovery."""
    task = forced_open_task(h, base=SettledTask)

    result = deliver(
        task, state=PREVIOUS, valid_until_s=h.clock.now_s() + 20.0, client_order_id="co-1"
    )

    assert result == {"found": "co-1", "failures": 2}
    assert h.runs == []
    assert h.retries == []
    assert h.dead_letters.get(TASK_ID) is None
    assert h.escalations == []
    assert OutcomeCounter(h.client, h.keys).totals() == {"recovered": 1, "recovered:unit.order": 1}


def test_a_budget_refusal_of_work_already_done_is_a_success(h: Harness) -> None:
    """The retry budget refuses the third failure's retry, but the hook finds the work done:
    it sees the state counting all three failures and its result is the task's."""
    h.install(h.guard(BUDGET_CONFIG))
    failures = [TradingClientError("reply lost") for _ in range(3)]

    def body(task: ResilientTask, **kwargs: Any) -> None:
        raise failures.pop(0)

    task = h.task("api", body=body, base=SettledTask, name="unit.order")
    with pytest.raises(Retry):
        deliver(task, client_order_id="co-1")
    with pytest.raises(Retry):
        deliver(task, state=h.state_of_retry(), client_order_id="co-1")
    result = deliver(task, state=h.state_of_retry(), client_order_id="co-1")

    assert result == {"found": "co-1", "failures": 3}
    assert len(h.runs) == 3
    assert h.dead_letters.get(TASK_ID) is None
    totals = OutcomeCounter(h.client, h.keys).totals()
    assert (totals["retried:unit.order"], totals["recovered:unit.order"]) == (2, 1)
    assert "dead_lettered:unit.order" not in totals


def test_a_failing_settlement_lookup_dead_letters_as_before(h: Harness) -> None:
    """If the hook raises, the task is dead-lettered and escalated exactly as without it."""
    task = forced_open_task(h, base=UnknowableTask)

    with pytest.raises(Ignore):
        deliver(task, state=PREVIOUS, valid_until_s=h.clock.now_s() + 20.0, client_order_id="c")

    entry = h.dead_letter()
    assert entry.error_type == "CircuitBreakerOpenError"
    assert entry.reason == "deadline passes before it may run again"
    assert h.escalations == ["tasks.escalate"]
    totals = OutcomeCounter(h.client, h.keys).totals()
    assert totals == {"dead_lettered": 1, "dead_lettered:unit.order": 1}
