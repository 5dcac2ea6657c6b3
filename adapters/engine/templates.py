"""Request templates: Jinja2 in its sandbox, every value escaped for where it lands.

A template can use the call's ``products``, ``locations``, ``pairs`` (a list
of ``{"product", "location"}``), ``product`` and ``location`` (calls per
product / location / pair), ``now`` (an aware UTC datetime) and the adapter's
``vars``, and ``page`` when the adapter pages (:mod:`.paginate`). Where the value lands decides its escaping, so an id from NewStore
can never change the structure of what is sent:

* the URL ``path``: every ``{{ ... }}`` result is percent-encoded as one path
  segment (``/`` too);
* query ``params`` and ``headers``: rendered to text that requests encodes as
  one parameter value (``&``, ``=`` and ``%`` stay data); a header value may
  not hold a line break;
* the JSON ``body``: a YAML structure whose string leaves are templates; a
  leaf that is one expression (``"{{ products }}"``) keeps its type (a list
  stays a list), any other leaf is text. The structure comes from the YAML,
  never from a value.

Filters for the quoting vendors need: ``odata`` (``'it''s'``), ``sql`` (the
same standard SQL literal), ``dq`` (``"say \\"hi\\""``, backslash escapes),
``split`` (Python's ``str.split``: ``{{ location | split('/') }}``), and Jinja's
own ``join``, ``map``, ``urlencode``: ``{{ products | map('sql') | join(', ') }}``,
``{{ locations | map('split', '/', 1) | list }}`` (composite ids, such as
``site/location``, as pairs).
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from urllib.parse import quote

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["TemplateProblem", "CallTemplate", "NAMES"]

NAMES = frozenset({"products", "locations", "pairs", "product", "location", "now", "vars", "page"})
_ONE_EXPRESSION = re.compile(r"^\{\{(?P<expr>(?:(?!\}\}).)+)\}\}$", re.S)


class TemplateProblem(ValueError):
    """A template that does not compile or names something a call does not have."""


def odata(value) -> str:
    """An OData string literal: ``it's`` -> ``'it''s'``."""
    return "'" + str(value).replace("'", "''") + "'"


def dq(value) -> str:
    """A double-quoted literal with backslash escapes: ``a"b`` -> ``"a\\"b"``."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def split(value, sep: str | None = None, maxsplit: int = -1) -> list:
    """``str(value).split(sep, maxsplit)``: a composite id as its parts."""
    return str(value).split(sep, maxsplit)


def _environment(finalize=None) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                        keep_trailing_newline=True, finalize=finalize)
    env.filters.update(odata=odata, sql=odata, dq=dq, split=split)
    return env


_TEXT = _environment()
_PATH = _environment(finalize=lambda v: quote(str(v), safe=""))


def _compile(env, source: str, where: str, allowed: frozenset):
    try:
        parsed = env.parse(source)
        unknown = meta.find_undeclared_variables(parsed) - allowed
        if unknown:
            raise TemplateProblem(f"{where}: unknown name {sorted(unknown)[0]!r} in the template "
                                  f"(a call has: {', '.join(sorted(allowed))})")
        one = _ONE_EXPRESSION.match(source.strip())
        if one and env is _TEXT:
            return env.compile_expression(one.group("expr"), undefined_to_none=False), True
        return env.from_string(source), False
    except TemplateError as e:
        raise TemplateProblem(f"{where}: {type(e).__name__}: {e}") from None


class _Leaf:
    """One compiled string: a whole expression (native value) or text."""

    __slots__ = ("template", "native")

    def __init__(self, env, source: str, where: str, allowed: frozenset):
        self.template, self.native = _compile(env, source, where, allowed)

    def render(self, context: dict):
        if self.native:
            return self.template(**context)
        return self.template.render(context)


def _compile_tree(value, where: str, allowed: frozenset):
    if isinstance(value, str):
        return _Leaf(_TEXT, value, where, allowed) if "{" in value else value
    if isinstance(value, dict):
        return {k: _compile_tree(v, f"{where}.{k}", allowed) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile_tree(v, f"{where}.{i}", allowed) for i, v in enumerate(value)]
    return value


def _render_tree(value, context: dict):
    if isinstance(value, _Leaf):
        return value.render(context)
    if isinstance(value, dict):
        return {k: _render_tree(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_tree(v, context) for v in value]
    return value


class CallTemplate:
    """The compiled ``path``, ``params``, ``headers`` and ``body`` of an adapter.

    ``allowed``: the names a call of this adapter has (``product`` only when
    calls are per product or pair, and so on); using another is a problem
    reported at load.
    """

    def __init__(self, *, path: str = "", params: dict | None = None, headers: dict | None = None,
                 body=None, allowed: frozenset = NAMES, vars: dict | None = None):
        self.vars = dict(vars or {})
        self.path = _Leaf(_PATH, path, "path", allowed) if path else None
        self.params = {k: _compile_tree(str(v), f"params.{k}", allowed) for k, v in (params or {}).items()}
        self.headers = {k: _compile_tree(str(v), f"headers.{k}", allowed)
                        for k, v in (headers or {}).items()}
        self.body = _compile_tree(body, "body", allowed) if body is not None else None

    def context(self, products, locations, product=None, location=None, page=None) -> dict:
        ctx = {"products": list(products), "locations": list(locations), "vars": self.vars, "page": page,
               "pairs": [{"product": p, "location": loc} for p in products for loc in locations],
               "now": datetime.now(timezone.utc)}
        if product is not None:
            ctx["product"] = product
        if location is not None:
            ctx["location"] = location
        return ctx

    def render(self, context: dict) -> dict:
        """``{"path", "params", "headers", "body"}`` for one call (body None: no body)."""
        headers = {}
        for name, leaf in self.headers.items():
            value = str(_render_tree(leaf, context))
            if "\r" in value or "\n" in value:
                raise TemplateProblem(f"headers.{name}: the rendered value holds a line break")
            headers[name] = value
        return {"path": self.path.render(context) if self.path else "",
                "params": {k: str(_render_tree(v, context)) for k, v in self.params.items()},
                "headers": headers,
                "body": _render_tree(self.body, context) if self.body is not None else None}
