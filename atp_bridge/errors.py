"""The one error hierarchy of atp-bridge, and the secret masking every error passes.

Library errors (requests, redis, csv, yaml) are converted at the adapter or
config boundary with ``raise ... from e``, so callers only ever catch these.

Every value the configuration took from the environment (``${VAR}``, or
``${VAR:-default}`` with the variable set; a default is written in the file
itself) is a secret: :data:`SECRETS` records it while
the config loads, and :class:`AdapterError` and :class:`ConfigError` mask it
as ``***`` when they are built, so no log line, ``/readyz`` detail or CLI
output made from them can carry it. The JSON log formatter, ``Bridge.health``
and the CLI mask what they print as well. The masker lives here, in the module
every other one imports, and not in ``atp_bridge/secrets.py``: that name would
shadow the standard library's ``secrets`` (which werkzeug and redis-py import)
whenever a file in this folder is run as a script.
"""
from __future__ import annotations

import json
import threading
from urllib.parse import parse_qsl, quote, quote_plus, unquote, unquote_plus, urlsplit

MASK = "***"
# Shorter values are not masked: a credential that short protects nothing, and masking
# every "2" or "on" (``${WORKERS:-2}``) would make messages unreadable.
MIN_SECRET_LENGTH = 4
_URI_SAFE = "!#$%&'()*+,/:;=?@[]~"  # what requests leaves as is when it re-quotes a URL
_CUT = "..."  # how a shortened excerpt ends (adapters/rest_auth.py excerpt)


def secret_forms(value: str) -> set[str]:
    """``value`` as it may show up in a message: as is, percent-encoded (as a
    query value or path segment, as requests re-quotes a URL, lower-case hex),
    form-decoded (how a server reads an unencoded ``+`` in a query),
    JSON-escaped, with its whitespace collapsed (as an excerpt shows a body).
    A URL also gives its password and its query values, each a secret of its
    own: ``${ERP_URL}`` may carry ``?api_key=...`` while messages show the URL
    without its query."""
    forms = {value, quote(value, safe=""), quote_plus(value, safe=""), quote(value, safe=_URI_SAFE),
             unquote_plus(value), json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
             json.dumps(value)[1:-1].replace("/", "\\/"), " ".join(value.split())}
    forms |= {_lower_hex(f) for f in forms if "%" in f}
    if "://" in value:
        try:
            parts = urlsplit(value)
            inner = [parts.password or ""] + [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
        except ValueError:  # not a URL after all (a bad port, say)
            inner = []
        for part in inner:
            if len(part) >= MIN_SECRET_LENGTH:
                forms |= secret_forms(unquote(part)) | secret_forms(part)
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def _lower_hex(text: str) -> str:
    out, i = [], 0
    while (j := text.find("%", i)) >= 0:
        out.append(text[i:j] + text[j:j + 3].lower())
        i = j + 3
    return "".join(out) + text[i:]


class SecretMasker:
    """The secrets of this process and :meth:`mask`, which hides them.

    One per process (:data:`SECRETS`), not per app: errors are built and log
    lines formatted far from any Flask app (adapters, gunicorn's master).
    Adding copies the tuple (readers never lock); masking costs nothing when
    no secret is known and is only called off the per-request success path.
    """

    def __init__(self):
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every recorded form, longest first."""
        return self._secrets

    def add(self, value: str) -> None:
        """Record ``value`` (and :func:`secret_forms` of it) as a secret."""
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            return
        forms = secret_forms(value)
        with self._lock:
            if forms.issubset(self._secrets):
                return
            self._secrets = tuple(sorted(forms.union(self._secrets), key=lambda s: (-len(s), s)))

    def clear(self) -> None:
        """Forget every secret (for tests)."""
        with self._lock:
            self._secrets = ()

    def mask(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``.

        Overlapping secrets are masked as the union of their spans, so no
        fragment of either survives; a secret cut short by an excerpt (its
        first characters right before ``...``) is masked too.
        """
        secrets = self._secrets
        if not secrets or not text:
            return text
        spans = []
        for s in secrets:
            i = text.find(s)
            while i >= 0:
                spans.append((i, i + len(s)))
                i = text.find(s, i + 1)
        if _CUT in text:
            spans.extend(_cut_spans(text, secrets))
        if not spans:
            return text
        spans.sort()
        out, pos = [], 0
        start, end = spans[0]
        for a, b in spans[1:]:
            if a <= end:
                end = max(end, b)
                continue
            out += (text[pos:start], MASK)
            pos, start, end = end, a, b
        out += (text[pos:start], MASK, text[end:])
        return "".join(out)

    def mask_value(self, value):
        """:meth:`mask` applied to every string in ``value`` (dicts, lists, tuples)."""
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {k: self.mask_value(v) for k, v in value.items()}
        if type(value) in (list, tuple):
            return type(value)(self.mask_value(v) for v in value)
        return value


def _cut_spans(text: str, secrets: tuple[str, ...]) -> list[tuple[int, int]]:
    """Spans of secret prefixes (at least MIN_SECRET_LENGTH long) that end where ``...`` starts."""
    spans = []
    j = text.find(_CUT)
    while j >= 0:
        for s in secrets:
            for k in range(min(len(s) - 1, j), MIN_SECRET_LENGTH - 1, -1):
                if text.startswith(s[:k], j - k):
                    spans.append((j - k, j))
                    break
        j = text.find(_CUT, j + 1)
    return spans


SECRETS = SecretMasker()
mask = SECRETS.mask
mask_value = SECRETS.mask_value


class AtpBridgeError(Exception):
    """Root of every error atp-bridge raises on purpose."""


class ConfigError(AtpBridgeError):
    """The configuration is invalid; ``problems`` lists every ``file: key: message``."""

    def __init__(self, problems: list[str]):
        self.problems = [mask(p) for p in problems]
        super().__init__("\n".join(self.problems))


class AdapterError(AtpBridgeError):
    """An adapter could not answer. ``reason`` is short and safe to log and to
    put in the ``X-ATP-Degraded`` header (``error`` or ``timeout``). ``message``
    is masked here (see :class:`SecretMasker`), so every copy of it is safe."""

    reason = "error"

    def __init__(self, adapter: str, message: str):
        self.adapter = adapter
        self.message = mask(message)
        super().__init__(f"adapter {adapter!r}: {self.message}")


class AdapterTimeout(AdapterError):
    """The adapter did not answer before the request deadline."""

    reason = "timeout"


class AdapterUnavailable(AdapterError):
    """The adapter refuses to try (data not loaded yet, circuit open...)."""

    reason = "unavailable"


class UnknownAdapterType(AtpBridgeError):
    """No built-in adapter nor entry point has this ``type`` name."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = known
        super().__init__(f"unknown adapter type {name!r}; known types: {', '.join(known)}")


# An error envelope lists at most this many problems; the rest are only counted.
MAX_DETAILS = 20


class RequestError(AtpBridgeError):
    """The webhook request is invalid; becomes a 4xx JSON envelope.

    ``details`` keeps at most :data:`MAX_DETAILS` problems and
    ``more_problems`` counts the ones left out, so that no body, however many
    problems it has, gets a large answer.
    """

    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request",
                 details: list[dict] | None = None, more_problems: int = 0):
        details = details or []
        self.message = message
        self.status = status
        self.code = code
        self.details = details[:MAX_DETAILS]
        self.more_problems = more_problems + len(details) - len(self.details)
        super().__init__(message)
