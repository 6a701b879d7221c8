"""The factory of the Celery application (``worker.app``) and its at-least-once configuration."""

from __future__ import annotations

import logging
from typing import Any

import structlog
from celery import Celery, signals
from redis import Redis

from resilience.scrub import Scrubber
from resilience.storage.connection import connect
from resilience.storage.keys import KeySpace
from resilience.storage.persistence import persistence_of
from resilience.task import RUNTIME_SETTING
from tasks.routing import ROUTES, queue_declarations
from tasks.runtime import ORDER_TTL_SETTING, TRADING_RUNTIME_SETTING
from tasks.spec import SPEC
from worker.bindings import drop_legacy_bindings
from worker.epoch_watch import EpochStep
from worker.logging import configure_logging, scrub_handlers
from worker.publishing import SCRUBBER_SETTING
from worker.refused import quarantine_refused_messages
from worker.runtime import RuntimeProvider
from worker.sentry import SentryReporter, install_sentry
from worker.settings import Settings, load_settings
from worker.transport import restore_sweep_s

__all__ = ["create_app"]

_log = structlog.get_logger("alchemiser.worker")


def warn_without_persistence(client: Redis) -> None:
    """Log ``redis_without_persistence`` when the state Redis has neither AOF nor RDB on."""
    try:
        found = persistence_of(client)
    except Exception as exc:  # a start-up warning must not stop the worker
        _log.warning("redis_persistence_unknown", error=type(exc).__name__)
        return
    if found.durable is False:
        _log.warning(
            "redis_without_persistence",
            advice="dead letters, paper orders, breaker state and alerts are lost when this"
            " Redis restarts: turn on AOF (appendonly yes) or RDB snapshots (save ...)",
        )


def create_app(settings: Settings | None = None) -> Celery:
    """A configured Celery app; reads the environment when no settings are given."""
    settings = settings or load_settings()
    keys = KeySpace(settings.namespace)
    modules = list(SPEC.modules_for(settings.trading_broker))
    # Task messages' argument reprs (what Flower and task events show) are scrubbed.
    app = Celery(
        "alchemiser",
        broker=settings.effective_broker_url,
        include=modules,
        amqp="worker.publishing:ScrubbingAMQP",
    )
    transport_options: dict[str, object] = {"visibility_timeout": settings.visibility_timeout_s}
    if settings.broker_is_redis:
        # Deployments sharing one Redis stay apart by key prefix (CONTRACT).
        transport_options["global_keyprefix"] = keys.broker_prefix
        transport_options["socket_timeout"] = 5.0
        transport_options["socket_connect_timeout"] = 5.0
        # kombu looks for messages past the visibility timeout every 10 s but, by default,
        # scans only on every 10th look: a dead worker's messages waited up to 100 s more.
        # Live workers renew what they hold (worker.transport), so a message past the timeout
        # is a dead worker's: it is restored within the timeout plus one sweep.
        transport_options["unacked_restore_throttle"] = 1
        transport_options["unacked_restore_interval"] = restore_sweep_s(
            settings.visibility_timeout_s
        )
        if settings.effective_broker_url.startswith("redis://"):
            # An item on a queue that is not a kombu envelope reaches the consumer (and
            # quarantine) instead of stopping the worker inside kombu's event loop.
            app.conf.broker_transport = "worker.transport:ResilientRedisTransport"
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_ignore_result=True,
        # At least once: ack after the body ran, requeue when the worker process dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A task running when the broker connection drops finishes (an order half sent is
        # settled by its client_order_id); its message comes back if the ack cannot be sent.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_prefetch_multiplier=1,
        task_queues=queue_declarations(),
        task_default_queue=SPEC.default_queue,
        task_routes=ROUTES,
        task_create_missing_queues=False,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # A message it cannot turn into a task is quarantined instead of stopping the worker.
        worker_consumer="worker.consumer:QuarantiningConsumer",
        worker_send_task_events=settings.task_events,
        task_send_sent_event=settings.task_events,
        beat_schedule=SPEC.beat_schedule(),
        timezone="UTC",
        enable_utc=True,
    )
    # Sentry (SENTRY_DSN) in worker and beat processes: final failures and internal errors.
    reporters: tuple[SentryReporter, ...] = ()
    if settings.sentry_dsn is not None:
        reporters = (SentryReporter(Scrubber(settings.secret_values())),)
        install_sentry(settings, reporters[0])
    provider = RuntimeProvider(settings, reporters=reporters)
    app.conf[TRADING_RUNTIME_SETTING] = provider
    app.conf[ORDER_TTL_SETTING] = settings.order_ttl_s
    app.conf[RUNTIME_SETTING] = provider.resilience
    quarantine_refused_messages(app, provider.resilience)
    app.conf["alchemiser_settings"] = settings
    scrubber = Scrubber(settings.secret_values())
    app.conf[SCRUBBER_SETTING] = scrubber
    configure_logging(scrubber, settings.log_level)

    def scrub_celery_logger(logger: logging.Logger, **_: Any) -> None:
        scrub_handlers(logger, scrubber)

    # Celery builds its handlers when the worker starts; they get the filter then.
    signals.after_setup_logger.connect(scrub_celery_logger, weak=False)
    signals.after_setup_task_logger.connect(scrub_celery_logger, weak=False)

    def flush_outcomes(**_: Any) -> None:
        # Successful runs are recorded late: settle what is still tallied before exit.
        provider.flush()

    _prepare_each_worker(app, settings)
    # Each worker remembers the fleet epoch, so a Redis that lost its data is noticed.
    app.steps["consumer"].add(EpochStep)
    signals.worker_process_shutdown.connect(flush_outcomes, weak=False)
    signals.worker_shutdown.connect(flush_outcomes, weak=False)
    return app


def _prepare_each_worker(app: Celery, settings: Settings) -> None:
    """At a worker's start, before it consumes: say whether the state Redis persists, and drop
    the queue bindings older releases left behind (they fan tasks out)."""

    def prepare_worker(sender: Any, **_: Any) -> None:
        if sender.app is not app:
            return
        client = connect(settings.redis_url, socket_timeout_s=settings.redis_socket_timeout_s)
        try:
            warn_without_persistence(client)
        finally:
            client.close()
        try:
            dropped = drop_legacy_bindings(app)
        except Exception as exc:  # the worker still runs; the operator is told what is left
            _log.warning("legacy_queue_bindings_not_dropped", error=repr(exc))
        else:
            if dropped:
                _log.info("legacy_queue_bindings_dropped", queues=dropped)

    signals.worker_init.connect(prepare_worker, weak=False)
