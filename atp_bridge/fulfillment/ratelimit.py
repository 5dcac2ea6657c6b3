"""NewStore's rate limits, seen from the client.

NewStore limits the API calls of a tenant (200 calls/s for production
tenants, 100 for development ones) and answers a call over the limit with
``429 Too Many Requests`` and a ``Retry-After`` header. A 429 means the call
was not processed, so every call (a cancel too) may be sent again once the
server says so. :class:`RateLimitWait` decides, per call, how long to wait
before the next attempt, and gives up (:class:`RateLimitedError`) as soon as
the wait asked for would pass the caller's budget: a warehouse job that must
finish in 30 s should fail at once rather than sleep 60 s and fail later.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable

import requests

from .errors import RateLimitedError, error_from_response

#: Default total wait per call on 429s, in seconds.
DEFAULT_BUDGET_S = 30.0
#: Wait used when a 429 has no usable ``Retry-After`` (doubles each time).
FALLBACK_WAIT_S = 1.0
#: Shortest wait, so a ``Retry-After: 0`` loop still ends within the budget.
MIN_WAIT_S = 0.05


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds (``"2"``) or
    an HTTP date (``"Wed, 21 Oct 2026 07:28:00 GMT"``); ``None`` when absent
    or unreadable. A date in the past is 0."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110: HTTP dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max((when - now).total_seconds(), 0.0)


class RateLimitWait:
    """The 429 waits of one call, bounded by ``budget_s`` in total."""

    def __init__(self, budget_s: float = DEFAULT_BUDGET_S,
                 notify: Callable[[float], None] | None = None):
        self.budget_s = budget_s
        self.waited_s = 0.0
        self.retries = 0
        self._notify = notify

    def next_wait(self, resp: requests.Response) -> float:
        """How long to sleep before sending again after the 429 ``resp``;
        raises :class:`RateLimitedError` when that would pass the budget."""
        asked = parse_retry_after(resp.headers.get("Retry-After"))
        wait = asked if asked is not None else FALLBACK_WAIT_S * 2 ** self.retries
        wait = max(wait, MIN_WAIT_S)
        if self.waited_s + wait > self.budget_s:
            raise self._exhausted(resp, asked)
        self.waited_s += wait
        self.retries += 1
        if self._notify is not None:
            self._notify(wait)
        return wait

    def _exhausted(self, resp: requests.Response, asked: float | None) -> RateLimitedError:
        server = error_from_response(429, _body(resp))
        ask = (f"Retry-After {_seconds(asked)}" if asked is not None
               else "no usable Retry-After")
        text = (f"rate limited by NewStore ({ask}); waiting would pass the "
                f"{_seconds(self.budget_s)} wait budget of this call"
                + (f" (already waited {_seconds(self.waited_s)})" if self.retries else ""))
        return RateLimitedError(text, status=429, error_code=server.error_code,
                                retry_after_s=asked, waited_s=self.waited_s)


def _body(resp: requests.Response) -> dict:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _seconds(value: float) -> str:
    """``1 s``, ``1.5 s``: what people read in a CLI message."""
    if value == math.floor(value):
        return f"{value:.0f} s"
    return f"{value:.2f}".rstrip("0") + " s"


def describe_waits(waits: list[float]) -> str:
    """One sentence for the CLI: what the rate limit cost this command."""
    if not waits:
        return ""
    if len(waits) == 1:
        return f"rate limited by NewStore, retried after {_seconds(waits[0])}"
    return (f"rate limited by NewStore {len(waits)} times, retried after "
            f"{_seconds(sum(waits))} in total")
