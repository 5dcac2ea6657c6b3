"""In-memory state and rules of the fulfillment emulator (no Flask here).

Every item of a fulfillment request is ``open``, ``shipped``, ``rejected`` or
``canceled``. A product id in a payload stands for ONE item of that product;
repeat it to address several. Rules, with the spec's words where it has them:

* cancel and reject pick the cheapest open item of a product first, ship the
  most expensive; equal prices are broken by a seedable ``random.Random``.
* Every call is all-or-nothing: it is validated completely before any item
  changes state.
* The request counts as *rejected* once it has no open item, nothing shipped
  and at least one rejected item; as *fully shipped* once it has no open item
  and at least one shipped.
* accept: 400 ``fulfillment_request_invalid`` for an unknown id,
  ``already_rejected``, ``already_shipped`` once any item shipped; otherwise
  200, and accepting again is a no-op.
* reject items: ``already_rejected``, ``already_shipped`` (fully shipped),
  ``invalid_item`` for a product not in the request (or more units than it
  has) and for empty product ids that are not the one sole id of the one
  sole group, ``item_already_shipped|rejected|canceled`` when no open unit is
  left (all 400). A partly shipped request can still have the rest rejected.
* cancel: 404 for an unknown id, 400 ``already_rejected`` / ``invalid_item``,
  409 ``item_already_*`` when no open unit is left.
* deprecated rejection: like reject items, but ``already_shipped`` as soon as
  any item shipped ("cannot reject a request after one or more of its items
  have been shipped"); ``cannot_fulfill`` rejects every open item and takes no
  ids, ``no_inventory`` needs ids.
* ship: a unit whose product already has a shipped item with *identical*
  shipment data is a duplicate; if every unit is a duplicate the answer is
  200 and nothing changes. Otherwise each new unit ships the most expensive
  open item. No open item left and a shipped one with other data: 400
  ``shipment_conflict``. So two packages of the same product must carry
  different tracking codes, or ship together in one line item.
* When units of several products fail for different reasons, the code is
  chosen in the order shipped > rejected > canceled and ``conflicting_items``
  names every failing product id.
"""
from __future__ import annotations

import random
import threading
import uuid as uuidlib

from . import errors as e
from .state import (
    CANCELED, OPEN, REJECTED, SHIPPED, FulfillmentRequest, Item, check_empty_ids, now_iso,
    state_error, unique,
)


class FulfillmentStore:
    """Thread-safe registry of fulfillment requests; every public method takes the lock."""

    def __init__(self, seed: int | None = None):
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._requests: dict[str, FulfillmentRequest] = {}
        self._seq = 0

    # -- test data ---------------------------------------------------------

    def create(self, items: list[dict], uuid: str | None = None) -> FulfillmentRequest:
        """Add a request; ``items`` are dicts with ``product_id`` and ``price``."""
        with self._lock:
            uuid = uuid or self._new_id()
            if uuid in self._requests:
                raise e.FulfillmentAPIError(f"fulfillment request {uuid} already exists",
                                            status=409, error_code="already_exists")
            req = FulfillmentRequest(uuid, [
                Item(self._new_id(), i["product_id"], float(i["price"])) for i in items])
            self._requests[uuid] = req
            return req

    def snapshot(self, uuid: str) -> dict:
        """Everything the emulator knows about one request, for tests."""
        with self._lock:
            req = self._get(uuid, e.NotFoundError)
            return {
                "uuid": req.uuid, "acknowledged_at": req.acknowledged_at,
                "resend_count": req.resend_count,
                "items": [{"item_id": i.item_id, "product_id": i.product_id,
                           "price": i.price, "status": i.status,
                           "rejection_reason": i.rejection_reason,
                           "shipment": i.shipment} for i in req.items]}

    def _new_id(self) -> str:
        return str(uuidlib.UUID(int=self._rng.getrandbits(128), version=4))

    def _get(self, uuid: str, missing: type[e.FulfillmentAPIError]) -> FulfillmentRequest:
        req = self._requests.get(uuid)
        if req is None:
            if missing is e.NotFoundError:
                raise e.NotFoundError(f"fulfillment request {uuid} was not found")
            raise missing(f"fulfillment request {uuid} is not known to this service")
        return req

    # -- picking -----------------------------------------------------------

    def _pick(self, req: FulfillmentRequest, product_ids: list[str], cheapest: bool,
              conflict_status: int) -> list[Item]:
        """One open item per product id, or raise without changing anything."""
        chosen: list[Item] = []
        unknown: list[str] = []
        failed: dict[str, set[str]] = {}
        taken: set[str] = set()
        for pid in product_ids:
            units = [i for i in req.items if i.product_id == pid and i.item_id not in taken]
            if not units:
                unknown.append(pid)
                continue
            open_units = [i for i in units if i.status == OPEN]
            if not open_units:
                failed.setdefault(pid, set()).update(i.status for i in units)
                continue
            item = self._cheapest_or_dearest(open_units, cheapest)
            taken.add(item.item_id)
            chosen.append(item)
        if unknown:
            raise unknown_items_error(unknown)
        if failed:
            raise state_error(failed, conflict_status)
        return chosen

    def _cheapest_or_dearest(self, items: list[Item], cheapest: bool) -> Item:
        best = min(i.price for i in items) if cheapest else max(i.price for i in items)
        return self._rng.choice([i for i in items if i.price == best])

    def _mark(self, items: list[Item], status: str, **fields) -> None:
        stamp = now_iso()
        for item in items:
            self._seq += 1
            item.status, item.seq = status, self._seq
            item.received_at = item.accepted_at = stamp
            for k, v in fields.items():
                setattr(item, k, v)

    # -- actions -----------------------------------------------------------

    def accept(self, uuid: str) -> None:
        with self._lock:
            req = self._get(uuid, e.FulfillmentRequestInvalidError)
            self._check_rejectable(req, any_shipped_blocks=True)  # the same two refusals
            req.acknowledged_at = req.acknowledged_at or now_iso()

    def resend(self, uuid: str) -> None:
        with self._lock:
            self._get(uuid, e.NotFoundError).resend_count += 1

    def cancel(self, uuid: str, product_ids: list[str]) -> None:
        with self._lock:
            req = self._get(uuid, e.NotFoundError)
            _refuse_rejected(req)
            items = self._pick(req, product_ids, cheapest=True, conflict_status=409)
            self._mark(items, CANCELED)

    def reject_items(self, uuid: str, groups: list[tuple[list[str], str]]) -> None:
        """``groups``: ``(product_ids, reason)`` pairs, already shape-checked."""
        with self._lock:
            req = self._get(uuid, e.FulfillmentRequestInvalidError)
            everything = check_empty_ids(groups)
            self._check_rejectable(req, any_shipped_blocks=False)
            if everything:
                self._mark(_open_items(req), REJECTED, rejection_reason=groups[0][1])
                return
            picks = self._pick(req, [p for ids, _ in groups for p in ids], cheapest=True,
                               conflict_status=400)
            reasons = [r for ids, r in groups for _ in ids]
            for item, reason in zip(picks, reasons):
                self._mark([item], REJECTED, rejection_reason=reason)

    def reject_request(self, uuid: str, reason: str, product_ids: list[str]) -> None:
        """Deprecated whole-request rejection; ids only for ``no_inventory``."""
        with self._lock:
            req = self._get(uuid, e.FulfillmentRequestInvalidError)
            self._check_rejectable(req, any_shipped_blocks=True)
            if reason == "cannot_fulfill":
                items = _open_items(req)
            else:
                items = self._pick(req, product_ids, cheapest=True, conflict_status=400)
            self._mark(items, REJECTED, rejection_reason=reason)
            stamp = now_iso()
            previous = req.rejection["missing_product_ids"] if req.rejection else []
            req.rejection = {"rejection_reason": reason,
                             "missing_product_ids": previous + [i.product_id for i in items],
                             "received_at": stamp, "accepted_at": stamp}

    def _check_rejectable(self, req: FulfillmentRequest, any_shipped_blocks: bool) -> None:
        _refuse_rejected(req)
        if req.is_fully_shipped or (any_shipped_blocks and req.has(SHIPPED)):
            raise e.AlreadyShippedError("The shipment of the fulfillment request has started.")

    def ship(self, uuid: str, line_items: list[tuple[list[str], dict]]) -> bool:
        """Apply a shipment; returns True when it was a pure duplicate (200)."""
        with self._lock:
            req = self._get(uuid, e.FulfillmentRequestInvalidError)
            _refuse_rejected(req)
            taken: set[str] = set()
            new: list[tuple[Item, dict]] = []
            unknown: list[str] = []
            failed: dict[str, set[str]] = {}
            for product_ids, info in line_items:
                for pid in product_ids:
                    units = [i for i in req.items
                             if i.product_id == pid and i.item_id not in taken]
                    same = [i for i in units if i.status == SHIPPED and i.shipment == info]
                    open_units = [i for i in units if i.status == OPEN]
                    if same:
                        taken.add(same[0].item_id)
                    elif open_units:
                        item = self._cheapest_or_dearest(open_units, cheapest=False)
                        taken.add(item.item_id)
                        new.append((item, info))
                    elif units:
                        failed.setdefault(pid, set()).update(i.status for i in units)
                    else:
                        unknown.append(pid)
            if unknown:
                raise unknown_items_error(unknown)
            if failed:
                if any(SHIPPED in states for states in failed.values()):
                    raise e.ShipmentConflictError(
                        "The shipment information conflicts with shipment information "
                        "posted earlier for these items.", conflicting_items=sorted(failed))
                raise state_error(failed, 400)
            for item, info in new:
                self._mark([item], SHIPPED, shipment=dict(info))
            return not new

    # -- status ------------------------------------------------------------

    def _done(self, uuid: str, status: str, what: str) -> list[Item]:
        with self._lock:
            req = self._get(uuid, e.NotFoundError)
            items = sorted((i for i in req.items if i.status == status), key=lambda i: i.seq)
            if not items:
                raise e.NotFoundError(f"The {what} status is not yet available for "
                                      f"fulfillment request {uuid}.")
            return items

    def canceled_items(self, uuid: str) -> dict:
        return {"canceled_items": [
            {"accepted_at": i.accepted_at, "product_id": i.product_id,
             "item_id": i.item_id, "received_at": i.received_at}
            for i in self._done(uuid, CANCELED, "cancelation")]}

    def rejected_items(self, uuid: str) -> dict:
        return {"rejected_items": [
            {"accepted_at": i.accepted_at, "product_id": i.product_id,
             "received_at": i.received_at, "rejection_reason": i.rejection_reason}
            for i in self._done(uuid, REJECTED, "rejection")]}

    def shipment(self, uuid: str) -> dict:
        return {"failed_shipments": [], "successful_shipments": [
            {"accepted_at": i.accepted_at, **i.shipment, "product_id": i.product_id,
             "received_at": i.received_at}
            for i in self._done(uuid, SHIPPED, "shipment")]}

    def rejection(self, uuid: str) -> dict:
        with self._lock:
            req = self._get(uuid, e.NotFoundError)
            if req.rejection is None:
                raise e.NotFoundError(f"The rejection status is not yet available for "
                                      f"fulfillment request {uuid}.")
            return dict(req.rejection)


def _refuse_rejected(req: FulfillmentRequest) -> None:
    if req.is_rejected:
        raise e.AlreadyRejectedError("The fulfillment request has already been rejected.")


def _open_items(req: FulfillmentRequest) -> list[Item]:
    """Every open item, or the 400 naming each product's state when none is open."""
    items = [i for i in req.items if i.status == OPEN]
    if not items:
        raise state_error({i.product_id: {i.status} for i in req.items}, 400)
    return items


def unknown_items_error(product_ids: list[str]) -> e.InvalidItemError:
    """The 400 for product ids the request does not have (or not that many units of)."""
    return e.InvalidItemError("product ids do not belong to the fulfillment request (or name more "
                              "units than it has)", conflicting_items=unique(product_ids))
