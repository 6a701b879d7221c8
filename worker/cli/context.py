"""Shared plumbing of the ``alchemiser`` CLI: services built on first use, errors, output.

Commands ask :func:`services` for what they need; nothing touches Redis or the broker before
a command does. Expected failures (bad input, bad settings, Redis or the broker unreachable)
become one line on stderr and an exit code, in one place: :func:`services`.
"""

from __future__ import annotations

import getpass
import json
import math
import socket
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import typer
from celery import Celery
from kombu.exceptions import OperationalError as BrokerError
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from resilience.chaos import ChaosStore
from resilience.deadletter.store import DeadLetterStore
from resilience.errors import ConfigurationError, ValidationError
from resilience.guard.status import GuardStatus
from resilience.notify.alert_store import AlertStore
from resilience.scrub import Scrubber
from resilience.storage.connection import connect
from resilience.storage.keys import KeySpace
from tasks.runtime import TradingRuntime
from worker.logging import configure_logging
from worker.settings import Settings, load_settings

__all__ = [
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "CliError",
    "JsonOption",
    "Services",
    "actor",
    "print_json",
    "print_table",
    "redact_url",
    "say",
    "seconds_option",
    "services",
    "whole_option",
]

# Every listing command takes --json and then prints one JSON document (CONTRACT).
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]

EXIT_FAILURE = 1
EXIT_USAGE = 2
# Width of tables written to a pipe or file (rich would otherwise assume 80 columns).
PIPED_WIDTH = 200


class CliError(Exception):
    """An expected failure: a message a person can act on, and the exit code."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Services:
    """What commands need, each part built on first use and released by :meth:`close`."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._given_settings = settings

    @cached_property
    def settings(self) -> Settings:
        """The deployment's settings (environment over config file over defaults); from now
        on log lines (on stderr) are scrubbed of their secrets and filtered by their level."""
        settings = self._given_settings or load_settings()
        configure_logging(Scrubber(settings.secret_values()), settings.log_level)
        return settings

    @cached_property
    def redis(self) -> Redis:
        """A Redis client for shared state, checked with a PING so failures show up early."""
        client = connect(
            self.settings.redis_url, socket_timeout_s=self.settings.redis_socket_timeout_s
        )
        client.ping()
        return client

    @cached_property
    def keys(self) -> KeySpace:
        """The deployment's key space."""
        return KeySpace(self.settings.namespace)

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        """The dead-letter store."""
        return DeadLetterStore(
            self.redis,
            self.keys,
            max_entries=self.settings.dlq_max_entries,
            retention_s=self.settings.dlq_retention_s,
        )

    @cached_property
    def chaos(self) -> ChaosStore:
        """The fault-injection rules."""
        return ChaosStore(self.redis, self.keys)

    @cached_property
    def alerts(self) -> AlertStore:
        """The fleet's open alerts."""
        return AlertStore(self.redis, self.keys)

    @cached_property
    def guard_status(self) -> GuardStatus:
        """Breakers and limits of the configured resources."""
        return GuardStatus(self.redis, self.keys, self.settings.resource_configs)

    @cached_property
    def runtime(self) -> TradingRuntime:
        """The trading runtime a worker would build (broker adapter included)."""
        from worker.runtime import build_runtime  # noqa: PLC0415 - only `paper` commands need it

        runtime = build_runtime(self.settings)
        runtime.resilience.redis.ping()  # fail early, with the Redis message, when it is down
        return runtime

    @cached_property
    def celery(self) -> Celery:
        """A Celery app configured like the workers', used only to publish."""
        from worker.application import create_app  # noqa: PLC0415 - only publishing commands need it

        return create_app(self.settings)

    def publish(self, task: str, *, kwargs: dict[str, Any]) -> str:
        """Send ``task`` to the broker (its route picks the queue); returns the task id."""
        return str(self.celery.send_task(task, kwargs=kwargs).id)

    def check_broker(self) -> None:
        """Connect to the Celery broker once (one quick retry); ``OperationalError`` if down."""
        with self.celery.connection_for_write() as connection:
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=1, interval_max=1
            )

    def close(self) -> None:
        """Release the connections that were opened."""
        if "celery" in self.__dict__:
            self.celery.close()
        if "redis" in self.__dict__:
            self.redis.close()
        if "runtime" in self.__dict__:
            self.runtime.resilience.redis.close()

    def describe_redis_failure(self, error: Exception) -> str:
        """What to tell the operator when the state Redis cannot be reached."""
        url = redact_url(self.settings.redis_url)
        return (
            f"cannot reach Redis at {url} ({_reason(error)}). Start Redis there, or set "
            "ALCHEMISER_REDIS_URL to the URL of a reachable server."
        )

    def describe_broker_failure(self, error: Exception) -> str:
        """What to tell the operator when the Celery broker cannot be reached."""
        settings = self.settings
        url = redact_url(settings.effective_broker_url)
        hint = (
            "set ALCHEMISER_BROKER_URL to a reachable broker"
            if settings.broker_url
            else "set ALCHEMISER_REDIS_URL (or ALCHEMISER_BROKER_URL for a separate broker) "
            "to a reachable server"
        )
        return (
            f"cannot reach the Celery broker at {url} ({_reason(error)}). "
            f"Start it there, or {hint}."
        )


@contextmanager
def services(ctx: typer.Context) -> Iterator[Services]:
    """The command's :class:`Services`; turns expected failures into a message and an exit.

    Wrap a command's body: ``with services(ctx) as svc: ...``. Connections are closed at the
    end; bad input and bad settings exit 2, Redis or the broker unreachable exits 1.
    """
    found = ctx.ensure_object(Services)
    try:
        yield found
    except CliError as failure:
        _fail(failure.message, failure.exit_code)
    except (ConfigurationError, ValidationError) as invalid:
        _fail(invalid.message, EXIT_USAGE)
    except (RedisConnectionError, RedisTimeoutError) as down:
        _fail(found.describe_redis_failure(down), EXIT_FAILURE)
    except BrokerError as down:
        _fail(found.describe_broker_failure(down), EXIT_FAILURE)
    finally:
        found.close()


def _reason(error: Exception) -> str:
    return str(error).rstrip(".") or type(error).__name__


def _fail(message: str, exit_code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(exit_code) from None


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    if not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def seconds_option(
    option: str, value: float | None, *, maximum: float, allow_zero: bool = False
) -> float | None:
    """``value`` of a seconds option, or a usage error unless finite, positive (or zero when
    allowed) and at most ``maximum``."""
    if value is None:
        return None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero) or value > maximum:
        bound = ">= 0" if allow_zero else "> 0"
        raise CliError(
            f"{option} must be a finite number of seconds {bound} and <= {maximum:g}, "
            f"got {value:g}",
            exit_code=EXIT_USAGE,
        )
    return value


def whole_option(option: str, value: int | None, *, minimum: int, maximum: int) -> int | None:
    """``value`` of a whole-number option, or a usage error unless within the bounds."""
    if value is not None and not minimum <= value <= maximum:
        raise CliError(
            f"{option} must be a whole number from {minimum} to {maximum}, got {value}",
            exit_code=EXIT_USAGE,
        )
    return value


def actor() -> str:
    """Who acts, for the audit trail: ``cli:<user>@<host>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def print_json(document: Any) -> None:
    """Print ``document`` as the one JSON document on stdout."""
    typer.echo(json.dumps(document))


def say(message: str, *, err: bool = False) -> None:
    """Print a line for people (no markup interpretation, no inserted line breaks)."""
    Console(stderr=err).print(message, markup=False, highlight=False, soft_wrap=True)


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    empty: str,
    whole: Collection[str] = (),
) -> None:
    """Print rows as a rich table (long cells fold, never cut), or ``empty`` when none.

    Cells of the ``whole`` columns (ids people copy) are never broken: the other columns give
    way, even at 80 columns.
    """
    cells = [[Text("" if cell is None else str(cell)) for cell in row] for row in rows]
    if not cells:
        say(empty)
        return
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        if column in whole:
            widest = max(row[index].cell_len for row in cells)
            table.add_column(column, no_wrap=True, min_width=widest)
        else:
            table.add_column(column, overflow="fold")
    for row in cells:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # piped: as wide as the content needs, up to a limit
        console = Console(width=PIPED_WIDTH)
    console.print(table)
