"""The REST engine: what turns a batch into HTTP calls and answers back into ATP.

``type: rest`` has two ways to speak to an ERP. The built-in wire formats
(``request.style`` pairs / grid / query, ``response`` field names;
:mod:`atp_bridge.adapters.rest_wire`) cover ERPs built for atp-bridge. For a
vendor's own API, the engine composes small pieces, each configured in YAML
and compiled when the config loads (so ``check-config`` reports a bad
template or expression with file and key):

* :mod:`.calls`: call granularity (``per``: batch, product, location, pair);
* :mod:`.templates`: the URL path, query parameters, headers and JSON body of
  each call, Jinja2 templates rendered in its sandbox, every value escaped for
  where it lands;
* :mod:`.extract`: JMESPath extraction of the rows and of each row's product,
  location and ATP, with nesting, defaults from the call and ``combine``.

:class:`.wire.TemplateWire` ties them together behind the same three methods
as the built-in formats (``calls``, ``encode``, ``parse``), so the REST
adapter's budget, retries, circuit and concurrency apply unchanged.
"""
