"""``atp-bridge holds``: stop promising an item now, list and lift holds.

Manual holds live in the same Redis set as the holds a ``no_inventory``
rejection records (the config's ``holds:`` block); every worker sees a change
within ``holds.refresh_s``.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

import click
import orjson

from atp_bridge.config import CONFIG_HELP
from atp_bridge.errors import mask


class HoldsProblem(click.ClickException):
    """Redis could not be reached or the config has no ``holds:`` block."""


def _store(config_path):
    from atp_bridge.cli import load_or_exit  # here: atp_bridge.cli imports this module
    from atp_bridge.fulfillment.cli import _no_holds_block
    from atp_bridge.holds import HoldStore

    config = load_or_exit(config_path)
    if not config.holds:
        raise HoldsProblem(_no_holds_block(config_path))
    return HoldStore.from_config(config.holds), config


def _run(config_path, action):
    """``action(store)`` with Redis errors said in one line, masked."""
    from atp_bridge.holds import HoldError

    store, config = _store(config_path)
    try:
        return action(store)
    except HoldError as e:
        raise HoldsProblem(mask(f"{e} Check that Redis is running and holds.url in {config.source}.")) from None
    finally:
        store.client.close()


_PRODUCT = click.option("--product", "products", multiple=True, required=True,
                        help="NewStore product_id to hold; repeatable.")
_LOCATION = click.option("--location", required=True,
                         help="Fulfillment location, or '*' for every location.")


@click.group()
def holds():
    """Hold items at zero ATP at once, list holds, lift them."""


@holds.command()
@click.option("--config", "config_path", type=click.Path(), help=CONFIG_HELP)
@_PRODUCT
@_LOCATION
@click.option("--ttl", "ttl_s", type=click.FloatRange(min=1), help="Seconds until the hold lifts itself "
              "(default: never; lift it with `holds remove`).")
@click.option("--reason", default="", help="Why: shown by `holds list` and `query`.")
def add(config_path, products, location, ttl_s, reason):
    """Answer atp 0 for these products at LOCATION until the hold expires or is removed."""
    n = _run(config_path, lambda s: s.add(location, products, ttl_s=ttl_s, reason=reason))
    where = "every location" if location == "*" else location
    until = "until removed" if ttl_s is None else f"for {ttl_s:g} s"
    click.echo(f"held {n} product(s) at {where} {until}: {', '.join(products)}"
               + (f" (reason: {reason})" if reason else ""))


@holds.command()
@click.option("--config", "config_path", type=click.Path(), help=CONFIG_HELP)
@_PRODUCT
@_LOCATION
def remove(config_path, products, location):
    """Lift holds (manual or from a rejection) on these products at LOCATION ('*': the every-location hold)."""
    n = _run(config_path, lambda s: s.release(location, products))
    if n:
        click.echo(f"removed {n} hold(s) at {location}")
    else:
        click.echo(f"no hold on {', '.join(products)} at {location} (nothing removed; "
                   f"`atp-bridge holds list` shows what is held)")


@holds.command("list")
@click.option("--config", "config_path", type=click.Path(), help=CONFIG_HELP)
@click.option("--product", help="Only this product_id.")
@click.option("--location", help="Only holds at this location (and the every-location ones).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(config_path, product, location, as_json):
    """Every hold in force: product, location, kind, expiry, reason."""
    rows = _run(config_path, lambda s: s.listing())
    rows = [h for h in rows if (product is None or h["product"] == product)
            and (location is None or h["location"] in (location, "*"))]
    if as_json:
        click.echo(mask(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode()))
        return
    if not rows:
        click.echo("no holds in force")
        return
    now = time.time()
    click.echo(f"{'PRODUCT':<24} {'LOCATION':<12} {'KIND':<10} {'EXPIRES':<26} REASON")
    for h in rows:
        expires = ("never" if h["expires"] is None else
                   f"{datetime.fromtimestamp(h['expires'], timezone.utc):%Y-%m-%d %H:%M:%S}Z "
                   f"(in {max(0, h['expires'] - now):.0f} s)")
        click.echo(mask(f"{h['product']:<24} {h['location']:<12} {h['kind']:<10} {expires:<26} "
                        f"{h['reason']}"))
    click.echo(f"{len(rows)} hold(s)")
