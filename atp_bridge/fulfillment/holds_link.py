"""The ATP link: a ``no_inventory`` rejection becomes a zero-ATP hold.

When the warehouse tells NewStore it has none of a product, NewStore should
stop promising that product at that location at once, not when the next
stock file arrives. :func:`reject_and_hold` rejects through the client and
then records a hold per rejected product in the
:class:`~atp_bridge.holds.HoldStore` the webhook reads.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from atp_bridge.holds import HoldError, HoldStore

from .client import FulfillmentClient
from .models import MissingItems, Receipt

NO_INVENTORY = "no_inventory"


def _as_items(missing_items) -> list[MissingItems]:
    return [m if isinstance(m, MissingItems)
            else MissingItems(tuple(m.get("product_ids") or ()), m.get("reason", ""))
            for m in missing_items]


def reject_and_hold(client: FulfillmentClient, holds: HoldStore, uuid: str,
                    missing_items: Iterable[MissingItems | Mapping[str, Any]], *,
                    location: str, ttl_s: float | None = None) -> tuple[Receipt, list[str]]:
    """Reject items; hold every ``no_inventory`` product at ``location`` at zero ATP.

    The hold is recorded only after NewStore accepted the rejection. For the
    "every open item" form (an empty product id) the rejected product ids are
    read back from ``GET reject_items``. Returns the receipt and the held ids.
    """
    items = _as_items(missing_items)
    receipt = client.reject_items(uuid, items)
    no_inventory = [m for m in items if m.reason == NO_INVENTORY]
    held = {pid for m in no_inventory for pid in m.product_ids if pid}
    if any("" in m.product_ids for m in no_inventory):
        status = client.get_rejected_items(uuid)
        held |= {r.product_id for r in status.rejected_items
                 if r.rejection_reason == NO_INVENTORY and r.product_id}
    ids = sorted(held)
    try:
        holds.record(location, ids, ttl_s)
    except HoldError as e:  # NewStore already took the rejection: say so, do not hide it
        raise HoldNotRecorded(receipt, ids, location, e) from e
    return receipt, ids


class HoldNotRecorded(HoldError):
    """NewStore accepted the rejection (``receipt``) but the zero-ATP hold of
    ``product_ids`` at ``location`` could not be recorded (``cause``)."""

    def __init__(self, receipt: Receipt, product_ids: list[str], location: str, cause: Exception):
        self.receipt, self.product_ids, self.location, self.cause = receipt, product_ids, location, cause
        super().__init__(f"the zero-ATP hold of {', '.join(product_ids) or 'nothing'} at {location} "
                         f"was not recorded: {cause}")
