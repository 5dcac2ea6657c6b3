"""Data model of the fulfillment emulator and its pure rule helpers.

:mod:`.store` holds the lock and applies the rules; this module only knows
what an item and a request are and which error a failed pick becomes.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from . import errors as e

OPEN, SHIPPED, REJECTED, CANCELED = "open", "shipped", "rejected", "canceled"
_STATE_ERRORS = ((SHIPPED, e.ItemAlreadyShippedError), (REJECTED, e.ItemAlreadyRejectedError),
                 (CANCELED, e.ItemAlreadyCanceledError))


def now_iso() -> str:
    """UTC now in NewStore's format, e.g. ``2018-10-17T13:57:59.349425Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Item:
    """One unit of a fulfillment request."""

    item_id: str
    product_id: str
    price: float
    status: str = OPEN
    rejection_reason: str | None = None
    shipment: dict | None = None
    received_at: str | None = None
    accepted_at: str | None = None
    seq: int = 0  # order of the state change, for stable status listings


@dataclass
class FulfillmentRequest:
    """One fulfillment request and what has happened to it."""

    uuid: str
    items: list[Item]
    acknowledged_at: str | None = None
    resend_count: int = 0
    rejection: dict | None = None  # set by the deprecated rejection endpoint

    def has(self, status: str) -> bool:
        return any(i.status == status for i in self.items)

    @property
    def is_rejected(self) -> bool:
        return not self.has(OPEN) and not self.has(SHIPPED) and self.has(REJECTED)

    @property
    def is_fully_shipped(self) -> bool:
        return not self.has(OPEN) and self.has(SHIPPED)


def unique(values: list[str]) -> list[str]:
    """``values`` without repeats, first occurrence order kept."""
    return list(dict.fromkeys(values))


def state_error(failed: dict[str, set[str]], status: int) -> e.ItemAlreadyProcessedError:
    """The error for products with no open unit left; ``failed`` maps each
    product id to the states its units are in (shipped > rejected > canceled)."""
    for state, cls in _STATE_ERRORS:
        if any(state in states for states in failed.values()):
            return cls(f"No open item is left for these products: they are already {state}.",
                       status=status, conflicting_items=sorted(failed))
    raise AssertionError(f"no state error for {failed}")  # pragma: no cover


def check_empty_ids(groups: list[tuple[list[str], str]]) -> bool:
    """True for the "no specificity" case: one group whose only id is empty.
    Any other use of an empty id is ambiguous and fails with invalid_item."""
    ids = [p for product_ids, _ in groups for p in product_ids]
    if "" not in ids:
        return False
    if len(groups) == 1 and ids == [""]:
        return True
    raise e.InvalidItemError(
        "An empty product id addresses every item and must be the only product id of "
        "the only missing_items entry; do not mix it with other product ids.",
        conflicting_items=[p for p in ids if p])
