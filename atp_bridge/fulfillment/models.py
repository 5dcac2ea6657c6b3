"""Small frozen dataclasses for what goes to and comes from the API.

Timestamps stay the ISO-8601 strings NewStore sends (``...Z``); fields the
spec marks optional or leaves out of some samples default to ``None``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

#: The two rejection reasons the API accepts.
REJECTION_REASONS = ("no_inventory", "cannot_fulfill")


def _opt_str(data: Mapping, key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


@dataclass(frozen=True)
class ShipmentInfo:
    """Carrier and tracking data of one package."""

    carrier: str
    tracking_code: str
    tracking_url: str | None = None
    carrier_service_level: str | None = None

    def to_json(self) -> dict:
        """The ``shipment`` object of a line item, without unset fields."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class LineItem:
    """Products (one id per unit) shipped in one package."""

    product_ids: tuple[str, ...]
    shipment: ShipmentInfo

    def to_json(self) -> dict:
        return {"product_ids": list(self.product_ids), "shipment": self.shipment.to_json()}


@dataclass(frozen=True)
class MissingItems:
    """Products (one id per unit) rejected for one reason. ``("",)`` means
    every open item of the request (the spec's "no specificity" case)."""

    product_ids: tuple[str, ...]
    reason: str

    def to_json(self) -> dict:
        return {"product_ids": list(self.product_ids), "reason": self.reason}


@dataclass(frozen=True)
class Receipt:
    """The API took a call (``status`` 200 or 201); processing is asynchronous
    at NewStore, so check the matching status endpoint."""

    uuid: str
    status: int


@dataclass(frozen=True)
class ShipmentResult:
    """Answer to a shipment update. ``duplicate`` is True for a 200 (the same
    notification was received and processed before), False for a 201."""

    uuid: str
    status: int
    duplicate: bool


@dataclass(frozen=True)
class CanceledItem:
    """One entry of ``canceled_items``."""

    product_id: str
    item_id: str | None
    received_at: str | None
    accepted_at: str | None

    @classmethod
    def from_json(cls, data: Mapping) -> "CanceledItem":
        return cls(str(data.get("product_id", "")), _opt_str(data, "item_id"),
                   _opt_str(data, "received_at"), _opt_str(data, "accepted_at"))


@dataclass(frozen=True)
class RejectedItem:
    """One entry of ``rejected_items``."""

    product_id: str
    rejection_reason: str | None
    received_at: str | None
    accepted_at: str | None

    @classmethod
    def from_json(cls, data: Mapping) -> "RejectedItem":
        return cls(str(data.get("product_id", "")), _opt_str(data, "rejection_reason"),
                   _opt_str(data, "received_at"), _opt_str(data, "accepted_at"))


@dataclass(frozen=True)
class ShipmentRecord:
    """One entry of ``successful_shipments`` or ``failed_shipments``
    (only failed ones carry ``error_code``)."""

    product_id: str
    carrier: str | None
    carrier_service_level: str | None
    tracking_code: str | None
    tracking_url: str | None
    received_at: str | None
    accepted_at: str | None
    error_code: str | None = None

    @classmethod
    def from_json(cls, data: Mapping) -> "ShipmentRecord":
        return cls(str(data.get("product_id", "")), *(
            _opt_str(data, k) for k in (
                "carrier", "carrier_service_level", "tracking_code", "tracking_url",
                "received_at", "accepted_at", "error_code")))


@dataclass(frozen=True)
class EmulatorUnit:
    """One unit of a fulfillment request as the emulator's test endpoint shows
    it (``GET /_emulator/fulfillment_requests/<uuid>``; NewStore has no such view).
    ``status`` is ``open``, ``shipped``, ``canceled`` or ``rejected``."""

    item_id: str
    product_id: str
    price: float
    status: str
    rejection_reason: str | None = None

    @classmethod
    def from_json(cls, data: Mapping) -> "EmulatorUnit":
        return cls(str(data.get("item_id", "")), str(data.get("product_id", "")),
                   float(data.get("price") or 0), str(data.get("status", "")),
                   _opt_str(data, "rejection_reason"))


def _records(data: Mapping, key: str, parse) -> tuple:
    value = data.get(key) or []
    return tuple(parse(v) for v in value if isinstance(v, Mapping))


@dataclass(frozen=True)
class CancelationStatus:
    """``GET .../canceled_items``."""

    uuid: str
    canceled_items: tuple[CanceledItem, ...]

    @classmethod
    def from_json(cls, uuid: str, data: Mapping) -> "CancelationStatus":
        return cls(uuid, _records(data, "canceled_items", CanceledItem.from_json))


@dataclass(frozen=True)
class ItemRejectionStatus:
    """``GET .../reject_items``."""

    uuid: str
    rejected_items: tuple[RejectedItem, ...]

    @classmethod
    def from_json(cls, uuid: str, data: Mapping) -> "ItemRejectionStatus":
        return cls(uuid, _records(data, "rejected_items", RejectedItem.from_json))


@dataclass(frozen=True)
class RejectionStatus:
    """``GET .../rejection`` (deprecated endpoint)."""

    uuid: str
    rejection_reason: str | None
    missing_product_ids: tuple[str, ...]
    error_code: str | None
    received_at: str | None
    accepted_at: str | None

    @classmethod
    def from_json(cls, uuid: str, data: Mapping) -> "RejectionStatus":
        return cls(uuid, _opt_str(data, "rejection_reason"),
                   tuple(str(p) for p in data.get("missing_product_ids") or ()),
                   _opt_str(data, "error_code"), _opt_str(data, "received_at"),
                   _opt_str(data, "accepted_at"))


@dataclass(frozen=True)
class ShipmentStatus:
    """``GET .../shipment``."""

    uuid: str
    successful_shipments: tuple[ShipmentRecord, ...]
    failed_shipments: tuple[ShipmentRecord, ...]

    @classmethod
    def from_json(cls, uuid: str, data: Mapping) -> "ShipmentStatus":
        return cls(uuid, _records(data, "successful_shipments", ShipmentRecord.from_json),
                   _records(data, "failed_shipments", ShipmentRecord.from_json))


def as_line_items(line_items: Iterable[LineItem | Mapping[str, Any]]) -> list[dict]:
    """Accept :class:`LineItem` objects or ready wire dicts."""
    return [li.to_json() if isinstance(li, LineItem) else dict(li) for li in line_items]


def as_missing_items(items: Iterable[MissingItems | Mapping[str, Any]]) -> list[dict]:
    """Accept :class:`MissingItems` objects or ready wire dicts."""
    return [m.to_json() if isinstance(m, MissingItems) else dict(m) for m in items]
