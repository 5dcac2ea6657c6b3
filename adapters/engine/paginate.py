"""Paging: one small class per style, configured under ``paginate:``.

A paginator keeps a ``page`` dict (``number``, ``offset``, ``limit``,
``cursor``, ``url``) that templates can read as ``page`` (``{{ page.cursor }}``
in a GraphQL body); after each answer, :meth:`next` gives the next page or
None. ``max_pages`` (default 20) bounds the pages of one call: more is an
adapter error, never a silently truncated answer. Every page is made under
the request's deadline like any call.

* ``offset``: ``limit_param`` / ``offset_param`` (query parameters set on each
  page, if named) step by ``limit``; the last page is the one where
  ``has_more`` (JMESPath) is false, or ``total`` is reached, or else the first
  page with fewer rows than ``limit``.
* ``next_link``: ``next`` (JMESPath) finds the next page's URL in the body
  (OData V2 ``d.__next``, V4 ``"\\"@odata.nextLink\\""``, ``links[?rel=='next'].href | [0]``),
  relative URLs resolved against the page's own; the next page gets no extra
  parameters (the link carries them).
* ``link_header``: the ``Link: <...>; rel="next"`` response header (RFC 8288).
* ``cursor``: ``cursor`` (JMESPath) reads the next cursor and ``has_next`` (if
  given) whether there is one (GraphQL ``pageInfo``); templates put
  ``page.cursor`` where the API wants it.
"""
from __future__ import annotations

from urllib.parse import urljoin

import requests

from atp_bridge.adapters.engine.extract import compile_expression
from atp_bridge.adapters.rest_wire import WireError

__all__ = ["PAGINATORS", "make_paginator"]


class _Paginator:
    def __init__(self, max_pages: int = 20):
        self.max_pages = max_pages

    def first(self) -> dict:
        return {"number": 1, "offset": 0, "limit": None, "cursor": None, "url": None}

    def apply(self, kwargs: dict, page: dict) -> None:
        """Adjust one page's request (``requests`` keyword arguments, ``url`` included)."""
        if page["url"]:
            kwargs["url"] = page["url"]
            kwargs["params"] = {}

    def next(self, page: dict, url: str, doc, headers, rows: int) -> dict | None:
        raise NotImplementedError


class Offset(_Paginator):
    def __init__(self, limit: int = 100, offset_param: str | None = None, limit_param: str | None = None,
                 has_more: str | None = None, total: str | None = None, start: int = 0, **kw):
        super().__init__(**kw)
        self.limit, self.offset_param, self.limit_param, self.start = limit, offset_param, limit_param, start
        self.has_more = compile_expression(has_more, "paginate.has_more") if has_more else None
        self.total = compile_expression(total, "paginate.total") if total else None
        self.total_path = total

    def first(self) -> dict:
        return {**super().first(), "offset": self.start, "limit": self.limit}

    def apply(self, kwargs: dict, page: dict) -> None:
        params = kwargs.setdefault("params", {})
        if self.offset_param:
            params[self.offset_param] = str(page["offset"])
        if self.limit_param:
            params[self.limit_param] = str(page["limit"])

    def next(self, page, url, doc, headers, rows):
        if self.has_more is not None:
            if not self.has_more(doc):
                return None
        elif self.total is not None:
            total = self.total(doc)
            if isinstance(total, bool) or not isinstance(total, (int, float, str)):
                raise WireError(f"no number at {self.total_path!r} (paginate.total)")
            try:
                if page["offset"] + self.limit >= float(total):
                    return None
            except ValueError:
                raise WireError(f"no number at {self.total_path!r} (paginate.total)") from None
        elif rows < self.limit:
            return None
        return {**page, "number": page["number"] + 1, "offset": page["offset"] + self.limit}


class NextLink(_Paginator):
    def __init__(self, next: str, **kw):  # noqa: A002 (the YAML key)
        super().__init__(**kw)
        self.link = compile_expression(next, "paginate.next")

    def next(self, page, url, doc, headers, rows):
        link = self.link(doc)
        if not link:
            return None
        if not isinstance(link, str):
            raise WireError("the next link is not a string (paginate.next)")
        return {**page, "number": page["number"] + 1, "url": urljoin(url, link)}


class LinkHeader(_Paginator):
    def next(self, page, url, doc, headers, rows):
        for link in requests.utils.parse_header_links(headers.get("Link", "")):
            if "next" in link.get("rel", "").split():
                return {**page, "number": page["number"] + 1, "url": urljoin(url, link["url"])}
        return None


class Cursor(_Paginator):
    def __init__(self, cursor: str, has_next: str | None = None, **kw):
        super().__init__(**kw)
        self.cursor = compile_expression(cursor, "paginate.cursor")
        self.has_next = compile_expression(has_next, "paginate.has_next") if has_next else None

    def next(self, page, url, doc, headers, rows):
        cursor = self.cursor(doc)
        if cursor is None or cursor == "" or (self.has_next is not None and not self.has_next(doc)):
            return None
        return {**page, "number": page["number"] + 1, "cursor": cursor}


PAGINATORS = {"offset": Offset, "next_link": NextLink, "link_header": LinkHeader, "cursor": Cursor}


def make_paginator(options: dict | None):
    """The paginator for a ``paginate:`` block (already validated), or None."""
    if not options:
        return None
    options = dict(options)
    return PAGINATORS[options.pop("type")](**options)
