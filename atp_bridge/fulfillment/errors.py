"""The one error hierarchy of the Fulfillment Provider API client and emulator.

Every documented ``error_code`` of NewStore's Fulfillment Provider API has its
own class, so a warehouse integration can ``except AlreadyRejectedError``
instead of comparing strings. The emulator raises the very same classes and
serialises them with :meth:`FulfillmentAPIError.to_json`, so the client turns
an emulator answer back into the exception that was raised on the other side.

Codes written out in the spec: ``fulfillment_request_invalid``,
``already_rejected``, ``already_shipped``, ``invalid_item``,
``payload_conversion_failed`` and ``shipment_already_started`` (seen only
inside ``failed_shipments``). The spec names the examples "Item already
shipped / rejected / canceled" without printing their codes; we use
``item_already_shipped``, ``item_already_rejected`` and
``item_already_canceled``. It describes shipment conflicts without a code; we
use ``shipment_conflict``. An unknown code from a real server still raises
:class:`FulfillmentAPIError` with the code preserved.
"""
from __future__ import annotations

from typing import Iterable


from atp_bridge.errors import AtpBridgeError


class FulfillmentError(AtpBridgeError):
    """Root of every error the fulfillment client, emulator and CLI raise.

    ``status`` is the HTTP status (``None`` when no answer arrived),
    ``error_code`` and ``error_description`` come from the JSON error body,
    ``conflicting_items`` lists the product ids the server named, if any.
    """

    #: Default HTTP status for this class; an instance may carry another one.
    default_status: int | None = None
    #: The wire ``error_code`` this class stands for (``None``: not code-specific).
    error_code: str | None = None

    def __init__(self, error_description: str = "", *, status: int | None = None,
                 error_code: str | None = None,
                 conflicting_items: Iterable[str] | None = None):
        self.status = status if status is not None else self.default_status
        if error_code is not None:
            self.error_code = error_code
        self.error_description = error_description
        self.conflicting_items = tuple(conflicting_items or ())
        super().__init__(self._message())

    def _message(self) -> str:
        parts = []
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.error_code:
            parts.append(self.error_code)
        head = " ".join(parts)
        text = f"{head}: {self.error_description}" if head else self.error_description
        if self.conflicting_items:
            text += f" (conflicting items: {', '.join(self.conflicting_items)})"
        return text


class FulfillmentTransportError(FulfillmentError):
    """No usable answer: connection refused, timeout, or a body that is not JSON."""


class FulfillmentAPIError(FulfillmentError):
    """The API answered with an error status; subclasses name the ``error_code``."""

    default_status = 400

    def to_json(self) -> dict:
        """The wire error envelope, as the emulator sends it."""
        body = {"error_code": self.error_code or "error",
                "error_description": self.error_description}
        if self.conflicting_items:
            body["conflicting_items"] = list(self.conflicting_items)
        return body


class UnauthorizedError(FulfillmentAPIError):
    """401: no bearer token, or the wrong one."""

    default_status = 401
    error_code = "unauthorized"


class NotFoundError(FulfillmentAPIError):
    """404: the fulfillment request, or the status asked for, does not exist yet."""

    default_status = 404
    error_code = "not_found"


class ServerError(FulfillmentAPIError):
    """5xx that persisted through every retry the call was allowed."""

    default_status = 500
    error_code = "server_error"


class RateLimitedError(FulfillmentAPIError):
    """429: over NewStore's rate limit, and waiting as long as ``Retry-After``
    asks would pass the wait budget the caller set. ``retry_after_s`` is what
    the server asked for (``None``: no usable header), ``waited_s`` how long
    this call already waited."""

    default_status = 429
    error_code = "rate_limited"

    def __init__(self, error_description: str = "", *, retry_after_s: float | None = None,
                 waited_s: float = 0.0, **kwargs):
        self.retry_after_s = retry_after_s
        self.waited_s = waited_s
        super().__init__(error_description, **kwargs)


class FulfillmentRequestInvalidError(FulfillmentAPIError):
    """The fulfillment request id is invalid (unknown to the service)."""

    error_code = "fulfillment_request_invalid"


class PayloadConversionFailedError(FulfillmentAPIError):
    """The body could not be converted to NewStore's model (wrong shape or type)."""

    error_code = "payload_conversion_failed"


class InvalidItemError(FulfillmentAPIError):
    """A product id does not belong to the request, or the payload mixes empty
    and non-empty product ids (reject items' special case)."""

    error_code = "invalid_item"


class AlreadyRejectedError(FulfillmentAPIError):
    """The whole fulfillment request has already been rejected."""

    error_code = "already_rejected"


class AlreadyShippedError(FulfillmentAPIError):
    """The shipment of the fulfillment request has started."""

    error_code = "already_shipped"


class ItemAlreadyProcessedError(FulfillmentAPIError):
    """Base of the per-item state conflicts (no open item left for a product)."""


class ItemAlreadyShippedError(ItemAlreadyProcessedError):
    """The named items have already been shipped."""

    error_code = "item_already_shipped"


class ItemAlreadyRejectedError(ItemAlreadyProcessedError):
    """The named items have already been rejected."""

    error_code = "item_already_rejected"


class ItemAlreadyCanceledError(ItemAlreadyProcessedError):
    """The named items have already been canceled."""

    error_code = "item_already_canceled"


class ShipmentConflictError(FulfillmentAPIError):
    """Shipment information conflicts with what was posted before for the
    items in ``conflicting_items`` (e.g. carrier Foo now, Bar earlier)."""

    error_code = "shipment_conflict"


class ShipmentAlreadyStartedError(FulfillmentAPIError):
    """The shipment has already started (seen in ``failed_shipments``)."""

    error_code = "shipment_already_started"


#: error_code -> exception class, for every code this package knows.
ERROR_CLASSES: dict[str, type[FulfillmentAPIError]] = {
    cls.error_code: cls
    for cls in (
        UnauthorizedError, NotFoundError, ServerError, RateLimitedError,
        FulfillmentRequestInvalidError, PayloadConversionFailedError,
        InvalidItemError, AlreadyRejectedError, AlreadyShippedError,
        ItemAlreadyShippedError, ItemAlreadyRejectedError,
        ItemAlreadyCanceledError, ShipmentConflictError,
        ShipmentAlreadyStartedError,
    )
}


def error_from_response(status: int, body: object) -> FulfillmentAPIError:
    """Build the exception for an error answer: by ``error_code`` first, then
    by status (401, 404, 5xx), else :class:`FulfillmentAPIError`."""
    body = body if isinstance(body, dict) else {}
    code = body.get("error_code")
    description = str(body.get("error_description") or "")
    items = body.get("conflicting_items")
    items = [str(i) for i in items] if isinstance(items, list) else None
    code = code if isinstance(code, str) else None
    cls = ERROR_CLASSES.get(code)
    if cls is None:
        if status == 401:
            cls = UnauthorizedError
        elif status == 404:
            cls = NotFoundError
        elif status == 429:
            cls = RateLimitedError
        elif status >= 500:
            cls = ServerError
        else:
            cls = FulfillmentAPIError
    return cls(description or f"HTTP {status}", status=status,
               error_code=code, conflicting_items=items)
