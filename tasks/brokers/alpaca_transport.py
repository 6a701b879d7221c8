"""Alpaca's HTTP, as the task layer needs it: what alpaca-py does by default is changed here,
because the task layer owns failure handling.

- **Timeouts.** alpaca-py calls ``requests`` without a timeout, so a silent server would hang
  a worker forever. Each client gets a session whose transport adapter applies ``timeout_s``
  to connecting and to every read.
- **No retries of its own.** alpaca-py sleeps and retries 429 and 504 answers itself (three
  times, 3 s apart), hidden from breakers, rate limiters and the retry policy. Its clients do
  not let that be turned off (``TradingClient`` takes no ``retry_attempts``, and
  ``RESTClient`` reads 0 as "the default"), so it is zeroed on each client.
- **Errors.** alpaca-py's ``APIError`` becomes :class:`~tasks.brokers.base.BrokerAPIError`
  with the status, body and response headers, which the classifier maps by status (and reads
  ``Retry-After``/``X-RateLimit-Reset`` from). Timeouts and connection errors stay
  ``requests``' own exceptions, which the classifier knows too. The original is not chained:
  it holds the request, whose headers carry the credentials.
- **Rate-limit headers.** Every response's ``X-RateLimit-Limit``/``-Remaining``/``-Reset`` is
  read into a :class:`RateLimitHint` for the client's owner.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal, TypeVar

from alpaca.common.exceptions import APIError
from alpaca.common.rest import RESTClient
from requests import PreparedRequest, Response, Session
from requests.adapters import HTTPAdapter
from requests.exceptions import HTTPError
from typing_extensions import override

from resilience.policy.http_facts import parse_retry_after
from tasks.brokers.base import BrokerAPIError

__all__ = ["ApiName", "RateLimitHint", "call", "find", "harden", "read_hint"]

ApiName = Literal["trading", "market_data"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RateLimitHint:
    """What one Alpaca response said of the rate limit.

    ``reset_at_s`` (Unix seconds) is when requests are admitted again: ``X-RateLimit-Reset``,
    or on a 429 the later of it and now + ``Retry-After``. A field is ``None`` when the
    response did not carry it. ``api`` tells the trading API's limit from market data's.
    """

    limit: int | None
    remaining: int | None
    reset_at_s: float | None
    api: ApiName = "trading"


class _TimeoutAdapter(HTTPAdapter):
    """Applies a default timeout to every request sent without one (all of alpaca-py's)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(max_retries=0)  # requests' default too; the task layer retries
        self._timeout_s = timeout_s

    @override
    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        return super().send(
            request,
            stream=stream,
            timeout=self._timeout_s if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


def harden(
    client: RESTClient, timeout_s: float, on_response: Callable[[Response], None]
) -> Session:
    """Give ``client`` a session with a timeout that tells ``on_response`` of every response;
    no retries of its own."""
    session = Session()
    adapter = _TimeoutAdapter(timeout_s)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.hooks["response"].append(lambda response, *args, **kwargs: on_response(response))
    client._session.close()
    client._session = session
    client._retry = 0  # see the module docstring: the constructor cannot turn it off
    return session


def _header_number(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_hint(response: Response, api: ApiName) -> RateLimitHint | None:
    """The rate-limit facts of ``response``; ``None`` when it carries none and is no 429."""
    headers = response.headers
    limit = _header_number(headers, "X-RateLimit-Limit")
    remaining = _header_number(headers, "X-RateLimit-Remaining")
    reset_at_s = _header_number(headers, "X-RateLimit-Reset")
    limited = response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    if limited:
        wait_s = parse_retry_after(headers.get("Retry-After"))
        if wait_s is not None:
            reset_at_s = max(reset_at_s or 0.0, time.time() + wait_s)
    if limit is None and remaining is None and reset_at_s is None and not limited:
        return None
    return RateLimitHint(
        limit=None if limit is None else int(limit),
        remaining=None if remaining is None else int(remaining),
        reset_at_s=reset_at_s,
        api=api,
    )


def call(fn: Callable[[], T]) -> T:
    """``fn()``, with alpaca-py's HTTP errors as :class:`BrokerAPIError`."""
    try:
        return fn()
    except (APIError, HTTPError) as exc:
        response: Response | None = exc.response
        if response is None:
            raise
        error = BrokerAPIError(response.status_code, response.text, dict(response.headers))
    # Raised outside the handler so that nothing links back to the original, whose request
    # carries the credential headers.
    raise error


def find(fn: Callable[[], T]) -> T | None:
    """Like :func:`call`, but a 404 means "no such order": ``None``."""
    try:
        return call(fn)
    except BrokerAPIError as exc:
        if exc.status_code == HTTPStatus.NOT_FOUND:
            return None
        raise
