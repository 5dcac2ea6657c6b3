"""The emulator's NewStore-like token endpoint and rate limit.

* ``POST /auth/realms/<tenant>/protocol/openid-connect/token``: the path of
  NewStore's identity service, so ``NEWSTORE_TOKEN_URL`` can point here. A
  form POST with ``grant_type=client_credentials`` and the client id and
  secret the emulator was started with answers ``{"access_token",
  "expires_in", "token_type": "Bearer"}``; wrong credentials are 401
  ``invalid_client``, another grant type 400 ``unsupported_grant_type``
  (OAuth2's error names). ``expires_in`` is the lifetime set at start, so a
  test can make tokens expire in a second.
* With credentials set, the API accepts only tokens it issued that have not
  expired: an expired token is 401 ``unauthorized`` "The access token has
  expired." (NewStore's docs speak of 401 without a token; we answer 401 for a
  dead one too, which is what a client must renew on).
* ``GET /_emulator/auth``: ``tokens_issued`` and ``rate_limited_calls`` so far.
* ``rate_limit`` N: at most N API calls per token per second (a window per
  whole second); the next one is 429 ``rate_limited`` with ``Retry-After`` in
  whole seconds until the window ends, as NewStore answers over its limit.
"""
from __future__ import annotations

import hmac
import math
import secrets
import threading
import time
from typing import Callable

from flask import Flask, current_app, jsonify, request

from . import errors as e

TOKEN_PATH = "/auth/realms/<tenant>/protocol/openid-connect/token"


class TokenIssuer:
    """Issues tokens for one client id/secret pair and knows when each expires."""

    def __init__(self, client_id: str, client_secret: str, lifetime_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        self.client_id = client_id
        self._secret = client_secret
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self.issued = 0

    def credentials_match(self, client_id: str, client_secret: str) -> bool:
        """Both compared in constant time (no early exit on the id)."""
        id_ok = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        secret_ok = hmac.compare_digest(client_secret.encode(), self._secret.encode())
        return id_ok and secret_ok

    def issue(self) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            now = self._clock()
            # forget expired tokens so a 24/7 emulator does not grow without end
            self._expiry = {t: x for t, x in self._expiry.items() if x > now}
            self._expiry[token] = now + self.lifetime_s
            self.issued += 1
        return token

    def state(self, token: str) -> str:
        """``valid``, ``expired`` or ``unknown``."""
        with self._lock:
            expiry = self._expiry.get(token)
        if expiry is None:
            return "unknown"
        return "valid" if self._clock() < expiry else "expired"


class RateLimiter:
    """At most ``limit`` calls per key per whole second of the wall clock."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.time):
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._window: dict[str, tuple[int, int]] = {}
        self.refused = 0

    def retry_after(self, key: str) -> int | None:
        """``None``: the call may go; else the ``Retry-After`` seconds to send."""
        now = self._clock()
        second = math.floor(now)
        with self._lock:
            start, count = self._window.get(key, (second, 0))
            if start != second:
                start, count = second, 0
                if len(self._window) > 10_000:  # old keys of a long run
                    self._window = {k: v for k, v in self._window.items() if v[0] == second}
            if count < self.limit:
                self._window[key] = (start, count + 1)
                return None
            self.refused += 1
        return max(1, math.ceil(second + 1 - now))


def _ext() -> dict:
    return current_app.extensions["atp_bridge"]


def check_api_token(presented: str) -> None:
    """Called for every ``/v0/`` call with its bearer token: expiry, then rate limit."""
    issuer: TokenIssuer | None = _ext().get("token_issuer")
    static: str | None = _ext().get("fulfillment_token")
    if issuer is not None:
        is_static = static is not None and hmac.compare_digest(presented.encode(),
                                                               static.encode())
        if not is_static:
            state = issuer.state(presented)
            if state == "expired":
                raise e.UnauthorizedError("The access token has expired.")
            if state == "unknown":
                raise e.UnauthorizedError("The bearer token is not valid.")
    elif static is not None and not hmac.compare_digest(presented.encode(), static.encode()):
        raise e.UnauthorizedError("The bearer token is not valid.")
    limiter: RateLimiter | None = _ext().get("rate_limiter")
    if limiter is not None:
        wait = limiter.retry_after(presented)
        if wait is not None:
            raise _TooManyRequests(wait, limiter.limit)


class _TooManyRequests(e.RateLimitedError):
    def __init__(self, wait: int, limit: int):
        super().__init__(f"More than {limit} calls per second with this token; retry after "
                         f"{wait} s.", retry_after_s=wait)


def _too_many(err: _TooManyRequests):
    resp = jsonify(err.to_json())
    resp.headers["Retry-After"] = str(int(err.retry_after_s))
    return resp, 429


def install(app: Flask, *, credentials: tuple[str, str] | None = None,
            token_lifetime_s: float = 300.0, rate_limit: int | None = None) -> None:
    """Add the token endpoint (when ``credentials`` are given) and the rate limit."""
    ext = app.extensions["atp_bridge"]
    ext["token_issuer"] = TokenIssuer(*credentials, token_lifetime_s) if credentials else None
    ext["rate_limiter"] = RateLimiter(rate_limit) if rate_limit else None
    app.register_error_handler(_TooManyRequests, _too_many)

    @app.get("/_emulator/auth")
    def auth_counters():
        issuer, limiter = _ext()["token_issuer"], _ext()["rate_limiter"]
        return jsonify({"tokens_issued": issuer.issued if issuer else 0,
                        "token_lifetime_s": issuer.lifetime_s if issuer else None,
                        "rate_limit": limiter.limit if limiter else None,
                        "rate_limited_calls": limiter.refused if limiter else 0})

    @app.post(TOKEN_PATH)
    def token(tenant):
        issuer: TokenIssuer | None = _ext()["token_issuer"]
        if issuer is None:
            return _oauth_error("invalid_client", "This emulator was started without "
                                "--client-id/--client-secret: send any bearer token.", 401)
        form = request.form
        if form.get("grant_type") != "client_credentials":
            return _oauth_error("unsupported_grant_type",
                                "Only grant_type=client_credentials is supported.", 400)
        if not issuer.credentials_match(form.get("client_id", ""),
                                        form.get("client_secret", "")):
            return _oauth_error("invalid_client", "Invalid client or Invalid client "
                                "credentials", 401)
        lifetime = issuer.lifetime_s
        return jsonify({"access_token": issuer.issue(), "token_type": "Bearer", "scope": "",
                        # OAuth2 says integer seconds; a fraction only if one was asked for
                        "expires_in": int(lifetime) if lifetime == int(lifetime) else lifetime})


def _oauth_error(code: str, description: str, status: int):
    return jsonify({"error": code, "error_description": description}), status
