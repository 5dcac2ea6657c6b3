"""The emulator pushes fulfillment requests to the provider, as NewStore does.

NewStore sends each new fulfillment request to the provider's configured URL
as a POST ("Create fulfillment request"), with ``Authorization: Bearer
<api_key>`` when a key is configured. The body has ``id``, ``order_id``,
``billing_address``, ``shipping_address``, ``shipping_options`` (``carrier``,
``service_level``), ``created_at``, ``items`` (non-empty, one entry per unit)
and ``extended_attributes`` (at most 100); :func:`newstore_payload` builds it.

Delivery is at least once: an answer other than 2xx, a refused connection or
a timeout is retried with exponential backoff (``backoff_s`` doubling up to
``max_backoff_s``) until ``max_attempts``; with ``duplicate_rate`` p, a
delivered request is sent a second time with probability p, so the
provider's dedup by ``id`` is exercised. Every attempt is recorded and shown
by ``GET /_emulator/deliveries``. One worker thread sends, in due order.
"""
from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from typing import Any, Callable

import requests
from flask import Flask, jsonify

from .state import FulfillmentRequest, now_iso

DEFAULT_ADDRESS = {"country_code": "USA", "first_name": "Jay", "last_name": "DoubleYou",
                   "address_line_1": "3104 Doctors Drive", "zip_code": "90017"}
DEFAULT_SHIPPING = {"carrier": "FEDEX", "service_level": "FEDEX_GROUND"}


def newstore_payload(req: FulfillmentRequest, extra: dict | None = None) -> dict:
    """NewStore's "Create fulfillment request" body for ``req``; ``extra`` may
    set ``order_id``, the addresses, ``shipping_options``, ``created_at`` and
    ``extended_attributes`` (defaults: NewStore's documented sample)."""
    extra = extra or {}
    return {
        "id": req.uuid,
        "order_id": extra.get("order_id") or f"order-{req.uuid}",
        "billing_address": extra.get("billing_address") or DEFAULT_ADDRESS,
        "shipping_address": extra.get("shipping_address") or DEFAULT_ADDRESS,
        "shipping_options": extra.get("shipping_options") or DEFAULT_SHIPPING,
        "created_at": extra.get("created_at") or now_iso(),
        "items": [{"product_id": i.product_id, "price": i.price} for i in req.items],
        "extended_attributes": extra.get("extended_attributes") or [],
    }


class Pusher:
    """Sends payloads to ``url`` from one background thread, at least once."""

    def __init__(self, url: str, key: str | None = None, *, duplicate_rate: float = 0.0,
                 rng: random.Random | None = None, timeout_s: float = 5.0,
                 max_attempts: int = 10, backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 session: requests.Session | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.url = url
        self._key = key
        self.duplicate_rate = duplicate_rate
        self._rng = rng or random.Random()
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._session = session or requests.Session()
        self._clock = clock
        self._due: list[tuple[float, int, dict, int, bool]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._log: list[dict] = []
        self._stopping = False
        self._in_flight = 0
        self._thread = threading.Thread(target=self._run, name="fulfillment-push", daemon=True)
        self._thread.start()

    def submit(self, payload: dict) -> None:
        """Queue ``payload`` for delivery now."""
        self._schedule(0.0, payload, 1, False)

    def deliveries(self) -> list[dict]:
        """Every attempt so far, oldest first."""
        with self._wake:
            return [dict(d) for d in self._log]

    def pending(self) -> int:
        """Deliveries (first tries, retries, duplicates) waiting or being sent."""
        with self._wake:
            return len(self._due) + self._in_flight

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop sending; what is still queued is dropped."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join(timeout_s)

    def _schedule(self, delay_s: float, payload: dict, attempt: int, duplicate: bool) -> None:
        with self._wake:
            heapq.heappush(self._due, (self._clock() + delay_s, next(self._seq), payload,
                                       attempt, duplicate))
            self._wake.notify_all()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and (not self._due or self._due[0][0] > self._clock()):
                    self._wake.wait(None if not self._due else self._due[0][0] - self._clock())
                if self._stopping:
                    return
                _, _, payload, attempt, duplicate = heapq.heappop(self._due)
                self._in_flight = 1
            try:
                self._attempt(payload, attempt, duplicate)
            finally:
                with self._wake:  # after any retry was queued: pending() never dips to 0 early
                    self._in_flight = 0

    def _attempt(self, payload: dict, attempt: int, duplicate: bool) -> None:
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        record: dict[str, Any] = {"id": payload["id"], "attempt": attempt,
                                  "duplicate": duplicate, "sent_at": now_iso(),
                                  "status": None, "error": None}
        try:
            resp = self._session.post(self.url, json=payload, headers=headers,
                                      timeout=self.timeout_s)
            record["status"] = resp.status_code
            ok = 200 <= resp.status_code < 300
            if not ok:
                record["error"] = f"HTTP {resp.status_code}: {resp.text[:200]}"
        except requests.RequestException as err:
            ok = False
            record["error"] = f"{type(err).__name__}: {err}"[:300]
        if ok:
            record["outcome"] = "delivered"
        elif attempt < self.max_attempts:
            record["outcome"] = "retrying"
        else:
            record["outcome"] = "gave_up"
        with self._wake:
            self._log.append(record)
        if ok and not duplicate and self.duplicate_rate and \
                self._rng.random() < self.duplicate_rate:
            self._schedule(0.0, payload, 1, True)
        elif not ok and attempt < self.max_attempts:
            delay = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
            self._schedule(delay, payload, attempt + 1, duplicate)


def install(app: Flask, pusher: Pusher | None) -> None:
    """``GET /_emulator/deliveries``; ``pusher`` receives every new request."""
    app.extensions["atp_bridge"]["pusher"] = pusher

    @app.get("/_emulator/deliveries")
    def deliveries():
        if pusher is None:
            return jsonify({"provider_url": None, "pending": 0, "deliveries": []})
        return jsonify({"provider_url": pusher.url, "pending": pusher.pending(),
                        "deliveries": pusher.deliveries()})
