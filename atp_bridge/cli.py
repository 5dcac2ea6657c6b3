"""The ``atp-bridge`` command: serve, check-config, query (and the cache, holds and fulfillment groups)."""
from __future__ import annotations

import logging
import os
import sys

if sys.argv[1:2] == ["serve"]:
    # gevent must patch sockets, ssl and threads before requests/urllib3 import ssl
    # (a late patch breaks https: RecursionError in SSLContext); the workers are
    # gevent workers (atp_bridge/worker.py) and fork from this process
    from gevent import monkey

    monkey.patch_all()

import click  # noqa: E402
import orjson

from atp_bridge.cache_cli import cache
from atp_bridge.config import CONFIG_HELP, load_config, resolve_path
from atp_bridge.errors import ConfigError, mask
from atp_bridge.fulfillment.cli import fulfillment, fulfillment_emulator
from atp_bridge.holds_cli import holds


class ConfigProblem(click.ClickException):
    """The configuration is invalid: one line per problem, with file and key."""

    def __init__(self, path, error: ConfigError):
        self.problems = error.problems
        lines = "\n".join(f"  {p}" for p in error.problems)
        super().__init__(f"invalid configuration {path} ({len(error.problems)} problem"
                         f"{'s' if len(error.problems) != 1 else ''}):\n{lines}\n"
                         f"Fix these keys and run `atp-bridge check-config` again.")


def echo(text: str = "", err: bool = False) -> None:
    """``click.echo`` with every secret masked: what the CLI prints may quote
    config values and adapter errors."""
    click.echo(mask(text), err=err)


def mask_log_lines() -> None:
    """Send the ``atp_bridge`` warnings of a CLI command to stderr through
    :class:`~atp_bridge.logs.MaskingFormatter`: unhandled, they would reach
    Python's last-resort handler, which prints them as they are."""
    from atp_bridge.logs import MaskingFormatter

    logger = logging.getLogger("atp_bridge")
    if logging.getLogger().handlers or logger.handlers:
        return  # the host (pytest, an embedding app) configured logging
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(MaskingFormatter())
    logger.addHandler(handler)


def load_or_exit(path):
    """The loaded config, or a :class:`ConfigProblem` (exit 1, every problem listed)."""
    try:
        return load_config(path)
    except ConfigError as e:
        raise ConfigProblem(resolve_path(path), e) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="atp-bridge")
def main():
    """NewStore External Availability Webhook (Tier-2 OMS) for your ATP sources."""


@main.command()
@click.option("--config", "config_path", type=click.Path(), help=CONFIG_HELP)
@click.option("--bind", help="Address to listen on: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N "
                             "(default $ATP_BRIDGE_BIND or 127.0.0.1:8080).")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes (default $WEB_CONCURRENCY or 2).")
@click.option("--connections", type=click.IntRange(min=1),
              help="Connections each worker serves at once (default $ATP_BRIDGE_WORKER_CONNECTIONS or 1000).")
def serve(config_path, bind, workers, connections):
    """Run the webhook under gunicorn."""
    try:  # reads the gunicorn settings from the environment
        from atp_bridge.server import CannotListen, cleanup_metrics_dir, prepare_metrics_dir, run
    except ValueError as e:  # a malformed ATP_BRIDGE_* / WEB_CONCURRENCY value, named in e
        raise click.ClickException(f"{e}; fix the environment variable") from None
    from atp_bridge import gunicorn_conf

    if bind is not None:
        try:
            bind = gunicorn_conf.parse_bind(bind)
        except ValueError as e:
            raise click.ClickException(f"--bind {bind!r}: {e}") from None
    metrics_dir = prepare_metrics_dir()  # before load_or_exit imports prometheus_client
    try:
        path = resolve_path(config_path)
        load_or_exit(path)  # fail fast, with the check-config message, before forking workers
        # a missing data file is logged by each worker's create_app, as a JSON warning
        try:
            run(str(path), bind=bind, workers=workers, connections=connections)
        except CannotListen as e:
            raise click.ClickException(f"{_bind_name(bind)}: {e}") from None
    finally:
        cleanup_metrics_dir(*metrics_dir)


def _bind_name(bind: str | None) -> str:
    """Where the address ``serve`` listens on came from, for its error line."""
    if bind is not None:
        return f"--bind {bind!r}"
    from atp_bridge import gunicorn_conf

    if (os.environ.get("ATP_BRIDGE_BIND") or "").strip():
        return f"ATP_BRIDGE_BIND={gunicorn_conf.bind!r}"
    return f"default bind {gunicorn_conf.bind!r} (set --bind or ATP_BRIDGE_BIND)"


@main.command("check-config")
@click.option("--config", "config_path", type=click.Path(), help=CONFIG_HELP)
@click.option("--strict", is_flag=True,
              help="Exit 1 on warnings too (a data file that does not exist yet).")
def check_config(config_path, strict):
    """Validate the configuration; print every problem with file and key.

    Problems exit 1. Warnings (a data file that does not exist yet, which may
    arrive after start) are printed and exit 0, or 1 with --strict.
    """
    from atp_bridge.adapters.base import config_warnings

    config = load_or_exit(config_path)
    warnings = config_warnings(config)
    if not (warnings and strict):
        auth = f"{len(config.api_keys)} API key(s)" if config.api_keys else "NO API KEYS (auth disabled)"
        echo(f"OK {config.source}: {len(config.adapters)} adapter(s), {auth}, "
             f"merge={config.merge}, on_error={config.on_error}, deadline_ms={config.deadline_ms}")
        rules = _rules_summary(config)
        if rules:
            echo(f"  rules: {rules}")
        for i, a in enumerate(config.adapters, 1):
            via = f", upstream={a.upstream}" if a.upstream else ""
            echo(f"  {i}. {a.name} (type={a.type}, locations={','.join(a.locations)}, "
                 f"match_on={a.match_on}{via}) from {a.source}")
    if not warnings:
        return
    for w in warnings:
        echo(f"WARNING {w}", err=True)
    count = f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
    if strict:
        raise click.ClickException(f"{count} (exit 1: --strict makes warnings errors)")
    echo(f"{count} (exit 0: serve starts anyway and a data file may arrive after start; "
         f"--strict makes {'this an error' if len(warnings) == 1 else 'these errors'})", err=True)


def _rules_summary(config) -> str:
    """What the ATP rules of ``config`` amount to, for check-config's OK line."""
    from atp_bridge.rules import Rules

    rules = Rules(config)  # not started: no file is watched
    parts = []
    ss = rules.safety
    if ss.size or ss.default:
        parts.append(f"safety stock (default {ss.default:g}, {len(ss.locations)} location, "
                     f"{len(ss.products)} product, {sum(map(len, ss.pairs.values()))} pair rules)")
    if rules.bundles:
        parts.append(f"{len(rules.bundles)} bundle(s)")
    if rules.caps:
        parts.append("caps")
    if config.holds:
        parts.append("holds")
    return ", ".join(parts)


@main.command()
@click.option("--config", "config_path", type=click.Path(), help=CONFIG_HELP)
@click.option("--product", "products", multiple=True, required=True,
              help="Product id (used as product_id and external_identifier); repeatable.")
@click.option("--location", "locations", multiple=True, required=True, help="Fulfillment location; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def query(config_path, products, locations, as_json):
    """Ask the configured adapters directly; print each answer and the merge."""
    from atp_bridge.bridge import Bridge

    config = load_or_exit(config_path)
    mask_log_lines()
    try:
        bridge = Bridge.from_config(config)
    except ConfigError as e:
        raise ConfigProblem(resolve_path(config_path), e) from None
    except Exception as e:  # an adapter that cannot start: say why, masked, without a traceback
        raise click.ClickException(mask(f"cannot start the adapters: {type(e).__name__}: {e}")) from None
    from atp_bridge.query import render, report

    try:  # one pass through the bridge: what each adapter said is what was merged
        out, answer = report(bridge, list(products), list(locations))
    finally:
        bridge.close()
    if as_json:
        echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode("utf-8"))
        sys.exit(2 if answer.degraded else 0)
    for line in render(out, config.merge):
        echo(line)
    if answer.degraded:
        echo(f"DEGRADED: {answer.reason} (NewStore would get atp 0)", err=True)
        sys.exit(2)


main.add_command(fulfillment)
main.add_command(fulfillment_emulator)
main.add_command(cache)
main.add_command(holds)

if __name__ == "__main__":  # pragma: no cover
    main()
