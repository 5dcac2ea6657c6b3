"""``atp-bridge fulfillment ...``, and ``atp-bridge fulfillment-emulator`` from
:mod:`.emulator_cli`.

The main ``atp-bridge`` group adds both with ``main.add_command(...)``; this
module does not know about it. Every command prints a human sentence by
default and one JSON document on stdout with ``--json``. Failures raise a
:class:`FulfillmentCommandError` (a ``click.ClickException``): what failed,
then how to fix it, exit status 1 (as JSON on stderr with ``--json``).
"""
from __future__ import annotations

import dataclasses
import functools
import json as jsonlib
import sys

import click

from . import errors as e
from .cli_auth import AUTH_PARAMS, auth_options, build_client, rate_limit_note
from .cli_hints import hint_for as _hint_for
from .client import FulfillmentClient
from .emulator_cli import fulfillment_emulator, parse_bind  # noqa: F401 (atp_bridge.cli adds it)
from .holds_link import HoldNotRecorded, reject_and_hold
from .models import REJECTION_REASONS, LineItem, MissingItems, ShipmentInfo


class FulfillmentCommandError(click.ClickException):
    """A fulfillment command failed; ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str = "", *, as_json: bool = False,
                 details: dict | None = None):
        super().__init__(message)
        self.hint = hint
        self.as_json = as_json
        self.details = details or {}

    def format_message(self) -> str:
        return f"{self.message}\n  Fix: {self.hint}" if self.hint else self.message

    def show(self, file=None) -> None:
        if not self.as_json:
            return super().show(file)
        body = {"error": {"message": self.message, "hint": self.hint, **self.details}}
        click.echo(jsonlib.dumps(body), file=file or sys.stderr)


class MissingSettingError(FulfillmentCommandError):
    """``--url`` or the token is missing."""


class ApiCallError(FulfillmentCommandError):
    """NewStore (or the emulator) answered with an error."""


class ConnectionFailedError(FulfillmentCommandError):
    """No answer came back."""


def _api_command(action: str):
    """Add the connection options (:mod:`.cli_auth`), ``--json`` and error
    translation to a command. The wrapped function gets ``client`` and
    returns ``(human_text, json_obj)``."""
    def decorate(fn):
        @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
        @auth_options
        @functools.wraps(fn)
        def command(as_json, **kwargs):
            settings = {k: kwargs.pop(k) for k in AUTH_PARAMS}
            if not settings["url"]:
                raise MissingSettingError(f"{action}: no API URL.",
                                          "pass --url or set NEWSTORE_URL.", as_json=as_json)
            if not settings["token"] and not (settings["client_id"] or settings["client_secret"]):
                raise MissingSettingError(
                    f"{action}: no access token.", "set NEWSTORE_TOKEN or pass --token, or use "
                    "an API client: NEWSTORE_CLIENT_ID, NEWSTORE_CLIENT_SECRET, NEWSTORE_TENANT.",
                    as_json=as_json)
            waits: list[float] = []
            try:
                client = build_client(settings, waits)
            except ValueError as err:
                raise MissingSettingError(f"{action}: {err}.", "see `--help` for the "
                                          "credential options.", as_json=as_json) from None
            with client:
                try:
                    human, data = fn(client, **kwargs)
                except e.FulfillmentError as err:
                    cls = (ConnectionFailedError if isinstance(err, e.FulfillmentTransportError)
                           else ApiCallError)
                    hint = getattr(err, "hint", "") or _hint_for(err)  # a command's own first
                    note = f" (before that: {rate_limit_note(waits)})" if waits else ""
                    raise cls(f"{action} failed: {err}{note}", hint, as_json=as_json,
                              details={"status": err.status, "error_code": err.error_code,
                                       "error_description": err.error_description,
                                       "conflicting_items": list(err.conflicting_items),
                                       "rate_limit_waits_s": waits},
                              ) from err
            if waits:
                data = {**data, "rate_limit_waits_s": waits}
                if not as_json:
                    click.echo(f"Note: {rate_limit_note(waits)}.", err=True)
            click.echo(jsonlib.dumps(data, indent=2) if as_json else human)
        return command
    return decorate


@click.group("fulfillment")
def fulfillment():
    """Accept, cancel, reject and ship NewStore fulfillment requests."""


@fulfillment.command()
@click.argument("uuid")
@_api_command("accept")
def accept(client: FulfillmentClient, uuid: str):
    """Acknowledge fulfillment request UUID (intent to fulfill)."""
    r = client.accept(uuid)
    return (f"Accepted fulfillment request {uuid} (HTTP {r.status}).",
            {"action": "accept", "uuid": uuid, "status": r.status})


@fulfillment.command()
@click.argument("uuid")
@click.argument("product_ids", nargs=-1, required=True)
@_api_command("cancel")
def cancel(client: FulfillmentClient, uuid: str, product_ids: tuple[str, ...]):
    """Cancel one unit per PRODUCT_ID (cheapest first) of request UUID."""
    r = client.cancel_items(uuid, product_ids)
    return (f"Cancelation of {len(product_ids)} unit(s) of {uuid} accepted (HTTP {r.status}).",
            {"action": "cancel", "uuid": uuid, "status": r.status,
             "product_ids": list(product_ids)})


@fulfillment.command()
@click.argument("uuid")
@click.argument("product_ids", nargs=-1)
@click.option("--reason", required=True, type=click.Choice(REJECTION_REASONS))
@click.option("--all", "all_items", is_flag=True, help="Reject every open unit.")
@click.option("--hold-location", metavar="LOC",
              help="With --reason no_inventory: hold these products at zero ATP at LOC in the "
                   "webhook (needs `holds:` in the atp-bridge config).")
@click.option("--config", "config_path", type=click.Path(),
              help="atp-bridge config with the `holds:` block (default $ATP_BRIDGE_CONFIG).")
@_api_command("reject")
def reject(client: FulfillmentClient, uuid: str, product_ids: tuple[str, ...],
           reason: str, all_items: bool, hold_location: str | None, config_path: str | None):
    """Reject one unit per PRODUCT_ID (cheapest first), or every open unit with --all."""
    if bool(product_ids) == all_items:
        raise click.UsageError("give PRODUCT_IDs or --all, not both and not neither.")
    ids = ("",) if all_items else product_ids
    items = [MissingItems(ids, reason)]
    held = None
    if hold_location:
        holds = _hold_store(config_path)
        try:
            r, held = reject_and_hold(client, holds, uuid, items, location=hold_location)
        except HoldNotRecorded as e:
            raise click.ClickException(
                f"Rejection ({reason}) of {_what(all_items, ids)} of {uuid} accepted by NewStore "
                f"(HTTP {e.receipt.status}), but {e}. Do not run reject again: it would reject more "
                f"units. Until a hold is recorded the webhook goes on promising what the adapters "
                f"say at {hold_location}.") from None
        finally:
            holds.close()
    else:
        r = client.reject_items(uuid, items)
    what = _what(all_items, ids)
    text = f"Rejection ({reason}) of {what} of {uuid} accepted (HTTP {r.status})."
    data = {"action": "reject", "uuid": uuid, "status": r.status, "reason": reason,
            "product_ids": [] if all_items else list(ids), "all": all_items}
    if held is not None:
        text += f" Zero-ATP hold at {hold_location}: {', '.join(held) or 'nothing to hold'}."
        data["held"] = {"location": hold_location, "product_ids": held}
    return text, data


def _what(all_items: bool, ids) -> str:
    return "every open unit" if all_items else f"{len(ids)} unit(s)"


def _hold_store(config_path):
    from atp_bridge.config import load_config
    from atp_bridge.errors import ConfigError
    from atp_bridge.holds import HoldStore

    try:
        config = load_config(config_path)
    except ConfigError as err:
        raise click.ClickException("--hold-location: invalid atp-bridge config:\n  "
                                   + "\n  ".join(err.problems)) from None
    if not config.holds:
        raise click.ClickException(f"--hold-location: {_no_holds_block(config_path)}")
    return HoldStore.from_config(config.holds)


def _no_holds_block(config_path) -> str:
    """Where the missing ``holds:`` block goes, for the config layout in use."""
    from atp_bridge.config import ENV_VAR, default_config_path, resolve_path

    path = resolve_path(config_path)
    block = "`holds: {url: redis://...}`"
    if path == default_config_path():
        return (f"the embedded sample config is in use (no --config, no ${ENV_VAR}) and it has "
                f"no `holds:` block; pass --config (or set ${ENV_VAR}) with your own config: a "
                f"directory, with {block} in its bridge.yaml, or one YAML file, with {block} "
                f"at its top level.")
    if not path.is_dir():
        return f"{path} has no `holds:` block; add {block} at the top level of {path}."
    bridge_file = path / "bridge.yaml"
    if bridge_file.exists():
        return f"{bridge_file} has no `holds:` block; add {block} to {bridge_file}."
    return (f"{path} has no bridge.yaml, so no `holds:` block; create {bridge_file} with "
            f"{block} (the server-wide keys of a config directory go there).")


@fulfillment.command()
@click.argument("uuid")
@click.argument("product_ids", nargs=-1, required=True)
@click.option("--carrier", required=True, help="e.g. FEDEX")
@click.option("--tracking-code", required=True)
@click.option("--tracking-url")
@click.option("--service-level", "carrier_service_level", help="e.g. FEDEX_GROUND")
@_api_command("ship")
def ship(client: FulfillmentClient, uuid: str, product_ids: tuple[str, ...], carrier: str,
         tracking_code: str, tracking_url: str | None, carrier_service_level: str | None):
    """Ship one unit per PRODUCT_ID (most expensive first) in one package."""
    info = ShipmentInfo(carrier, tracking_code, tracking_url, carrier_service_level)
    r = client.ship(uuid, [LineItem(product_ids, info)])
    verdict = ("already received before: duplicate, nothing changed" if r.duplicate
               else "accepted")
    return (f"Shipment of {len(product_ids)} unit(s) of {uuid} {verdict} (HTTP {r.status}).",
            {"action": "ship", "uuid": uuid, "status": r.status, "duplicate": r.duplicate,
             "product_ids": list(product_ids), "shipment": info.to_json()})


@fulfillment.command()
@click.argument("uuid")
@_api_command("resend")
def resend(client: FulfillmentClient, uuid: str):
    """Ask NewStore to send fulfillment request UUID again."""
    r = client.resend(uuid)
    return (f"Resend of {uuid} requested (HTTP {r.status}).",
            {"action": "resend", "uuid": uuid, "status": r.status})


def _or_none(call, uuid):
    try:
        return call(uuid)
    except e.NotFoundError:
        return None


@fulfillment.command()
@click.argument("uuid")
@click.option("--units", is_flag=True,
              help="Also list every unit with its item id, price and status (emulator only: "
                   "GET /_emulator/fulfillment_requests/UUID).")
@_api_command("status")
def status(client: FulfillmentClient, uuid: str, units: bool):
    """Show shipped, canceled and rejected units of UUID."""
    shipped = _or_none(client.get_shipment, uuid)
    canceled = _or_none(client.get_canceled_items, uuid)
    rejected = _or_none(client.get_rejected_items, uuid)
    lines = [f"Fulfillment request {uuid}"]
    lines += _section("Shipped", shipped and shipped.successful_shipments, lambda s: (
        f"{s.product_id}  {' '.join(filter(None, (s.carrier, s.carrier_service_level)))}  "
        f"tracking {s.tracking_code}  at {s.accepted_at}"))
    if shipped and shipped.failed_shipments:
        lines += _section("Failed shipments", shipped.failed_shipments,
                          lambda s: f"{s.product_id}  {s.error_code}  at {s.received_at}")
    lines += _section("Canceled", canceled and canceled.canceled_items,
                      lambda c: f"{c.product_id}  item {c.item_id}  at {c.accepted_at}")
    lines += _section("Rejected", rejected and rejected.rejected_items,
                      lambda r: f"{r.product_id}  {r.rejection_reason}  at {r.accepted_at}")
    data = {"uuid": uuid,
            "shipment": _plain(shipped, "successful_shipments", "failed_shipments"),
            "canceled_items": _plain(canceled, "canceled_items"),
            "rejected_items": _plain(rejected, "rejected_items")}
    if units:
        every = _emulator_units(client, uuid)
        lines += _section("Units in the emulator", every, lambda u: (
            f"{u.product_id}  {u.price:.2f}  {u.status}"
            f"{f' ({u.rejection_reason})' if u.rejection_reason else ''}  item {u.item_id}"))
        data["units"] = [dataclasses.asdict(u) for u in every]
    return "\n".join(lines), data


def _emulator_units(client: FulfillmentClient, uuid: str):
    try:
        return client.emulator_units(uuid)
    except e.NotFoundError as err:
        err.hint = ("--units reads GET /_emulator/fulfillment_requests/UUID, which only the "
                    "emulator has: check the uuid and that --url points at the emulator.")
        raise


def _section(title, records, fmt) -> list[str]:
    if not records:
        return [f"{title}: none yet"]
    return [f"{title} ({len(records)}):"] + [f"  {fmt(r)}" for r in records]


def _plain(result, *keys):
    if result is None:
        return None
    data = dataclasses.asdict(result)
    return {k: data[k] for k in keys} if len(keys) > 1 else data[keys[0]]
