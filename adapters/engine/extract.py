"""Extraction: JMESPath from an answer to ``{(product, location): atp}``.

``rows`` finds the rows (one expression, or a list of them for answers where
rows sit inside parent objects: ``[locations, inventoryRecords]``; then each
inner row carries ``_parent``, the object it came from). Per row, ``product``,
``location`` and ``atp`` are expressions evaluated on the row; ``minus``, if
set, is subtracted from ``atp`` (``quantity - reserved``). A product or
location left out is the call's own (calls per product / location / pair):
SAP's function imports answer one pair per call without naming it. A rows
expression that finds an object or a number instead of a list is one row; a
row that is a number is its own ATP (``atp`` defaults to ``@`` then).
``errors``, if set, is an expression for the errors a 2xx answer may carry
(GraphQL's ``errors[].message``): any makes the call fail with them.
``retry_on``, if set, is an expression on a 2xx answer: truthy (Shopify's
``errors[?extensions.code=='THROTTLED']``) makes the REST adapter retry the
call like a 503, within ``retries`` and the deadline; the last answer is then
read as usual (its ``errors`` fail the call).
``combine`` decides what several rows of one pair make: ``sum`` (stock split
by storage location, lot or colour), ``max``, ``min`` or ``first``.
``ignore_case: true`` matches the answer's keys without regard to case
(Dynamics 365 answers ``siteid`` for a ``siteId`` asked): every key of the
answer is lower-cased before extraction, and so are the keys of the dotted
paths; an expression that is not a dotted path must then name keys in lower
case. Two keys of one object that differ only in case keep the later value.

Simple dotted paths (``a.b.c``, the usual case) are read by plain dict
lookups; anything else goes through the compiled JMESPath expression.
Numeric strings (``"12.000"``) are numbers; anything else is an error naming
the row and the path.
"""
from __future__ import annotations

import re

import jmespath
from jmespath.exceptions import JMESPathError

from atp_bridge.adapters.rest_wire import WireError, _number

__all__ = ["ExtractProblem", "Extractor", "COMBINE", "compile_expression", "lower_keys"]

COMBINE = {"sum": lambda a, b: a + b, "max": max, "min": min, "first": lambda a, b: a}
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MISSING = object()


class ExtractProblem(ValueError):
    """An expression that does not compile, or a combination that cannot work."""


def compile_expression(expression: str, where: str, ignore_case: bool = False):
    """A function of one value: a dotted-path reader or the compiled JMESPath search
    (``ignore_case``: a dotted path's keys lower-cased, see the module docstring)."""
    if expression == "@":
        return lambda value: value
    if _DOTTED.match(expression):
        keys = (expression.lower() if ignore_case else expression).split(".")

        def read(value):
            for key in keys:
                if not isinstance(value, dict):
                    return None
                value = value.get(key)
            return value
        return read
    try:
        return jmespath.compile(expression).search
    except JMESPathError as e:
        raise ExtractProblem(f"{where}: not a JMESPath expression: {e}") from None


def lower_keys(value):
    """``value`` with every mapping key lower-cased, at any depth."""
    if isinstance(value, dict):
        return {(k.lower() if isinstance(k, str) else k): lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_keys(v) for v in value]
    return value


class Extractor:
    """The compiled ``extract`` block of an adapter; see the module docstring."""

    def __init__(self, *, rows="@", product: str | None = None, location: str | None = None,
                 atp: str = "atp", minus: str | None = None, combine: str = "first",
                 errors: str | None = None, ignore_case: bool = False, retry_on: str | None = None):
        levels = rows if isinstance(rows, list) else [rows]
        if not levels:
            raise ExtractProblem("rows: give at least one expression")
        self.ignore_case = ignore_case

        def expr(e, where):
            return compile_expression(e, where, ignore_case)
        self.rows_expr = levels
        self.levels = [expr(e, f"rows.{i}" if len(levels) > 1 else "rows") for i, e in enumerate(levels)]
        self.paths = {"product": product, "location": location, "atp": atp, "minus": minus}
        self.product = expr(product, "product") if product else None
        self.location = expr(location, "location") if location else None
        self.atp = expr(atp, "atp")
        self.minus = expr(minus, "minus") if minus else None
        self.errors = expr(errors, "errors") if errors else None
        self.retry_on = expr(retry_on, "retry_on") if retry_on else None
        if combine not in COMBINE:
            raise ExtractProblem(f"combine: must be one of {', '.join(COMBINE)}")
        self.combine = COMBINE[combine]

    def retry_wanted(self, doc) -> bool:
        """True when ``retry_on`` finds something in the answer ``doc``."""
        if self.retry_on is None:
            return False
        return bool(self.retry_on(lower_keys(doc) if self.ignore_case else doc))

    def rows(self, doc) -> list:
        if self.ignore_case:
            doc = lower_keys(doc)
        if self.errors is not None:  # a 2xx that reports errors (GraphQL) is no answer
            errors = self.errors(doc)
            if errors:
                texts = errors if isinstance(errors, list) else [errors]
                raise WireError("the answer reports errors: " + "; ".join(str(t) for t in texts)[:300])
        found = [doc]
        for depth, level in enumerate(self.levels):
            nxt = []
            for parent in found:
                value = level(parent)
                items = value if isinstance(value, list) else ([] if value is None else [value])
                if depth:  # an inner row remembers the object it came from
                    items = [{**item, "_parent": parent} if isinstance(item, dict) else item
                             for item in items]
                nxt.extend(items)
            found = nxt
        return found

    def extract(self, doc, product=None, location=None) -> dict:
        """``{(product, location): atp}`` from a parsed answer; ``product`` and
        ``location`` fill in what the rows do not name."""
        return self.extract_rows(self.rows(doc), product, location)

    def extract_rows(self, rows: list, product=None, location=None, out: dict | None = None) -> dict:
        """:meth:`extract` of rows already found, combined into ``out`` (pages of one call)."""
        out = {} if out is None else out
        combine = self.combine
        for i, row in enumerate(rows):
            p = self._id(row, self.product, product, "product", i)
            loc = self._id(row, self.location, location, "location", i)
            raw = row if (not isinstance(row, dict) and self.paths["atp"] == "atp") else self.atp(row)
            if raw is None:
                continue  # the source does not know this pair
            atp = _number(raw, i, self.paths["atp"])
            if self.minus is not None:
                less = self.minus(row)
                if less is not None:
                    atp -= _number(less, i, self.paths["minus"])
            key = (p, loc)
            out[key] = combine(out[key], atp) if key in out else atp
        return out

    def _id(self, row, read, fallback, name: str, i: int) -> str:
        if read is None:
            return fallback
        value = read(row)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise WireError(f"row {i}: no string at {self.paths[name]!r} (extract.{name})")
        return str(value)
