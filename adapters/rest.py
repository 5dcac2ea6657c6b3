"""``type: rest``: ATP from the retailer's ERP over HTTP(S).

One bridge request becomes ``ceil(pairs / batch_size)`` HTTP calls on one
pooled :class:`requests.Session`; the first runs in the calling thread, the
others on the adapter's own small thread pool, at most ``max_concurrency`` at
a time per request. Every call is bounded by ``timeout_ms`` and by the
request's deadline; connection errors and 502/503/504 are retried with a short
backoff while time remains. A circuit breaker answers at once while the ERP is
known to be down. Every failure becomes an :class:`AdapterError` naming the
adapter and the cause, with secrets scrubbed.
A call, body included, ends at ``min(timeout_ms, time left)`` in total and
when its body grows past ``max_response_bytes`` (:mod:`atp_bridge.adapters.rest_http`).
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import requests

from atp_bridge.adapters.base import Adapter, Batch, Health
from atp_bridge.adapters.rest_auth import (AuthError, Redactor, auth_file_problems, excerpt, make_auth,
                                           resolve_auth_files)
from atp_bridge.adapters.rest_circuit import CircuitBreaker, CircuitOpen
from atp_bridge.adapters.rest_http import MAX_RESPONSE_BYTES, BudgetAdapter, BudgetExceeded, TooLarge, send
from atp_bridge.adapters.rest_options import RequestSpec, ResponseSpec, RestOptionsSchema
from atp_bridge.adapters.rest_wire import (BuiltinWire, WireError, describe_error, retry_after, safe_url,
                                           vendor_message)
from atp_bridge import metrics, tracing
from atp_bridge.errors import AdapterError, AdapterTimeout, AdapterUnavailable, ConfigError


_CIRCUIT_GAUGE = {"closed": metrics.CIRCUIT_CLOSED, "half_open": metrics.CIRCUIT_HALF_OPEN,
                  "open": metrics.CIRCUIT_OPEN}
log = logging.getLogger("atp_bridge.adapters.rest")

RETRY_STATUS = frozenset({502, 503, 504})
BACKOFF_S = 0.05


def build_session(max_concurrency: int, tls_verify: bool = True, ca_bundle: str | None = None,
                  headers: dict | None = None) -> requests.Session:
    """A pooled session: enough kept-alive connections for ``max_concurrency``
    calls from several bridge requests at once, no hidden retries, and
    connections that :func:`atp_bridge.adapters.rest_http.send` can cut at a call's budget."""
    session = requests.Session()
    pool = BudgetAdapter(pool_connections=4, pool_maxsize=max(10, 2 * max_concurrency), max_retries=0)
    session.mount("http://", pool)
    session.mount("https://", pool)
    session.verify = ca_bundle if ca_bundle else tls_verify
    session.trust_env = False  # no surprise proxies or netrc credentials from the environment
    session.headers.update({"Accept": "application/json", **(headers or {})})
    return session


class RestAdapter(Adapter):
    """ATP from an ERP's HTTP API; the wire format comes from YAML (README, "type: rest")."""

    options_schema = RestOptionsSchema
    file_options = ("ca_bundle",)

    def __init__(self, name: str, *, url: str, method: str = "POST", auth=None,
                 timeout_ms: int = 2000, max_response_bytes: int = MAX_RESPONSE_BYTES,
                 batch_size: int = 500, max_concurrency: int = 4,
                 retries: int = 1, request: RequestSpec | None = None,
                 response: ResponseSpec | None = None, headers: dict | None = None,
                 tls_verify: bool = True, ca_bundle: str | None = None,
                 health_url: str | None = None, health_cache_s: float = 5.0,
                 circuit: dict | None = None, session: requests.Session | None = None,
                 wire=None, **kw):
        super().__init__(name, **kw)
        self.url, self.method = url, method
        self.timeout_s = timeout_ms / 1000
        self.max_response_bytes = max_response_bytes
        self.batch_size, self.max_concurrency, self.retries = batch_size, max_concurrency, retries
        # the built-in wire formats, or the engine's templates + extraction (adapters/engine)
        self.wire = wire or BuiltinWire(request or RequestSpec(), response or ResponseSpec())
        self.health_url, self.health_cache_s = health_url, health_cache_s
        self.session = session or build_session(max_concurrency, tls_verify, ca_bundle, headers)
        if not isinstance(self.session.get_adapter(url), BudgetAdapter):  # else per read only
            raise ValueError("the session must mount adapters.rest_http.BudgetAdapter")
        self.redact = Redactor()
        self.redact.add(*(headers or {}).values())
        self.auth = make_auth(auth, self.session, self.timeout_s, self.redact, self._count_token,
                              max_bytes=max_response_bytes)
        self.circuit = CircuitBreaker(**(circuit or {}), on_change=self._circuit_changed)
        # the calling thread runs one chunk, so the pool needs one thread fewer
        self._pool = (ThreadPoolExecutor(max_concurrency - 1, thread_name_prefix=f"rest-{name}")
                      if max_concurrency > 1 else None)
        self._lock = threading.Lock()
        self._health: tuple[float, Health] | None = None
        self._health_lock = threading.Lock()
        self.calls = 0          # HTTP calls made (retries included)
        self.retried = 0        # of which retries
        self.failures = 0       # lookups that raised
        self.token_fetches = 0  # OAuth2 token requests
        self.last_error: str | None = None
        self.last_error_at: float | None = None  # time.time()

    @classmethod
    def from_config(cls, spec, upstream=None) -> "RestAdapter":
        # check() ran at load; the file may have gone since
        problems = cls.check(spec)
        if problems:
            raise ConfigError([f"{spec.source}: {key}: {msg}" for key, msg in problems])
        options = dict(spec.options)
        if options.get("ca_bundle"):
            options["ca_bundle"] = spec.file("ca_bundle")
        options["auth"] = resolve_auth_files(options.get("auth"), spec.base_dir)
        return cls(spec.name, locations=spec.locations, match_on=spec.match_on, **options)

    @classmethod
    def check(cls, spec) -> list[tuple[str, str]]:
        """The base checks (``ca_bundle``) and the files ``auth`` names (a
        private key that is missing or cannot sign)."""
        return super().check(spec) + [(f"auth.{key}", msg) for key, msg in
                                      auth_file_problems(spec.options.get("auth"), spec.base_dir)]

    def __repr__(self) -> str:
        return f"RestAdapter({self.name!r}, {self.method} {safe_url(self.url)})"

    def stats(self) -> dict:
        """Counters for metrics: calls, retries, failures, token fetches, circuit."""
        with self._lock:
            return {"calls": self.calls, "retries": self.retried, "failures": self.failures,
                    "token_fetches": self.token_fetches, "circuit": self.circuit.state,
                    "circuit_opened": self.circuit.opened, "last_error": self.last_error,
                    "last_error_at": self.last_error_at}

    # -- lookup -------------------------------------------------------------

    def lookup(self, batch: Batch) -> dict:
        try:
            self.circuit.before()
        except CircuitOpen as e:
            raise AdapterUnavailable(self.name, str(e)) from None
        try:
            known = self._lookup_chunks(batch)
        except BaseException as e:
            with self._lock:
                self.failures += 1
                self.last_error = self.redact(str(e))
                self.last_error_at = time.time()
            self.circuit.failure()
            raise
        self.circuit.success()
        return known

    def _lookup_chunks(self, batch: Batch) -> dict:
        work = self.wire.calls(batch, self.batch_size)
        deadline = batch.deadline
        helpers_wanted = min(len(work), self.max_concurrency) - 1
        if helpers_wanted <= 0 or self._pool is None:
            known = {}
            for chunk in work:  # max_concurrency: 1 -> one call after the other
                known.update(self._call(chunk, deadline))
            return known
        # The caller and up to max_concurrency - 1 pool threads take chunks from one
        # queue: at most max_concurrency calls in flight for this request, and if the
        # pool is busy with other requests the caller simply does more of the work.
        queue, lock, stop = iter(work), threading.Lock(), threading.Event()

        def drain() -> dict:
            out = {}
            while not stop.is_set():
                with lock:
                    chunk = next(queue, None)
                if chunk is None:
                    break
                out.update(self._call(chunk, deadline))
            return out

        submit = self._pool.submit if tracing.tracer is None else tracing.submitter(self._pool)
        helpers = [submit(drain) for _ in range(helpers_wanted)]
        try:
            known = drain()
            done, pending = wait(helpers, timeout=max(0.0, deadline - time.monotonic()),
                                 return_when=FIRST_EXCEPTION)
            for f in helpers:
                if f in done and f.exception() is not None:
                    raise f.exception()
            if pending:
                raise AdapterTimeout(self.name, "deadline passed with ERP calls in flight")
        except BaseException:
            stop.set()
            for f in helpers:
                f.cancel()
            raise
        for f in helpers:
            known.update(f.result())
        return known

    def _call(self, chunk, deadline: float) -> dict:
        """The values of one call for ``chunk``: one request, or its pages."""
        paginator = getattr(self.wire, "paginator", None)
        page = paginator.first() if paginator is not None else None
        known: dict = {}
        while True:
            try:
                kwargs = self.wire.encode(chunk, page) if page is not None else self.wire.encode(chunk)
            except WireError as e:
                raise AdapterError(self.name, f"{self.method} {safe_url(self.url)}: "
                                   f"cannot encode the request: {e}") from None
            url = kwargs.pop("url", self.url)
            where = f"{self.method} {safe_url(url)}"
            status, body, headers = self._request(url, kwargs, deadline, where)
            try:
                if page is None:
                    return self.wire.parse(body, chunk)
                doc, rows = self.wire.parse_page(body, chunk, known)
                page_after = paginator.next(page, url, doc, headers, rows)
            except WireError as e:
                raise AdapterError(self.name, f"{where}: {e}: "
                                              f"{excerpt(body, self.redact, 120)}") from None
            if page_after is None:
                return known
            if page_after["number"] > paginator.max_pages:
                raise AdapterError(self.name, f"{where}: more than paginate.max_pages="
                                              f"{paginator.max_pages} pages; raise it or ask for less per call")
            page = page_after

    def _request(self, url: str, kwargs: dict, deadline: float, where: str) -> tuple:
        """``(status, body, headers)`` of one HTTP request with a 2xx answer, after
        retries and one token refresh; any other outcome is an AdapterError."""
        extra_headers = kwargs.pop("headers", {})
        retry_wanted = getattr(self.wire, "retry_wanted", None)
        attempt, refreshed = 0, False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AdapterTimeout(self.name, f"{where}: deadline passed before the call "
                                                f"(attempt {attempt + 1})")
            timeout = min(self.timeout_s, remaining)
            try:
                auth_headers = self.auth.headers(deadline)
            except AuthError as e:
                raise AdapterError(self.name, f"{where}: auth: {self.redact(str(e))}") from None
            with self._lock:
                self.calls += 1
            try:
                status, body, headers = send(self.session, self.method, url, budget_s=timeout,
                                             max_bytes=self.max_response_bytes,
                                             headers={**extra_headers, **auth_headers},
                                             allow_redirects=False, **kwargs)
            except BudgetExceeded as e:  # trickled headers or body: not retried, like a read timeout
                raise AdapterTimeout(self.name, f"{where}: {e}") from None
            except TooLarge as e:
                raise AdapterError(self.name, f"{where}: {e}") from None
            except requests.Timeout as e:
                if isinstance(e, requests.ConnectTimeout) and self._may_retry(attempt, deadline):
                    attempt += 1
                    continue
                raise AdapterTimeout(self.name, f"{where}: {describe_error(e)} after "
                                                f"{timeout * 1000:.0f} ms") from None
            except requests.ConnectionError as e:
                if self._may_retry(attempt, deadline):
                    attempt += 1
                    continue
                raise AdapterError(self.name, f"{where}: {describe_error(e)}{_tries(attempt)}") from None
            except requests.RequestException as e:
                raise AdapterError(self.name, f"{where}: {describe_error(e)}") from None
            if status == 401 and self.auth.refreshable and not refreshed:
                self.auth.invalidate(auth_headers)
                refreshed = True
                continue
            if status in RETRY_STATUS and self._may_retry(attempt, deadline):
                attempt += 1
                continue
            if status == 429 and self._may_retry(attempt, deadline, retry_after(headers)):
                attempt += 1
                continue
            if (200 <= status < 300 and retry_wanted is not None and retry_wanted(body)
                    and self._may_retry(attempt, deadline)):  # extract.retry_on: Shopify's THROTTLED
                attempt += 1
                continue
            if not 200 <= status < 300:
                hint = " (check the adapter's auth)" if status in (401, 403) else ""
                if status == 429:
                    hint = " (rate limited; Retry-After did not fit before the deadline)"
                message = vendor_message(body)
                shown = self.redact(message)[:200] if message else excerpt(body, self.redact)
                raise AdapterError(self.name, f"{where}: HTTP {status}{hint}{_tries(attempt)}: {shown}")
            return status, body, headers

    def _may_retry(self, attempt: int, deadline: float, pause: float | None = None) -> bool:
        """Sleep ``pause`` (default: the backoff) and say yes, if a retry is
        allowed and fits in time."""
        if attempt >= self.retries:
            return False
        pause = BACKOFF_S * (2 ** attempt) if pause is None else pause
        if deadline - time.monotonic() < pause + 0.005:  # no time left to try again
            return False
        time.sleep(pause)
        with self._lock:
            self.retried += 1
        return True

    # -- health, lifecycle --------------------------------------------------

    def health(self) -> Health:
        """The ERP's own health (``health_url``, cached) or the circuit's state."""
        state = self.circuit.state
        info = {"circuit": state, "calls": self.calls}
        if not self.health_url:
            return Health(state != "open", f"circuit {state}", info)
        with self._health_lock:  # one check at a time; the others reuse its result
            cached = self._health
            if cached is not None and time.monotonic() - cached[0] < self.health_cache_s:
                return cached[1]
            health = self._check_health(info)
            self._health = (time.monotonic(), health)
            return health

    def _check_health(self, info: dict) -> Health:
        where = f"GET {safe_url(self.health_url)}"
        try:
            headers = self.auth.headers(time.monotonic() + self.timeout_s)
            status, _, _ = send(self.session, "GET", self.health_url, budget_s=self.timeout_s,
                             max_bytes=self.max_response_bytes, headers=headers,
                             allow_redirects=False)
        except AuthError as e:
            return Health(False, f"{where}: auth: {self.redact(str(e))}", info)
        except (BudgetExceeded, TooLarge) as e:
            return Health(False, f"{where}: {e}", info)
        except requests.RequestException as e:
            return Health(False, f"{where}: {describe_error(e)}", info)
        ok = 200 <= status < 300
        return Health(ok, f"{where}: HTTP {status}", {**info, "status": status})

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self.session.close()

    def _count_token(self) -> None:
        with self._lock:
            self.token_fetches += 1

    def _circuit_changed(self, old: str, new: str) -> None:
        metrics.CIRCUIT_STATE.labels(self.name).set(_CIRCUIT_GAUGE[new])
        level = logging.WARNING if new == "open" else logging.INFO
        log.log(level, "adapter %r: circuit %s -> %s%s", self.name, old, new,
                f" (last error: {self.last_error})" if new == "open" else "")


def _tries(attempt: int) -> str:
    return f" after {attempt + 1} attempts" if attempt else ""
