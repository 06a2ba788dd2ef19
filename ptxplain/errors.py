"""The one exception hierarchy of ptxplain.

Every error carries the same fields: ``code`` (a :class:`Code`, numbered like gRPC's status
codes), ``message`` (names the problem) and ``model`` (the model concerned, or ``""``).
Mapping to gRPC status and HTTP status happens in exactly one place: :func:`http_status` and
:attr:`Code.grpc_name` here, used by the handler, the gateway's interceptor and its HTTP twin.

    PtxplainError
    ├── InvalidInputError            INVALID_ARGUMENT   400  the request itself is wrong
    │   ├── DecodeError                                      bytes that are no usable image
    │   ├── ImageTooLargeError                          413  over the byte or pixel cap
    │   └── InvalidOptionError                               unknown method / target / size …
    ├── UnknownArchitectureError     NOT_FOUND          404  no such registry entry
    ├── UnknownModelError            INVALID_ARGUMENT   400  no such served model
    ├── WeightsError                 FAILED_PRECONDITION 412 weights file missing or mismatched
    ├── ConfigError                  FAILED_PRECONDITION 412 invalid configuration
    ├── BackendError                 UNAVAILABLE        503  a model server cannot be reached
    │   └── BackendTimeoutError      DEADLINE_EXCEEDED  504
    ├── OverloadedError              RESOURCE_EXHAUSTED 429  past an in-flight bound
    ├── AuthError                    UNAUTHENTICATED    401
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
    "PtxplainError",
    "UnknownArchitectureError",
    "UnknownModelError",
    "WeightsError",
    "http_status",
]


class Code(enum.IntEnum):
    """Status codes, numbered as gRPC's (``google.rpc.Code``)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16

    @property
    def grpc_name(self) -> str:
        """The name of the matching ``grpc.StatusCode`` member."""
        return self.name


_HTTP_BY_CODE: dict[Code, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 412,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.UNAUTHENTICATED: 401,
}


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
        return self.http if self.http is not None else _HTTP_BY_CODE[self.code]


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


class BackendError(PtxplainError):
    code = Code.UNAVAILABLE


class BackendTimeoutError(BackendError):
    code = Code.DEADLINE_EXCEEDED


class OverloadedError(PtxplainError):
    code = Code.RESOURCE_EXHAUSTED


class AuthError(PtxplainError):
    code = Code.UNAUTHENTICATED


class InternalError(PtxplainError):
    code = Code.INTERNAL


def http_status(code: Code) -> int:
    """The HTTP status for a status code (the one mapping used everywhere)."""
    return _HTTP_BY_CODE[code]
