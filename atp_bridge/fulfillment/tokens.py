"""NewStore access tokens for the Fulfillment Provider API client.

NewStore's API clients authenticate with the OAuth2 client credentials grant:
a form POST of ``grant_type=client_credentials``, ``client_id`` and
``client_secret`` to
``https://id.p.newstore.net/auth/realms/{tenant}/protocol/openid-connect/token``;
the lifetime of the token it returns (``expires_in``) is set per API client.
(The older ``POST https://{tenant}.p.newstore.net/v0/token`` password grant is
deprecated and not supported here.)

:class:`ClientCredentials` fetches a token on first use, keeps it, and fetches
the next one shortly before it expires. It is shared by every thread of a
process: one lock, so when many threads need a token at once only one fetch
goes out and the others use its result. A 401 from the API makes the client
call :meth:`ClientCredentials.invalidate` with the token it sent, and a new
token is fetched once, however many threads saw that 401.

The secret, and every token, never appear in a log line, an exception message
or a ``repr``.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Mapping, Protocol

import requests

from .errors import FulfillmentError

log = logging.getLogger("atp_bridge.fulfillment")

NEWSTORE_TOKEN_URL = ("https://id.p.newstore.net/auth/realms/{tenant}"
                      "/protocol/openid-connect/token")
#: Renew this long before expiry (capped at half the lifetime for short-lived tokens).
DEFAULT_LEEWAY_S = 60.0


class TokenError(FulfillmentError):
    """No access token could be fetched (the token endpoint refused or failed).
    The message names the URL and NewStore's error, never the secret."""


class TokenSource(Protocol):
    """What :class:`~atp_bridge.fulfillment.client.FulfillmentClient` needs."""

    refreshable: bool

    def token(self) -> str:
        """The access token to send now."""

    def invalidate(self, used: str) -> None:
        """The API refused ``used`` (401): do not hand it out again."""


class StaticToken:
    """A raw access token (``NEWSTORE_TOKEN``): sent as is, never renewed."""

    refreshable = False

    def __init__(self, token: str):
        self._token = token

    def token(self) -> str:
        return self._token

    def invalidate(self, used: str) -> None:
        """A raw token cannot be renewed: the 401 goes to the caller."""

    def __repr__(self) -> str:
        return "StaticToken(***)"


def token_url_for(tenant: str) -> str:
    """NewStore's token endpoint for ``tenant`` (e.g. ``acme-sandbox``)."""
    return NEWSTORE_TOKEN_URL.format(tenant=tenant)


class ClientCredentials:
    """OAuth2 client credentials against NewStore's identity service (or the
    emulator's token endpoint of the same shape), cached and renewed.

    ``clock`` is monotonic seconds (a test may pass its own). A fetch that
    fails raises :class:`TokenError`; the next call tries again.
    """

    refreshable = True

    def __init__(self, token_url: str, client_id: str, client_secret: str, *,
                 session: requests.Session | None = None, timeout: float | tuple = (3.05, 10.0),
                 leeway_s: float = DEFAULT_LEEWAY_S,
                 clock: Callable[[], float] = time.monotonic):
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self._session = session if session is not None else requests.Session()
        self._timeout = timeout
        self._leeway_s = leeway_s
        self._clock = clock
        self._lock = threading.Lock()
        self._current: str | None = None
        self._renew_at = 0.0
        #: How many tokens this source fetched (for logs and tests).
        self.fetches = 0

    def __repr__(self) -> str:
        return f"ClientCredentials({self.token_url!r}, ***)"

    def token(self) -> str:
        with self._lock:  # held during the fetch: the other threads wait for its token
            if self._current is None or self._clock() >= self._renew_at:
                self._current, self._renew_at = self._fetch()
            return self._current

    def invalidate(self, used: str) -> None:
        with self._lock:
            if used == self._current:  # several threads may report the same dead token
                self._current = None

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self._secret}
        try:
            resp = self._session.post(self.token_url, data=form, timeout=self._timeout,
                                      headers={"Accept": "application/json"})
        except requests.RequestException as err:
            raise TokenError(f"token request to {self.token_url} failed: "
                             f"{self._safe(type(err).__name__ + ': ' + str(err))}") from None
        body = _json_or_none(resp)
        if not resp.ok:
            raise TokenError(f"token request to {self.token_url} was refused: HTTP "
                             f"{resp.status_code} {self._describe(body, resp)}",
                             status=resp.status_code,
                             error_code=_str(body, "error") or "token_request_failed")
        token = _str(body, "access_token")
        if not token:
            raise TokenError(f"token answer from {self.token_url} (HTTP {resp.status_code}) "
                             f"has no access_token")
        lifetime = _lifetime(body)
        self.fetches += 1
        log.info("fetched a NewStore access token from %s, valid %.0f s", self.token_url,
                 lifetime)
        return token, self._clock() + lifetime - min(self._leeway_s, lifetime / 2)

    def _describe(self, body: Mapping | None, resp: requests.Response) -> str:
        if body is not None:
            text = " ".join(filter(None, (_str(body, "error"), _str(body, "error_description"))))
        else:
            text = resp.text[:200]
        return self._safe(text or resp.reason or "")

    def _safe(self, text: str) -> str:
        # the identity service never echoes the secret, but a proxy's error page might
        return text.replace(self._secret, "***") if self._secret else text


def _json_or_none(resp: requests.Response) -> Mapping | None:
    try:
        data = resp.json()
    except ValueError:
        return None
    return data if isinstance(data, Mapping) else None


def _str(body: Mapping | None, key: str) -> str:
    value = (body or {}).get(key)
    return value if isinstance(value, str) else ""


def _lifetime(body: Mapping | None) -> float:
    value = (body or {}).get("expires_in")
    try:
        lifetime = float(value)
    except (TypeError, ValueError):
        lifetime = 300.0  # no lifetime given: renew every 5 minutes, a 401 renews earlier
    return max(lifetime, 0.0)


def token_source(*, token: str | None = None, client_id: str | None = None,
                 client_secret: str | None = None, tenant: str | None = None,
                 token_url: str | None = None, session: requests.Session | None = None,
                 **kwargs) -> TokenSource:
    """The token source for these settings: client credentials when a client
    id is given (they win over a raw token), else the raw token. Raises
    ``ValueError`` naming what is missing; the message never holds a secret."""
    if client_id:
        if not client_secret:
            raise ValueError("a client id needs its client secret (--client-secret or "
                             "NEWSTORE_CLIENT_SECRET)")
        if not token_url and not tenant:
            raise ValueError("client credentials need the tenant (--tenant or NEWSTORE_TENANT) "
                             "or the token URL (NEWSTORE_TOKEN_URL)")
        return ClientCredentials(token_url or token_url_for(tenant), client_id, client_secret,
                                 session=session, **kwargs)
    if client_secret:
        raise ValueError("a client secret needs its client id (--client-id or "
                         "NEWSTORE_CLIENT_ID)")
    if token:
        return StaticToken(token)
    raise ValueError("no credentials: set NEWSTORE_CLIENT_ID, NEWSTORE_CLIENT_SECRET and "
                     "NEWSTORE_TENANT (or --client-id/--client-secret/--tenant), or a raw "
                     "NEWSTORE_TOKEN (--token)")
