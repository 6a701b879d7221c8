"""A mail-sending Celery app built only on ``resilience``'s public API: another domain than
trading, importing nothing of ``tasks`` or ``worker``. Its settings come from the environment:
``MAILER_REDIS_URL``, ``MAILER_NAMESPACE`` and ``MAILER_API_URL`` (an HTTP mail API)."""

from __future__ import annotations

import os

import requests
from celery import Celery

from resilience import (
    BreakerConfig,
    LazyRuntime,
    ResilientTask,
    ResourceConfig,
    build_resilience_runtime,
    install_runtime,
)

REDIS_URL = os.environ["MAILER_REDIS_URL"]
NAMESPACE = os.environ["MAILER_NAMESPACE"]
API_URL = os.environ["MAILER_API_URL"]

# The mail API's breaker opens when half of at least 3 calls in a minute failed, for a minute.
MAIL_API = ResourceConfig(
    name="mail.api",
    breaker=BreakerConfig(minimum_calls=3, failure_rate_threshold=50.0, wait_duration_in_open_s=60),
)

app = Celery("mailer", broker=REDIS_URL)
app.conf.broker_transport_options = {"global_keyprefix": f"{NAMESPACE}:"}
app.conf.worker_hijack_root_logger = False
install_runtime(
    app,
    LazyRuntime(
        lambda: build_resilience_runtime(REDIS_URL, NAMESPACE, resources={"mail.api": MAIL_API})
    ),
)


class MailTask(ResilientTask):
    """A call of the mail API: admitted by its breaker fleet-wide."""

    component = "mail"
    resources = ("mail.api",)


@app.task(base=MailTask, bind=True, name="mailer.send", shared=False)
def send(self: MailTask, to: str) -> str:
    """Ask the mail API to send to ``to``."""
    response = requests.post(f"{API_URL}/send", json={"to": to}, timeout=2)
    response.raise_for_status()
    return response.text
