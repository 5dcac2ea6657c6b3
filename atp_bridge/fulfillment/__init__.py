"""Client, emulator and CLI for NewStore's Fulfillment Provider API (v0).

The API a retailer's warehouse calls to accept, reject, cancel and ship
fulfillment requests. ``FulfillmentClient`` talks to NewStore (or to the
emulator), ``create_emulator_app`` builds the local emulator, and
``atp_bridge.fulfillment.cli`` holds the click commands.
"""
from .client import FulfillmentClient
from .errors import FulfillmentAPIError, FulfillmentError, FulfillmentTransportError
from .models import (
    CancelationStatus, CanceledItem, EmulatorUnit, ItemRejectionStatus, LineItem, MissingItems,
    Receipt, RejectedItem, RejectionStatus, ShipmentInfo, ShipmentRecord,
    ShipmentResult, ShipmentStatus,
)

__all__ = [
    "FulfillmentClient", "FulfillmentError", "FulfillmentAPIError",
    "FulfillmentTransportError", "CancelationStatus", "CanceledItem", "EmulatorUnit",
    "ItemRejectionStatus", "LineItem", "MissingItems", "Receipt", "RejectedItem",
    "RejectionStatus", "ShipmentInfo", "ShipmentRecord", "ShipmentResult",
    "ShipmentStatus",
]
