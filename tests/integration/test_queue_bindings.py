"""Each queue has a binding of its own, on both brokers: a task is delivered once, to its queue.

All three queues used to be bound to exchange ``trading`` under key ``trading``, so one publish
was delivered to every queue a worker had declared (and ran up to three times). The tests run
one worker at ``-l INFO`` and count Celery's own ``succeeded`` lines per task id.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from celery import Celery
from kombu import Exchange, Queue
from kombu.transport.redis import Channel as RedisChannel

from tasks.routing import QUEUES, ROUTES
from tasks.trading import fetch_quote, submit_order
from tests.integration.harness import EMBED, Deployment, order_kwargs, publish_raw, wait_for
from worker.fleet import WorkerProcess, start_worker, wait_until_ready

pytestmark = pytest.mark.integration

BROKERS = ("redis", "rabbitmq")


@pytest.fixture(params=BROKERS)
def broker_deployment(
    request: pytest.FixtureRequest, deployment_factory: Callable[..., Deployment]
) -> Deployment:
    """A deployment on the Redis broker, or on RabbitMQ in a vhost of its own where it runs."""
    if request.param == "redis":
        return deployment_factory()
    vhost = request.getfixturevalue("rabbitmq_vhost")
    return deployment_factory(ALCHEMISER_BROKER_URL=f"amqp://guest:guest@127.0.0.1:5672/{vhost}")


def _worker(deployment: Deployment, queues: str) -> WorkerProcess:
    worker = start_worker(deployment.env, deployment.log_dir, concurrency=1, queues=queues,
                          loglevel="INFO")  # fmt: skip
    deployment.workers.append(worker)
    wait_until_ready(deployment.app, [worker], timeout_s=60.0)
    return worker


def _runs(worker: WorkerProcess, task_name: str, task_id: str) -> int:
    """How often ``worker`` ran ``task_name[task_id]`` to success (Celery's own log line)."""
    line = re.compile(rf"Task {re.escape(task_name)}\[{re.escape(task_id)}\] succeeded")
    return len(line.findall(worker.log()))


def _publish_raw(app: Celery, task_name: str, kwargs: dict[str, object]) -> str:
    """Publish a Celery (protocol 2) message straight to its queue's exchange and key."""
    queue = ROUTES[task_name]["queue"]
    return publish_raw(app, [[], kwargs, EMBED], task=task_name, queue=queue)


def _drain(deployment: Deployment, worker: WorkerProcess, queues: tuple[str, ...]) -> None:
    """Send a marker through each of ``queues`` and wait until ``worker`` ran them all: a
    message delivered to a queue ahead of its marker has run by then (FIFO, prefetch 1)."""
    markers = {
        "trading": ("tasks.sync_positions", {}),
        "market_data": ("tasks.fetch_quote", {"symbol": "MSFT"}),
        "escalation": ("tasks.escalate", {"sweep": {}}),
    }
    sent = []
    for queue in queues:
        name, kwargs = markers[queue]
        sent.append((name, str(deployment.app.send_task(name, kwargs=kwargs).id)))
    wait_for(lambda: all(_runs(worker, n, i) == 1 for n, i in sent), 60, "the markers")


def test_each_queue_is_bound_to_its_own_exchange_and_key(deployment: Deployment) -> None:
    """The app declares every queue with an exchange and routing key of its own name."""
    declared = {
        q.name: (q.exchange.name, q.routing_key) for q in deployment.app.amqp.queues.values()
    }
    assert declared == {name: (name, name) for name in QUEUES}


def test_a_task_sent_three_ways_runs_exactly_once(broker_deployment: Deployment) -> None:
    """By name, by ``.delay`` and by a raw publish to its queue's exchange/key, each fetch_quote
    and each order runs once on a worker consuming all three queues, and is booked once."""
    deployment = broker_deployment
    worker = _worker(deployment, ",".join(QUEUES))
    assert fetch_quote.app is deployment.app  # the app built last is current
    orders = [order_kwargs(), order_kwargs(), order_kwargs()]
    quote = {"symbol": "AAPL"}
    sent = [
        ("tasks.fetch_quote", str(deployment.app.send_task("tasks.fetch_quote", kwargs=quote).id)),
        ("tasks.fetch_quote", str(fetch_quote.delay(**quote).id)),
        ("tasks.fetch_quote", _publish_raw(deployment.app, "tasks.fetch_quote", quote)),
        ("tasks.submit_order", deployment.submit(orders[0])),
        ("tasks.submit_order", str(submit_order.delay(**orders[1]).id)),
        ("tasks.submit_order", _publish_raw(deployment.app, "tasks.submit_order", orders[2])),
    ]  # fmt: skip
    wait_for(lambda: all(_runs(worker, n, i) >= 1 for n, i in sent), 60, "every task to run")
    _drain(deployment, worker, QUEUES)
    assert [_runs(worker, n, i) for n, i in sent] == [1] * 6
    accepted = deployment.accepted_counts()
    assert [accepted[o["client_order_id"]] for o in orders] == [1, 1, 1]


def _declare_all(app: Celery) -> None:
    with app.connection_for_write() as connection:
        for queue in app.amqp.queues.values():
            queue.bind(connection.default_channel).declare()


def test_a_market_data_task_is_never_consumed_from_trading(broker_deployment: Deployment) -> None:
    """A worker on ``trading`` alone never runs fetch_quote; a ``market_data`` worker runs it
    once afterwards."""
    deployment = broker_deployment
    _declare_all(deployment.app)  # as the fleet's other workers have
    trading = _worker(deployment, "trading")
    quote_id = str(deployment.app.send_task("tasks.fetch_quote", kwargs={"symbol": "AAPL"}).id)
    _drain(deployment, trading, ("trading",))
    assert f"tasks.fetch_quote[{quote_id}]" not in trading.log()
    market_data = _worker(deployment, "market_data")
    wait_for(lambda: _runs(market_data, "tasks.fetch_quote", quote_id) == 1, 60, "the quote")
    _drain(deployment, market_data, ("market_data",))
    assert _runs(market_data, "tasks.fetch_quote", quote_id) == 1


def _bind_legacy(app: Celery) -> None:
    """Bind every queue to exchange ``trading`` under key ``trading``, as releases before 0.2
    did (a broker keeps such bindings after an upgrade)."""
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for name in QUEUES:
            Queue(name, Exchange("trading", type="direct"), routing_key="trading").bind(
                channel
            ).declare()


def test_a_worker_drops_the_bindings_an_older_release_left(broker_deployment: Deployment) -> None:
    """With the old shared bindings in the broker, a worker's start removes them: a trading task
    then runs once, not once per queue."""
    deployment = broker_deployment
    _bind_legacy(deployment.app)
    worker = _worker(deployment, ",".join(QUEUES))
    task_id = str(deployment.app.send_task("tasks.sync_positions").id)
    wait_for(lambda: _runs(worker, "tasks.sync_positions", task_id) >= 1, 60, "the task")
    _drain(deployment, worker, ("market_data", "escalation"))
    assert _runs(worker, "tasks.sync_positions", task_id) == 1
    with deployment.app.connection_for_write() as connection:
        channel = connection.default_channel
        if isinstance(channel, RedisChannel):
            members = channel.client.smembers("_kombu.binding.trading")
            assert {m.decode().rsplit("\x06\x16", 1)[1] for m in members} == {"trading"}


def test_legacy_binding_removal_is_logged_once(broker_deployment: Deployment) -> None:
    """The first worker after an upgrade says which queues it unbound; a later one says nothing."""
    deployment = broker_deployment
    if "amqp" in deployment.settings.effective_broker_url:
        pytest.skip("AMQP does not say whether a binding existed")
    _bind_legacy(deployment.app)
    first = _worker(deployment, "trading")
    first.stop(timeout_s=10)
    second = _worker(deployment, "trading")
    assert '"legacy_queue_bindings_dropped"' in first.log()
    assert '"market_data"' in first.log()
    assert "legacy_queue_bindings" not in second.log()
