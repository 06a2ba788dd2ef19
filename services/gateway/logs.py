"""Structured (JSON, one object per line) logs with the request id of the call being served.

The request id lives in a context variable set by the gRPC interceptor / HTTP middleware, so
every record logged while serving a request carries it. Records carry only what the gateway
chose to log — never image bytes, and never anything read from inside an image (a DICOM's
identifiers never reach the gateway: it only sniffs the format from the magic bytes).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import uuid
from typing import Any

__all__ = [
    "REQUEST_ID_HEADER",
    "JsonFormatter",
    "access_fields_var",
    "configure_logging",
    "new_request_id",
    "note",
    "request_id_var",
]

REQUEST_ID_HEADER = "x-request-id"
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
# What the request's access-log line will say (models, image format and size, per-model codes);
# the API layer fills it, the interceptor / middleware logs it when the request ends.
access_fields_var: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "access_fields", default=None
)
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


def new_request_id(offered: str | None = None) -> str:
    """The client's id when it is a short token, else a fresh one."""
    if offered and _CLIENT_ID.match(offered):
        return offered
    return uuid.uuid4().hex


def note(**fields: Any) -> None:
    """Add fields to the current request's access-log line (no-op outside a request)."""
    current = access_fields_var.get()
    if current is not None:
        current.update(fields)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id", ...fields}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(json_logs: bool, level: int = logging.INFO) -> None:
    """Route the root logger to stderr, as JSON lines (or plain text for a terminal)."""
    handler = logging.StreamHandler()
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
