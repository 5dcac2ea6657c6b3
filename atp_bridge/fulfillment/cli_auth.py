"""How the ``atp-bridge fulfillment`` commands authenticate and live with
NewStore's rate limit: the options, and the client they build.

Credentials, first match wins: ``--client-id``/``--client-secret`` with
``--tenant`` (or ``NEWSTORE_TOKEN_URL``) fetch tokens by OAuth2 client
credentials; else ``--token`` / ``NEWSTORE_TOKEN`` is sent as is.
"""
from __future__ import annotations

import click

from .client import FulfillmentClient
from .ratelimit import DEFAULT_BUDGET_S, describe_waits
from .tokens import token_source

_OPTIONS = [
    click.option("--url", envvar="NEWSTORE_URL", show_envvar=True,
                 help="API root, e.g. https://acme.p.newstore.net."),
    click.option("--token", envvar="NEWSTORE_TOKEN", show_envvar=True,
                 help="A raw NewStore access token (sent as a bearer token)."),
    click.option("--client-id", envvar="NEWSTORE_CLIENT_ID", show_envvar=True,
                 help="API client id: fetch and renew tokens by client credentials."),
    click.option("--client-secret", envvar="NEWSTORE_CLIENT_SECRET", show_envvar=True,
                 help="The API client's secret."),
    click.option("--tenant", envvar="NEWSTORE_TENANT", show_envvar=True,
                 help="Tenant of the token URL, e.g. acme-sandbox "
                      "(NEWSTORE_TOKEN_URL overrides the whole URL)."),
    click.option("--token-url", envvar="NEWSTORE_TOKEN_URL", show_envvar=True,
                 help="Token endpoint (default: NewStore's for --tenant)."),
    click.option("--rate-limit-wait", type=click.FloatRange(min=0.0), default=DEFAULT_BUDGET_S,
                 envvar="NEWSTORE_RATE_LIMIT_WAIT", show_envvar=True, show_default=True,
                 help="Seconds a call may wait in total on 429 Too Many Requests."),
]

AUTH_PARAMS = ("url", "token", "client_id", "client_secret", "tenant", "token_url",
               "rate_limit_wait")


def auth_options(fn):
    """Add the connection, credential and rate limit options to a command."""
    for option in reversed(_OPTIONS):
        fn = option(fn)
    return fn


def build_client(settings: dict, waits: list[float]) -> FulfillmentClient:
    """The client for these option values; every 429 wait is appended to
    ``waits``. ``ValueError`` names missing settings (never a secret)."""
    if not settings["url"]:
        raise ValueError("no API URL; pass --url or set NEWSTORE_URL")
    source = token_source(token=settings["token"], client_id=settings["client_id"],
                          client_secret=settings["client_secret"], tenant=settings["tenant"],
                          token_url=settings["token_url"])
    token = settings["token"] if not getattr(source, "refreshable", False) else source
    return FulfillmentClient(settings["url"], token,
                             rate_limit_budget_s=settings["rate_limit_wait"],
                             on_rate_limit=waits.append)


def rate_limit_note(waits: list[float]) -> str:
    """``"rate limited by NewStore, retried after 1 s"`` or ``""``."""
    return describe_waits(waits)
