"""Authentication to the ERP and the redaction of every secret it involves.

:func:`make_auth` turns an :class:`~adapters.rest_options.AuthSpec` into an
object with ``headers(deadline)`` (what to send) and, for OAuth2,
``invalidate(headers)`` (a 401 says the token is dead). Every secret, static or
fetched, is registered with the adapter's :class:`Redactor`, which scrubs
every message the adapter raises or logs.

A token goes out as ``<header>: <prefix><token>`` (``Authorization: Bearer ...``
unless ``header`` / ``prefix`` say otherwise). OAuth2 ``client_auth:
private_key_jwt`` authenticates the client with a JWT assertion (RFC 7523)
signed by a PEM private key (:func:`load_signing_key`): a new one for every
token request, valid :data:`ASSERTION_LIFETIME_S`.
"""
from __future__ import annotations

import base64
import dataclasses
import importlib
import os
import threading
import time
from urllib.parse import urljoin, urlsplit

import orjson
import requests

from atp_bridge.adapters.rest_http import MAX_RESPONSE_BYTES, BudgetExceeded, TooLarge, send
from atp_bridge.adapters.engine.templates import TemplateProblem
from atp_bridge.adapters.rest_options import AuthSpec, ExchangeSpec
from atp_bridge.adapters.rest_wire import safe_url
from atp_bridge.config_types import resolve_file

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 300  # NetSuite: exp at most 60 minutes after iat; short is safer
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


class Redactor:
    """Replaces every known secret in a text with ``***``."""

    def __init__(self):
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, *secrets: str) -> None:
        with self._lock:  # copy-on-write: readers never take the lock
            self._secrets = self._secrets | {s for s in secrets if s}

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, "***")
        return text


class AuthError(Exception):
    """Getting credentials failed (token endpoint down or refusing). The message
    is already safe: it never holds a secret."""


class StaticAuth:
    """Fixed headers (bearer, basic, header)."""

    refreshable = False

    def __init__(self, headers: dict[str, str]):
        self._headers = headers

    def headers(self, deadline: float) -> dict[str, str]:
        return self._headers

    def invalidate(self, used: dict[str, str]) -> None:
        """A static credential cannot be renewed."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self._headers)})"


class OAuth2ClientCredentials:
    """OAuth2 client-credentials grant with a cached, thread-safe token.

    The token is reused until ``expires_in - 30`` seconds after it was issued
    (half its lifetime for very short-lived tokens); one thread fetches while
    the others wait for its result.
    """

    refreshable = True
    MARGIN_S = 30.0
    DEFAULT_LIFETIME_S = 300.0  # when the endpoint does not say expires_in

    def __init__(self, spec: AuthSpec, session: requests.Session, timeout_s: float,
                 redact: Redactor, on_fetch=None, max_bytes: int = MAX_RESPONSE_BYTES):
        self._spec = spec
        self._session = session
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._redact = redact
        self._on_fetch = on_fetch
        self._lock = threading.Lock()
        self._header: dict[str, str] | None = None
        self._valid_until = 0.0
        redact.add(spec.client_secret)
        self._signing = (load_signing_key(spec.private_key, spec.algorithm)
                         if spec.client_auth == "private_key_jwt" else None)

    def __repr__(self) -> str:
        return f"OAuth2ClientCredentials(token_url={self._spec.token_url!r})"

    def headers(self, deadline: float) -> dict[str, str]:
        header = self._header
        if header is not None and time.monotonic() < self._valid_until:
            return header
        with self._lock:
            if self._header is not None and time.monotonic() < self._valid_until:
                return self._header  # another thread fetched while we waited
            self._header, self._valid_until = self._fetch(deadline)
            return self._header

    def invalidate(self, used: dict[str, str]) -> None:
        """Forget the token that got a 401, unless another thread already did."""
        with self._lock:
            if self._header is used:
                self._header, self._valid_until = None, 0.0

    def _fetch(self, deadline: float) -> tuple[dict[str, str], float]:
        spec = self._spec
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AuthError("no time left to fetch an OAuth2 token")
        form = {"grant_type": "client_credentials"}
        basic = None
        if self._signing is not None:  # as NetSuite has it: three fields, the scope in the assertion
            assertion = self._assertion()
            self._redact.add(assertion)
            form.update(client_assertion_type=JWT_BEARER, client_assertion=assertion)
        else:
            if spec.scope:
                form["scope"] = spec.scope
            if spec.client_auth == "basic":
                basic = (spec.client_id, spec.client_secret)
            else:
                form.update(client_id=spec.client_id, client_secret=spec.client_secret)
        timeout = min(self._timeout_s, remaining)
        if self._on_fetch:
            self._on_fetch()
        try:  # bounded in total like every ERP call (adapters.rest_http)
            status, body, _ = send(self._session, "POST", spec.token_url, budget_s=timeout,
                                max_bytes=self._max_bytes, data=form, auth=basic,
                                headers={"Accept": "application/json"}, allow_redirects=False)
        except (BudgetExceeded, TooLarge) as e:
            raise AuthError(f"token endpoint: {e}") from e
        except requests.RequestException as e:
            raise AuthError(f"token endpoint unreachable: {type(e).__name__}") from e
        if status != 200:
            raise AuthError(f"token endpoint answered HTTP {status}: "
                            f"{excerpt(body, self._redact)}")
        try:
            doc = orjson.loads(body)
            token = doc["access_token"]
            if not isinstance(token, str) or not token:
                raise TypeError("access_token is not a non-empty string")
            lifetime = float(doc.get("expires_in") or self.DEFAULT_LIFETIME_S)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise AuthError(f"token endpoint answer has no usable access_token "
                            f"({type(e).__name__})") from e
        self._redact.add(token)
        if spec.exchange is not None:  # auth.exchange: trade it for the token the ERP takes
            token, lifetime = exchange_token(spec.exchange, token, self._session, deadline,
                                             self._timeout_s, self._max_bytes, self._redact)
        usable = max(lifetime - self.MARGIN_S, lifetime / 2)
        return {spec.header: f"{spec.prefix}{token}"}, time.monotonic() + usable

    def _assertion(self) -> str:
        """A fresh client assertion: ``iss`` the client id, ``aud`` the token URL,
        ``scope`` if set, ``kid`` the key id if set."""
        import jwt  # PyJWT; load_signing_key checked that it is there

        spec, (key, algorithm) = self._spec, self._signing
        now = int(time.time())
        claims = {"iss": spec.client_id, "aud": spec.token_url, "iat": now, "exp": now + ASSERTION_LIFETIME_S}
        if spec.scope:
            claims["scope"] = spec.scope
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": spec.key_id} if spec.key_id else None)


class KeyProblem(ValueError):
    """A private key file that cannot sign assertions. The message names the
    file and the cause, never anything of the key."""


def load_signing_key(path: str, algorithm: str = ""):
    """``(private key, JWT algorithm)`` from the PEM file at ``path``. ``algorithm``
    "" is the key's own: PS256 for RSA, ES256 / ES384 / ES512 for an EC key on
    P-256 / P-384 / P-521; a given one must fit the key. Raises :class:`KeyProblem`."""
    try:
        importlib.import_module("jwt")  # PyJWT signs (in _assertion); cryptography parses the key
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError as e:
        raise KeyProblem(f"signing needs PyJWT and cryptography ({e.name} is missing): "
                         f"pip install 'PyJWT[crypto]'") from None
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError as e:
        raise KeyProblem(f"cannot read {path} ({e.strerror or type(e).__name__})") from None
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:  # a passphrase: the bridge has nowhere to keep one
        raise KeyProblem(f"{path} holds an encrypted private key; store it unencrypted "
                         f"(openssl pkey -in KEY -out KEY.pem) in a file only the bridge can read") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyProblem(f"{path} holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)") from None
    if isinstance(key, rsa.RSAPrivateKey):
        chosen = algorithm or "PS256"
        if chosen[:2] not in ("PS", "RS"):
            raise KeyProblem(f"{path} holds an RSA key: algorithm {chosen} needs an EC key (use PS256)")
        return key, chosen
    if isinstance(key, ec.EllipticCurvePrivateKey):
        own = _EC_ALGORITHMS.get(key.curve.name)
        if own is None:
            raise KeyProblem(f"{path} holds an EC key on {key.curve.name}; a JWT is signed on "
                             f"P-256, P-384 or P-521")
        if algorithm and algorithm != own:
            raise KeyProblem(f"{path} holds an EC key on {key.curve.name}: it signs {own}, not {algorithm}")
        return key, own
    raise KeyProblem(f"{path} holds a {type(key).__name__.lstrip('_')}; give an RSA or EC private key")


def auth_file_problems(spec: AuthSpec | None, base_dir: str) -> list[tuple[str, str]]:
    """``(key, message)`` for the files an ``auth:`` block names that cannot be
    used (``check-config``): ``private_key`` missing, unreadable or not a key
    that fits ``algorithm``. Keys are relative to the ``auth`` block."""
    if spec is None or not spec.private_key:
        return []
    path = resolve_file(base_dir, spec.private_key)
    if not os.path.isfile(path):
        return [("private_key", f"no such file {path}")]
    try:
        load_signing_key(path, spec.algorithm)
    except KeyProblem as e:
        return [("private_key", str(e))]
    return []


def resolve_auth_files(spec: AuthSpec | None, base_dir: str) -> AuthSpec | None:
    """``spec`` with its files resolved against the config directory."""
    if spec is None or not spec.private_key:
        return spec
    return dataclasses.replace(spec, private_key=resolve_file(base_dir, spec.private_key))


def make_auth(spec: AuthSpec | None, session: requests.Session, timeout_s: float,
              redact: Redactor, on_fetch=None, max_bytes: int = MAX_RESPONSE_BYTES):
    """The runtime auth for ``spec`` (None: no credentials); a token answer may
    take ``timeout_s`` (never past the call's deadline) and ``max_bytes``."""
    if spec is None:
        return StaticAuth({})
    if spec.type == "bearer":
        redact.add(spec.token)
        return StaticAuth({spec.header: f"{spec.prefix}{spec.token}"})
    if spec.type == "basic":
        raw = base64.b64encode(f"{spec.username}:{spec.password}".encode()).decode("ascii")
        redact.add(spec.password, raw)
        return StaticAuth({"Authorization": f"Basic {raw}"})
    if spec.type == "header":
        redact.add(spec.value)
        return StaticAuth({spec.name: spec.value})
    if spec.type == "oauth2_client_credentials":
        return OAuth2ClientCredentials(spec, session, timeout_s, redact, on_fetch, max_bytes)
    raise ValueError(f"unknown auth type {spec.type!r}")


def excerpt(body: bytes, redact: Redactor, limit: int = 200) -> str:
    """The start of a response body, secrets scrubbed, at most ``limit`` characters.

    Scrubbed before it is cut, so a secret straddling the cut cannot leak a part.
    """
    text = redact(" ".join(body[:65536].decode("utf-8", "replace").split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


MAX_REDIRECTS = 3  # 307/308 hops a token exchange follows


def exchange_token(spec: ExchangeSpec, token: str, session: requests.Session, deadline: float,
                   timeout_s: float, max_bytes: int, redact: Redactor) -> tuple[str, float]:
    """``(token, lifetime in seconds)`` that ``auth.exchange`` gives for ``token``.

    The POST is rendered from the exchange's templates with ``token``; a 307 or
    308 is answered by the same POST to its ``Location`` (requests only re-posts
    when it follows redirects itself, which would hide them from the budget),
    at most :data:`MAX_REDIRECTS` times and never from https to http: the body
    carries the first token. Each hop ends within ``min(timeout_s, time left)``.
    """
    try:
        parts = spec.template.render({"token": token})
    except TemplateProblem as e:
        raise AuthError(f"token exchange: {e}") from None
    headers = {"Accept": "application/json", **parts["headers"]}
    if spec.encoding == "json":
        send_kw = {"data": orjson.dumps(parts["body"]), "headers": {"Content-Type": "application/json", **headers}}
    else:
        send_kw = {"data": {k: str(v) for k, v in parts["body"].items()}, "headers": headers}
    url = spec.url
    for hop in range(MAX_REDIRECTS + 1):
        where = f"token exchange (POST {safe_url(url)})"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AuthError(f"{where}: no time left to exchange the token")
        try:
            status, body, answered = send(session, "POST", url, budget_s=min(timeout_s, remaining),
                                          max_bytes=max_bytes, allow_redirects=False, **send_kw)
        except (BudgetExceeded, TooLarge) as e:
            raise AuthError(f"{where}: {e}") from e
        except requests.RequestException as e:
            raise AuthError(f"{where} unreachable: {type(e).__name__}") from e
        if status not in (307, 308):
            break
        location = answered.get("Location", "")
        if not location:
            raise AuthError(f"{where} answered HTTP {status} without a Location")
        target = urljoin(url, location)
        if urlsplit(url).scheme == "https" and urlsplit(target).scheme != "https":
            raise AuthError(f"{where} redirects to {safe_url(target)}: refused, the token would "
                            f"leave https")
        if hop == MAX_REDIRECTS:
            raise AuthError(f"{where}: more than {MAX_REDIRECTS} redirects")
        url = target
    if status != 200:
        raise AuthError(f"{where} answered HTTP {status}: {excerpt(body, redact)}")
    try:
        doc = orjson.loads(body)
        got = spec.token(doc)
        if not isinstance(got, str) or not got:
            raise TypeError(f"{spec.token_path} is not a non-empty string")
        expires = spec.expires(doc)
        lifetime = float(expires) if expires not in (None, "") else OAuth2ClientCredentials.DEFAULT_LIFETIME_S
        if not lifetime > 0:
            raise ValueError(f"{spec.expires_path} is not a positive number of seconds")
    except (orjson.JSONDecodeError, TypeError, ValueError) as e:
        raise AuthError(f"{where}: the answer has no usable token at {spec.token_path!r} "
                        f"({type(e).__name__})") from e
    redact.add(got)
    return got, lifetime
