"""Generated fulfillment requests: ``fulfillment-emulator --generate N --interval S``.

Orders are drawn from a small fixed catalogue with a ``random.Random`` seeded
by ``--seed``, so a run with the same seed makes the same orders (products,
prices, carriers, addresses) in the same sequence; ids come from the store,
seeded the same way.
"""
from __future__ import annotations

import random
import threading
from typing import Callable

#: (product_id, price): what generated orders are made of.
CATALOGUE = (
    ("tee-white-m", 19.0), ("tee-black-l", 19.0), ("hoodie-grey-m", 59.0),
    ("jeans-32-32", 89.0), ("cap-navy", 25.0), ("socks-3pack", 12.0),
    ("sneaker-42", 120.0), ("scarf-wool", 45.0),
)
SHIPPING_OPTIONS = (
    {"carrier": "FEDEX", "service_level": "FEDEX_GROUND"},
    {"carrier": "UPS", "service_level": "UPS_NEXT_DAY_AIR"},
    {"carrier": "DHL", "service_level": "DHL_EXPRESS"},
)
ADDRESSES = (
    {"country_code": "USA", "first_name": "Jay", "last_name": "DoubleYou",
     "address_line_1": "3104 Doctors Drive", "zip_code": "90017"},
    {"country_code": "USA", "first_name": "Ada", "last_name": "Lovelace",
     "address_line_1": "12 Analytical Way", "zip_code": "10001"},
    {"country_code": "DEU", "first_name": "Max", "last_name": "Muster",
     "address_line_1": "Hauptstrasse 1", "zip_code": "10115"},
)


def random_order(rng: random.Random) -> dict:
    """One ``POST /_emulator/fulfillment_requests`` body: 1-4 units of 1-3
    catalogue products, a carrier and an address."""
    products = rng.sample(CATALOGUE, rng.randint(1, 3))
    items = [{"product_id": p, "price": price}
             for p, price in products for _ in range(rng.randint(1, 2))][:4]
    address = rng.choice(ADDRESSES)
    return {"items": items, "shipping_options": dict(rng.choice(SHIPPING_OPTIONS)),
            "shipping_address": dict(address), "billing_address": dict(address),
            "extended_attributes": [{"name": "channel", "value": rng.choice(["web", "app"])}]}


class Generator:
    """Calls ``create(order)`` ``count`` times, ``interval_s`` apart (the first
    at once), from a daemon thread started by :meth:`start`."""

    def __init__(self, create: Callable[[dict], object], count: int, interval_s: float,
                 seed: int | None = None):
        self._create = create
        self.count = count
        self.interval_s = interval_s
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fulfillment-generate",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        for n in range(self.count):
            if n and self._stop.wait(self.interval_s):
                return
            self._create(random_order(self._rng))
