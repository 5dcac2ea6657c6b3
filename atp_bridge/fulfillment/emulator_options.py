"""The emulator command's options for tokens, the rate limit, pushing and
generated orders, and the wiring they ask for (:func:`build_emulator`)."""
from __future__ import annotations

import random

import click

from .generate import Generator
from .push import Pusher

_OPTIONS = [
    click.option("--client-id", envvar="FULFILLMENT_EMULATOR_CLIENT_ID", show_envvar=True,
                 help="Issue tokens from POST /auth/realms/TENANT/protocol/openid-connect/token "
                      "to this client id (with --client-secret); then only those are accepted."),
    click.option("--client-secret", envvar="FULFILLMENT_EMULATOR_CLIENT_SECRET",
                 show_envvar=True, help="The client secret that goes with --client-id."),
    click.option("--token-lifetime", type=click.FloatRange(min=0.1), default=300.0,
                 show_default=True, help="Seconds an issued token is valid (expires_in)."),
    click.option("--rate-limit", type=click.IntRange(min=1),
                 help="At most N API calls per token per second; more get 429 + Retry-After."),
    click.option("--provider-url", help="POST every new fulfillment request here, in "
                                        "NewStore's \"Create fulfillment request\" shape."),
    click.option("--provider-key", envvar="FULFILLMENT_EMULATOR_PROVIDER_KEY", show_envvar=True,
                 help="Send 'Authorization: Bearer KEY' with every push."),
    click.option("--duplicate-rate", type=click.FloatRange(0.0, 1.0), default=0.0,
                 show_default=True, help="Chance that a delivered request is pushed again."),
    click.option("--push-attempts", type=click.IntRange(min=1), default=10, show_default=True,
                 help="Attempts per push before giving up."),
    click.option("--push-backoff", type=click.FloatRange(min=0.0), default=0.5,
                 show_default=True, help="Seconds before the first retry; doubles, up to 30 s."),
    click.option("--push-timeout", type=click.FloatRange(min=0.1), default=5.0,
                 show_default=True, help="Seconds to wait for the provider's answer."),
    click.option("--generate", "generate", type=click.IntRange(min=0), default=0,
                 help="Make N fulfillment requests from a seeded catalogue."),
    click.option("--interval", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
                 help="Seconds between generated requests."),
]


def emulator_options(fn):
    """Add the options above to the ``fulfillment-emulator`` command."""
    for option in reversed(_OPTIONS):
        fn = option(fn)
    return fn


def build_emulator(seed, token, *, client_id, client_secret, token_lifetime, rate_limit,
                   provider_url, provider_key, duplicate_rate, push_attempts, push_backoff,
                   push_timeout, generate, interval):
    """``(app, pusher or None, generator or None)``; ``click.UsageError`` for
    options that only make sense together."""
    from .emulator import add_request, create_emulator_app

    if bool(client_id) != bool(client_secret):
        raise click.UsageError("--client-id and --client-secret go together.")
    if not provider_url and (provider_key or duplicate_rate):
        raise click.UsageError("--provider-key and --duplicate-rate need --provider-url.")
    pusher = None
    if provider_url:
        pusher = Pusher(provider_url, provider_key, duplicate_rate=duplicate_rate,
                        rng=random.Random(seed), timeout_s=push_timeout,
                        max_attempts=push_attempts, backoff_s=push_backoff)
    app = create_emulator_app(seed=seed, token=token, client_id=client_id,
                              client_secret=client_secret, token_lifetime_s=token_lifetime,
                              rate_limit=rate_limit, pusher=pusher)
    generator = None
    if generate:
        generator = Generator(lambda order: add_request(app, order), generate, interval, seed)
    return app, pusher, generator
