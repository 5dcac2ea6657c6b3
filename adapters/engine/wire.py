"""The engine's wire: calls per ``per``, requests from templates, answers by extraction."""
from __future__ import annotations

from dataclasses import dataclass

import orjson

from atp_bridge.adapters.base import Batch
from atp_bridge.adapters.engine.extract import Extractor
from atp_bridge.adapters.engine.templates import NAMES, CallTemplate, TemplateProblem
from atp_bridge.adapters.rest_wire import WireError

__all__ = ["Call", "TemplateWire", "PER", "allowed_names"]

PER = ("batch", "product", "location", "pair")


@dataclass(frozen=True)
class Call:
    """What one HTTP call asks: a ``products`` x ``locations`` grid, and the
    single ``product`` / ``location`` when calls are per product, location or pair."""

    products: tuple
    locations: tuple
    product: str | None = None
    location: str | None = None

    def __len__(self) -> int:
        return len(self.products) * len(self.locations)


def allowed_names(per: str) -> frozenset:
    """The template names a call has under ``per``."""
    drop = {"batch": {"product", "location"}, "product": {"location"},
            "location": {"product"}, "pair": set()}[per]
    return NAMES - drop


def calls(batch: Batch, per: str, batch_size: int, max_products: int | None = None,
          max_locations: int | None = None) -> list[Call]:
    """The calls for ``batch``: one per product, location or pair, or (``batch``)
    grids of at most ``batch_size`` pairs, cut along the products.

    ``max_products`` / ``max_locations`` cap the ids of one call, for APIs that
    take at most so many of each (Salesforce Omnichannel Inventory: 100 SKUs and
    100 locations): the locations are cut into runs of at most ``max_locations``
    (``per: batch`` and ``product``), and within each run the products into runs
    of at most ``max_products`` (``per: batch`` and ``location``), so every pair
    is asked exactly once. None: no cap."""
    products, locations = tuple(batch.products), tuple(batch.locations)
    if per == "pair":
        return [Call((p,), (loc,), p, loc) for p in products for loc in locations]
    if per == "product":
        return [Call((p,), locs, product=p) for p in products for locs in _runs(locations, max_locations)]
    if per == "location":
        return [Call(prods, (loc,), location=loc) for loc in locations
                for prods in _runs(products, max_products)]
    out = []
    for locs in _runs(locations, max_locations):
        step = max(1, batch_size // max(1, len(locs)))
        if max_products is not None:
            step = min(step, max_products)
        out += [Call(products[i:i + step], locs) for i in range(0, len(products), step)]
    return out


def _runs(ids: tuple, cap: int | None) -> list[tuple]:
    """``ids`` in consecutive runs of at most ``cap`` (one run: no cap, or no ids)."""
    if cap is None or len(ids) <= cap:
        return [ids]
    return [ids[i:i + cap] for i in range(0, len(ids), cap)]


class TemplateWire:
    """``calls`` / ``encode`` / ``parse`` for an adapter configured with templates
    and an ``extract`` block (the REST adapter calls these three)."""

    def __init__(self, url: str, per: str, template: CallTemplate, extractor: Extractor,
                 paginator=None, max_products: int | None = None, max_locations: int | None = None):
        self.url, self.per, self.template, self.extractor = url.rstrip("/"), per, template, extractor
        self.paginator = paginator  # adapters/engine/paginate.py, or None: one page
        for name, cap in (("max_products", max_products), ("max_locations", max_locations)):
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
                raise ValueError(f"{name} must be a whole number of at least 1, not {cap!r}")
        self.max_products, self.max_locations = max_products, max_locations  # ids per call; see calls()

    def capped(self, max_products: int | None = None, max_locations: int | None = None) -> "TemplateWire":
        """This wire with (other) per-call caps on products and locations."""
        return TemplateWire(self.url, self.per, self.template, self.extractor, self.paginator,
                            max_products, max_locations)

    def calls(self, batch: Batch, batch_size: int) -> list[Call]:
        return calls(batch, self.per, batch_size, self.max_products, self.max_locations)

    def encode(self, call: Call, page: dict | None = None) -> dict:
        """``requests`` keyword arguments for ``call`` (``url`` included), for ``page``."""
        t = self.template
        try:
            parts = t.render(t.context(call.products, call.locations, call.product, call.location, page))
        except TemplateProblem as e:
            raise WireError(str(e)) from None
        except Exception as e:  # a template error at render time (a filter given a wrong type...)
            raise WireError(f"template: {type(e).__name__}: {e}") from None
        kwargs = {"url": self.url + parts["path"], "params": parts["params"], "headers": parts["headers"]}
        if parts["body"] is not None:
            kwargs["data"] = orjson.dumps(parts["body"])
            kwargs["headers"] = {"Content-Type": "application/json", **parts["headers"]}
        if page is not None:
            self.paginator.apply(kwargs, page)
        return kwargs

    def retry_wanted(self, body: bytes) -> bool:
        """A 2xx answer to be retried like a 503 (``extract.retry_on``); never
        for an answer that is not JSON (parse reports that)."""
        if self.extractor.retry_on is None:
            return False
        try:
            return self.extractor.retry_wanted(orjson.loads(body))
        except orjson.JSONDecodeError:
            return False

    def parse(self, body: bytes, call: Call) -> dict:
        return self.extractor.extract(_json(body), call.product, call.location)

    def parse_page(self, body: bytes, call: Call, into: dict) -> tuple:
        """Add one page's values to ``into`` (combined with earlier pages');
        return ``(document, rows on the page)`` for the paginator."""
        doc = _json(body)
        rows = self.extractor.rows(doc)
        self.extractor.extract_rows(rows, call.product, call.location, into)
        return doc, len(rows)


def _json(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise WireError(f"answer is not JSON ({e.msg} at char {e.pos})") from e
