"""A client for NewStore's Fulfillment Provider API (v0).

Retry policy: GETs and the idempotent POSTs (acknowledgement, resend,
shipment — the server answers a repeated shipment with 200 "duplicate") are
retried on connection errors, timeouts and 5xx with a short exponential
backoff. Cancel and reject POSTs are never retried: a second cancel of
``product1`` cancels a second item, so a lost answer must be checked with the
status GET instead of replayed.

Auth: a raw token, or a :mod:`.tokens` source that fetches and renews
NewStore tokens; a 401 makes a renewable source fetch a new token and the
call is sent once more. Rate limits: a 429 is sent again after its
``Retry-After`` (every call: a 429 was not processed), within a total wait
budget per call (:mod:`.ratelimit`).
"""
from __future__ import annotations

import os
import time
import warnings
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import quote

import requests

from .errors import FulfillmentTransportError, error_from_response
from .ratelimit import DEFAULT_BUDGET_S, RateLimitWait
from .tokens import StaticToken, TokenSource, token_source
from .models import (
    CancelationStatus, EmulatorUnit, ItemRejectionStatus, LineItem, MissingItems, Receipt,
    RejectionStatus, ShipmentResult, ShipmentStatus, as_line_items, as_missing_items,
)

API_PREFIX = "/v0/d"


class FulfillmentClient:
    """Calls every endpoint of the Fulfillment Provider API over one
    :class:`requests.Session`.

    ``base_url`` is the tenant's API root, e.g. ``https://acme.p.newstore.net``
    (a trailing ``/v0/d`` is accepted too). ``token`` is a raw access token or
    a :class:`~atp_bridge.fulfillment.tokens.TokenSource` (e.g.
    :class:`~atp_bridge.fulfillment.tokens.ClientCredentials`, shared by all
    the threads of a process); it is sent as ``Authorization: Bearer <token>``.
    ``rate_limit_budget_s`` bounds the total wait of one call on 429s;
    ``on_rate_limit(wait_s)`` is told of every such wait. Every failure raises
    a :class:`~atp_bridge.fulfillment.errors.FulfillmentError` subclass.
    """

    def __init__(self, base_url: str, token: "str | TokenSource", *,
                 session: requests.Session | None = None,
                 connect_timeout: float = 3.05, read_timeout: float = 10.0,
                 max_retries: int = 3, backoff: float = 0.2,
                 rate_limit_budget_s: float = DEFAULT_BUDGET_S,
                 on_rate_limit: Callable[[float], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        base = base_url.rstrip("/")
        if base.endswith(API_PREFIX):
            base = base[: -len(API_PREFIX)]
        self.base_url = base
        self.auth: TokenSource = StaticToken(token) if isinstance(token, str) else token
        self.token = token if isinstance(token, str) else None  # the raw token, if one
        self.session = session if session is not None else requests.Session()
        self.timeout = (connect_timeout, read_timeout)
        self.max_retries = max_retries
        self.backoff = backoff
        self.rate_limit_budget_s = rate_limit_budget_s
        self.on_rate_limit = on_rate_limit
        self._sleep = sleep

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> "FulfillmentClient":
        """Build from a mapping with ``url``, and ``token`` or ``client_id``,
        ``client_secret`` and ``tenant`` (or ``token_url``), plus optional
        ``connect_timeout``, ``read_timeout``, ``max_retries``, ``backoff``,
        ``rate_limit_budget_s``. ``ValueError`` names missing credentials."""
        extra = {k: options[k] for k in ("connect_timeout", "read_timeout", "max_retries",
                                         "backoff", "rate_limit_budget_s") if k in options}
        creds = {k: options.get(k) for k in ("token", "client_id", "client_secret", "tenant",
                                             "token_url")}
        source = token_source(**creds)
        return cls(options["url"], creds["token"] if isinstance(source, StaticToken) else source,
                   **extra)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs) -> "FulfillmentClient":
        """Build from ``NEWSTORE_URL`` and ``NEWSTORE_CLIENT_ID`` /
        ``NEWSTORE_CLIENT_SECRET`` / ``NEWSTORE_TENANT`` (``NEWSTORE_TOKEN_URL``
        overrides the token URL), or a raw ``NEWSTORE_TOKEN``."""
        env = os.environ if environ is None else environ
        if not env.get("NEWSTORE_URL"):
            raise ValueError("NEWSTORE_URL is not set (the tenant's API root, e.g. "
                             "https://acme.p.newstore.net)")
        options = {k.lower(): env.get(f"NEWSTORE_{k}") for k in (
            "TOKEN", "CLIENT_ID", "CLIENT_SECRET", "TENANT", "TOKEN_URL")}
        return cls.from_config({"url": env["NEWSTORE_URL"], **options, **kwargs})

    def close(self) -> None:
        """Close the underlying session."""
        self.session.close()

    def __enter__(self) -> "FulfillmentClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- endpoints ---------------------------------------------------------

    def accept(self, uuid: str) -> Receipt:
        """``POST /acknowledgement``: announce the intent to fulfill."""
        status, _ = self._call("POST", uuid, "acknowledgement", idempotent=True)
        return Receipt(uuid, status)

    def cancel_items(self, uuid: str, product_ids: Iterable[str]) -> Receipt:
        """``POST /canceled_items``: cancel one item per product id given
        (the cheapest open one first)."""
        body = {"product_ids": list(product_ids)}
        status, _ = self._call("POST", uuid, "canceled_items", json=body)
        return Receipt(uuid, status)

    def get_canceled_items(self, uuid: str) -> CancelationStatus:
        """``GET /canceled_items``; :class:`NotFoundError` until something was canceled."""
        _, data = self._call("GET", uuid, "canceled_items", idempotent=True)
        return CancelationStatus.from_json(uuid, data)

    def reject_items(self, uuid: str,
                     missing_items: Iterable[MissingItems | Mapping[str, Any]]) -> Receipt:
        """``POST /reject_items``: reject one item per product id given (the
        cheapest open one first), each group with its reason."""
        body = {"missing_items": as_missing_items(missing_items)}
        status, _ = self._call("POST", uuid, "reject_items", json=body)
        return Receipt(uuid, status)

    def reject_all_items(self, uuid: str, reason: str) -> Receipt:
        """Reject every open item: the spec's single empty product id case."""
        return self.reject_items(uuid, [MissingItems(("",), reason)])

    def get_rejected_items(self, uuid: str) -> ItemRejectionStatus:
        """``GET /reject_items``; :class:`NotFoundError` until something was rejected."""
        _, data = self._call("GET", uuid, "reject_items", idempotent=True)
        return ItemRejectionStatus.from_json(uuid, data)

    def reject_request(self, uuid: str, rejection_reason: str,
                       missing_product_ids: Iterable[str] = ()) -> Receipt:
        """Deprecated ``POST /rejection``; use :meth:`reject_items`.
        ``cannot_fulfill`` needs no product ids, ``no_inventory`` needs some."""
        warnings.warn("the rejection endpoint is deprecated; use reject_items",
                      DeprecationWarning, stacklevel=2)
        body: dict[str, Any] = {"rejection_reason": rejection_reason}
        ids = list(missing_product_ids)
        if ids:
            body["missing_product_ids"] = ids
        status, _ = self._call("POST", uuid, "rejection", json=body)
        return Receipt(uuid, status)

    def get_rejection(self, uuid: str) -> RejectionStatus:
        """Deprecated ``GET /rejection``; use :meth:`get_rejected_items`."""
        warnings.warn("the rejection endpoint is deprecated; use get_rejected_items",
                      DeprecationWarning, stacklevel=2)
        _, data = self._call("GET", uuid, "rejection", idempotent=True)
        return RejectionStatus.from_json(uuid, data)

    def resend(self, uuid: str) -> Receipt:
        """``POST /resend``: ask NewStore to send the fulfillment request again."""
        status, _ = self._call("POST", uuid, "resend", idempotent=True)
        return Receipt(uuid, status)

    def ship(self, uuid: str,
             line_items: Iterable[LineItem | Mapping[str, Any]]) -> ShipmentResult:
        """``POST /shipment``: mark items shipped (the most expensive open one
        first). ``result.duplicate`` tells a 200 repeat from a 201."""
        body = {"line_items": as_line_items(line_items)}
        status, _ = self._call("POST", uuid, "shipment", json=body, idempotent=True)
        return ShipmentResult(uuid, status, duplicate=(status == 200))

    def get_shipment(self, uuid: str) -> ShipmentStatus:
        """``GET /shipment``; :class:`NotFoundError` until something was shipped."""
        _, data = self._call("GET", uuid, "shipment", idempotent=True)
        return ShipmentStatus.from_json(uuid, data)

    def emulator_units(self, uuid: str) -> tuple[EmulatorUnit, ...]:
        """Every unit of ``uuid`` with its item id, price and status, from the
        emulator's ``GET /_emulator/fulfillment_requests/<uuid>``. Only the
        emulator has this endpoint: NewStore answers 404 (:class:`NotFoundError`)."""
        url = f"{self.base_url}/_emulator/fulfillment_requests/{quote(str(uuid), safe='')}"
        _, data = self._send("GET", url, idempotent=True)
        items = data.get("items") or []
        return tuple(EmulatorUnit.from_json(i) for i in items if isinstance(i, Mapping))

    # -- transport ---------------------------------------------------------

    def url_for(self, uuid: str, action: str) -> str:
        """Full URL of ``action`` for fulfillment request ``uuid``."""
        return (f"{self.base_url}{API_PREFIX}/fulfillment_requests/"
                f"{quote(str(uuid), safe='')}/{action}")

    def _call(self, method: str, uuid: str, action: str, *, json: Any = None,
              idempotent: bool = False) -> tuple[int, dict]:
        return self._send(method, self.url_for(uuid, action), json=json, idempotent=idempotent)

    def _send(self, method: str, url: str, *, json: Any = None,
              idempotent: bool = False) -> tuple[int, dict]:
        attempts = 1 + (self.max_retries if idempotent else 0)
        limits = RateLimitWait(self.rate_limit_budget_s, self.on_rate_limit)
        attempt, renewed = 0, False
        while True:
            last = attempt == attempts - 1
            token = self.auth.token()
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            try:
                resp = self.session.request(method, url, json=json, headers=headers,
                                            timeout=self.timeout)
            except requests.RequestException as e:
                if last:
                    raise FulfillmentTransportError(
                        f"{method} {url} failed after {attempt + 1} attempt(s): {e}") from e
                self._sleep(self.backoff * 2 ** attempt)
                attempt += 1
                continue
            if resp.status_code == 401 and self.auth.refreshable and not renewed:
                renewed = True  # once: a second 401 with a fresh token is the caller's
                self.auth.invalidate(token)
                continue
            if resp.status_code == 429:  # not processed: safe to send again, any method
                self._sleep(limits.next_wait(resp))
                continue
            if resp.status_code >= 500 and not last:
                self._sleep(self.backoff * 2 ** attempt)
                attempt += 1
                continue
            return self._parse(method, url, resp)

    @staticmethod
    def _parse(method: str, url: str, resp: requests.Response) -> tuple[int, dict]:
        data: Any = {}
        if resp.content:
            try:
                data = resp.json()
            except ValueError as e:
                if resp.ok:
                    raise FulfillmentTransportError(
                        f"{method} {url}: HTTP {resp.status_code} with a body that is "
                        f"not JSON: {resp.text[:200]!r}") from e
                data = {"error_description": resp.text[:500]}
        if not resp.ok:
            raise error_from_response(resp.status_code, data)
        return resp.status_code, data if isinstance(data, dict) else {}
