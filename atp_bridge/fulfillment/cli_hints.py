"""What to do about each fulfillment error: the ``Fix:`` line of the CLI."""
from __future__ import annotations

from . import errors as e
from .tokens import TokenError

_HINTS: list[tuple[type[e.FulfillmentError], str]] = [
    (e.UnauthorizedError, "set NEWSTORE_TOKEN (or --token) to a valid NewStore access token, "
                          "or use an API client: NEWSTORE_CLIENT_ID, NEWSTORE_CLIENT_SECRET, "
                          "NEWSTORE_TENANT."),
    (TokenError, "check NEWSTORE_CLIENT_ID / NEWSTORE_CLIENT_SECRET (an API client of the "
                 "tenant) and NEWSTORE_TENANT or NEWSTORE_TOKEN_URL."),
    (e.RateLimitedError, "the tenant's calls are over NewStore's rate limit; retry later, or "
                         "allow a longer wait with --rate-limit-wait / NEWSTORE_RATE_LIMIT_WAIT."),
    (e.FulfillmentRequestInvalidError,
     "check the fulfillment request uuid and that --url points at the right tenant."),
    (e.NotFoundError, "check the uuid; status endpoints answer 404 until something was "
                      "canceled, rejected or shipped."),
    (e.PayloadConversionFailedError,
     "check the arguments: non-empty product ids, a carrier and a tracking code."),
    (e.InvalidItemError, "use product ids of this fulfillment request, once per unit; "
                         "`status` and the order show which ones exist."),
    (e.AlreadyRejectedError, "the request is rejected; nothing more can be done with it."),
    (e.AlreadyShippedError, "shipping has started; run `status` to see what is shipped."),
    (e.ShipmentConflictError, "repeat the original carrier and tracking data, or ship the "
                              "remaining units with their own tracking code."),
    (e.ItemAlreadyProcessedError,
     "run `atp-bridge fulfillment status UUID` to see which units are still open."),
    (e.ServerError, "NewStore is failing; retry later."),
    (e.FulfillmentTransportError,
     "check --url / NEWSTORE_URL and that the host is reachable."),
]


def hint_for(err: e.FulfillmentError) -> str:
    """The most specific hint for ``err``."""
    for cls, hint in _HINTS:
        if isinstance(err, cls):
            return hint
    return "see the error description above."
