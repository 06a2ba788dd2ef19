"""The one exception hierarchy of ptxplain.

Every error carries the same fields: ``code`` (a :class:`Code`, numbered like gRPC's status
codes), ``message`` (names the problem) and ``model`` (the model concerned, or ``""``).
The mapping between errors and gRPC / HTTP status is ONE table here (``_STATUS``), read in both
directions: :func:`http_status` and :attr:`Code.grpc_name` (error -> status, used by the handler,
the gateway's interceptor and its HTTP twin) and :func:`error_for_code` / :func:`error_for_http`
(a status another server answered -> the error to raise, used by every client). Text that came
from a request and goes back to a client passes :func:`quoted` / :func:`client_message`: bounded
and ASCII-escaped, so it fits any header or status frame.

    PtxplainError
    ├── InvalidInputError            INVALID_ARGUMENT   400  the request itself is wrong
    │   ├── DecodeError                                      bytes that are no usable image
    │   ├── ImageTooLargeError                          413  over the byte or pixel cap
    │   └── InvalidOptionError                               unknown method / target / size …
    ├── UnknownArchitectureError     NOT_FOUND          404  no such registry entry
    ├── UnknownModelError            INVALID_ARGUMENT   400  no such served model
    ├── WeightsError                 FAILED_PRECONDITION 412 weights file missing or mismatched
    ├── ConfigError                  FAILED_PRECONDITION 412 invalid configuration
    │   └── SeenInTrainingError                              evaluated images a model was trained on
    ├── BackendError                 UNAVAILABLE        503  a model server cannot be reached
    │   └── BackendTimeoutError      DEADLINE_EXCEEDED  504
    ├── OverloadedError              RESOURCE_EXHAUSTED 429  past an in-flight bound
    ├── AuthError                    UNAUTHENTICATED    401
    │   └── PermissionDeniedError    PERMISSION_DENIED  403  refused whoever asks (Host, Origin)
    └── InternalError                INTERNAL           500  a bug: report it
"""

from __future__ import annotations

import enum

__all__ = [
    "AuthError",
    "BackendError",
    "BackendTimeoutError",
    "Code",
    "ConfigError",
    "DecodeError",
    "ImageTooLargeError",
    "InternalError",
    "InvalidInputError",
    "InvalidOptionError",
    "OverloadedError",
    "PermissionDeniedError",
    "PtxplainError",
    "SeenInTrainingError",
    "UnknownArchitectureError",
    "UnknownModelError",
    "WeightsError",
    "client_message",
    "code_for_http",
    "error_for_code",
    "error_for_http",
    "http_status",
    "quoted",
]


class Code(enum.IntEnum):
    """Status codes, numbered as gRPC's (``google.rpc.Code``)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16

    @property
    def grpc_name(self) -> str:
        """The name of the matching ``grpc.StatusCode`` member."""
        return self.name


class PtxplainError(Exception):
    """Base of every ptxplain error."""

    code: Code = Code.INTERNAL
    http: int | None = None

    def __init__(self, message: str, *, model: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.model = model

    def __str__(self) -> str:
        return f"{self.model}: {self.message}" if self.model else self.message

    @property
    def http_status(self) -> int:
        return self.http if self.http is not None else http_status(self.code)


class InvalidInputError(PtxplainError):
    code = Code.INVALID_ARGUMENT


class DecodeError(InvalidInputError):
    pass


class ImageTooLargeError(InvalidInputError):
    http = 413


class InvalidOptionError(InvalidInputError):
    pass


class UnknownArchitectureError(PtxplainError):
    code = Code.NOT_FOUND


class UnknownModelError(PtxplainError):
    code = Code.INVALID_ARGUMENT


class WeightsError(PtxplainError):
    code = Code.FAILED_PRECONDITION


class ConfigError(PtxplainError):
    code = Code.FAILED_PRECONDITION


class SeenInTrainingError(ConfigError):
    """An evaluation's test images include images the model was trained or validated on."""


class BackendError(PtxplainError):
    code = Code.UNAVAILABLE


class BackendTimeoutError(BackendError):
    code = Code.DEADLINE_EXCEEDED


class OverloadedError(PtxplainError):
    code = Code.RESOURCE_EXHAUSTED


class AuthError(PtxplainError):
    code = Code.UNAUTHENTICATED


class PermissionDeniedError(AuthError):
    code = Code.PERMISSION_DENIED


class InternalError(PtxplainError):
    code = Code.INTERNAL


# -- the one table: status code <-> HTTP status <-> error class ------------------------------------

_STATUS: tuple[tuple[Code, int, type[PtxplainError]], ...] = (
    (Code.CANCELLED, 499, BackendError),
    (Code.UNKNOWN, 500, InternalError),
    (Code.INVALID_ARGUMENT, 400, InvalidInputError),
    (Code.DEADLINE_EXCEEDED, 504, BackendTimeoutError),
    (Code.NOT_FOUND, 404, UnknownArchitectureError),
    (Code.PERMISSION_DENIED, 403, PermissionDeniedError),
    (Code.RESOURCE_EXHAUSTED, 429, OverloadedError),
    (Code.FAILED_PRECONDITION, 412, ConfigError),
    (Code.INTERNAL, 500, InternalError),
    (Code.UNAVAILABLE, 503, BackendError),
    (Code.UNAUTHENTICATED, 401, AuthError),
)
_HTTP_BY_CODE = {Code.OK: 200, **{code: http for code, http, _ in _STATUS}}
_ERROR_BY_CODE = {code: error for code, _, error in _STATUS}
# HTTP statuses read back: the table's own (500 is INTERNAL), plus what other servers answer.
_CODE_BY_HTTP = {
    **{http: code for code, http, _ in reversed(_STATUS)},
    200: Code.OK,
    408: Code.DEADLINE_EXCEEDED,
    413: Code.INVALID_ARGUMENT,
}
_ERROR_BY_HTTP: dict[int, type[PtxplainError]] = {413: ImageTooLargeError}


def http_status(code: Code) -> int:
    """The HTTP status for a status code (the one mapping used everywhere)."""
    return _HTTP_BY_CODE[code]


def code_for_http(status: int) -> Code:
    """The status code for an HTTP status: the table's, else by class (4xx / 5xx)."""
    if status in _CODE_BY_HTTP:
        return _CODE_BY_HTTP[status]
    if 400 <= status < 500:
        return Code.INVALID_ARGUMENT
    return Code.UNAVAILABLE if status >= 500 else Code.UNKNOWN


def error_for_code(code: Code | int, message: str, *, model: str = "") -> PtxplainError:
    """The error to raise for a status another server (or the gateway) answered."""
    try:
        code = Code(code)
    except ValueError:
        code = Code.UNKNOWN
    return _ERROR_BY_CODE.get(code, InternalError)(message, model=model)


def error_for_http(status: int, message: str, *, model: str = "") -> PtxplainError:
    """The error to raise for an HTTP status another server answered."""
    if status in _ERROR_BY_HTTP:
        return _ERROR_BY_HTTP[status](message, model=model)
    return error_for_code(code_for_http(status), message, model=model)


# -- text from a request, going back to a client --------------------------------------------------

_MAX_QUOTED = 64
_MAX_MESSAGE = 1024


def _escaped(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii").translate(_CONTROLS)


_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def quoted(value: object, limit: int = _MAX_QUOTED) -> str:
    """``value`` quoted for a message: ASCII-escaped, at most ``limit`` characters of it."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)
    if len(text) <= limit:
        return f"'{_escaped(text)}'"
    return f"'{_escaped(text[:limit])}'... ({len(text)} characters)"


def client_message(text: str, limit: int = _MAX_MESSAGE) -> str:
    """A message as it may go to a client (a gRPC status, a JSON error): ASCII, bounded."""
    text = _escaped(text)
    return text if len(text) <= limit else f"{text[: limit - 15]}... (truncated)"
