"""``atp-bridge cache``: manage the Redis caches of ``type: redis, mode: cache`` adapters."""
from __future__ import annotations

import click

from atp_bridge.config import CONFIG_HELP

# The CLI is not on NewStore's clock: give SCAN room on a busy Redis.
CLI_TIMEOUT_MS = 5000


class CacheProblem(click.ClickException):
    """The flush could not run: says which adapter or Redis, and what to check."""


@click.group()
def cache():
    """Manage the Redis caches in front of other adapters."""


@cache.command()
@click.option("--config", "config_path", type=click.Path(), help=CONFIG_HELP)
@click.option("--location", help="Drop only this location's entries.")
@click.option("--product", help="Drop only this product's entries.")
@click.option("--adapter", "names", multiple=True,
              help="Cache adapter to flush (repeatable; default: every mode: cache adapter).")
def flush(config_path, location, product, names):
    # This docstring is the --help text and click prints it as written: no reST markup.
    """Drop cached ATP entries (SCAN + UNLINK, never KEYS); print how many.

    Only adapters with type: redis and mode: cache are flushed: the keys of a
    mode: source adapter belong to the system that writes them.
    """
    from atp_bridge.adapters.redis_conn import KeyTemplate, make_client, redact_url, redis_errors, unlink_matching
    from atp_bridge.cli import load_or_exit  # here: atp_bridge.cli imports this module

    config = load_or_exit(config_path)
    specs = _cache_specs(config, names)
    total = 0
    for spec in specs:
        options = {**spec.options, "timeout_ms": max(spec.options["timeout_ms"], CLI_TIMEOUT_MS)}
        pattern = KeyTemplate(options["key"], options["prefix"]).match_pattern(product, location)
        where = redact_url(options["url"])
        client = None
        try:
            client = make_client(options, spec.base_dir)
            dropped = unlink_matching(client, pattern, cluster=options["cluster"])
        except redis_errors() as e:
            raise CacheProblem(f"adapter {spec.name!r}: cannot flush Redis at {where}: "
                               f"{sentence(e)} Check that Redis is running and "
                               f"the adapter's url (and password/TLS options) in {spec.source}.") from e
        finally:
            if client is not None:
                client.close()
        total += dropped
        click.echo(f"adapter {spec.name!r}: dropped {dropped} key(s) matching {pattern!r} at {where}")
    if len(specs) > 1:
        click.echo(f"total: dropped {total} key(s)")


def sentence(error: BaseException) -> str:
    """``Type: message.`` ending in exactly one full stop, whatever the
    library's own message ends with (redis-py's end with "Connection refused."),
    so that another sentence can follow it."""
    text = str(error).strip()
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _cache_specs(config, names):
    caches = {s.name: s for s in config.adapters
              if s.type == "redis" and s.options.get("mode") == "cache"}
    if not names:
        if not caches:
            raise CacheProblem(f"{config.source}: no adapter with type: redis and mode: cache; "
                               f"nothing to flush")
        return list(caches.values())
    known = {s.name: s for s in config.adapters}
    for name in names:
        if name not in known:
            raise CacheProblem(f"no adapter named {name!r} in {config.source} "
                               f"(known: {', '.join(known)})")
        if name not in caches:
            raise CacheProblem(_not_a_cache(known[name], caches, config.source))
    return [caches[n] for n in dict.fromkeys(names)]


def _not_a_cache(spec, caches, source) -> str:
    """Why ``spec`` cannot be flushed, and which adapter to name instead."""
    if spec.type == "redis":
        why = (f"adapter {spec.name!r} is a Redis source (mode: source): its keys belong to the "
               f"system that writes them, so cache flush never deletes them")
    else:
        why = (f"adapter {spec.name!r} is type: {spec.type}, not a Redis adapter: it keeps no "
               f"cache to flush")
    fronting = [c.name for c in caches.values() if c.options.get("upstream") == spec.name]
    if fronting:
        return f"{why}; its answers are cached by {_names(fronting)}: pass --adapter {fronting[0]}"
    if caches:
        return f"{why}; the cache adapters in {source} are {_names(caches)}"
    return f"{why}; {source} has no adapter with type: redis and mode: cache"


def _names(names) -> str:
    return ", ".join(repr(n) for n in names)
