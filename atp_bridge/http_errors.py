"""One JSON envelope for every 4xx: ``{"error", "message", "details"}``, plus
``more_problems`` when ``details`` had to leave problems out.

The webhook's own failures never get here: they follow the zero-ATP rule in
the view. Anything else unexpected becomes a JSON 500 without a stack trace.
"""
from __future__ import annotations

import logging

from flask import Flask
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from atp_bridge.errors import RequestError

log = logging.getLogger("atp_bridge")


def envelope(code: str, message: str, details=None, more_problems: int = 0) -> dict:
    body = {"error": code, "message": message, "details": details or []}
    if more_problems:  # only when details were cut (errors.MAX_DETAILS)
        body["more_problems"] = more_problems
    return body


def register(app: Flask) -> None:
    from atp_bridge.views import json_response

    @app.errorhandler(RequestError)
    def _request_error(e: RequestError):
        headers = {"WWW-Authenticate": 'Bearer realm="atp-bridge"'} if e.status == 401 else None
        return json_response(envelope(e.code, e.message, e.details, e.more_problems), e.status, headers)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(e):
        limit = app.config.get("MAX_CONTENT_LENGTH")
        msg = f"request body is larger than max_body_bytes={limit}"
        return json_response(envelope("body_too_large", msg,
                                      [{"field": "(body)", "problem": msg}]), 413)

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        code = (e.name or "error").lower().replace(" ", "_")
        resp = json_response(envelope(code, e.description or e.name), e.code or 500)
        if e.code == 405 and hasattr(e, "valid_methods") and e.valid_methods:
            resp.headers["Allow"] = ", ".join(e.valid_methods)
        return resp

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        log.exception("unhandled error")
        return json_response(envelope("internal_error", "internal error; see the server log"), 500)
