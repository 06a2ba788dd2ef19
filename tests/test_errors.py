"""The one status table (both directions), bounded echoes, fixed reason phrases, option numbers."""

from __future__ import annotations

import pytest

from handlers.torchserve_handler import reason_phrase
from ptxplain import errors
from ptxplain.errors import Code, client_message, error_for_code, error_for_http, quoted
from ptxplain.explain.options import parse_options


@pytest.mark.parametrize("code", [c for c, _, _ in errors._STATUS])
def test_each_code_maps_to_an_error_and_back(code: Code) -> None:
    error = error_for_code(code, "m", model="x")
    assert error.model == "x" and error.message == "m"
    if code not in (Code.CANCELLED, Code.UNKNOWN):  # read as "unavailable" / "a bug"
        assert error.code == code
        assert error_for_http(error.http_status, "m").code == code or code == Code.UNKNOWN


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (408, errors.BackendTimeoutError),
        (413, errors.ImageTooLargeError),
        (418, errors.InvalidInputError),
        (429, errors.OverloadedError),
        (500, errors.InternalError),
        (502, errors.BackendError),
        (503, errors.BackendError),
    ],
)
def test_http_statuses_of_other_servers(status: int, error: type) -> None:
    assert type(error_for_http(status, "m")) is error


def test_an_unknown_code_is_internal() -> None:
    assert isinstance(error_for_code(99, "m"), errors.InternalError)


def test_echoes_are_bounded_and_ascii() -> None:
    assert quoted("²é\x00") == "'\\xb2\\xe9\\x00'"
    long = quoted("m" * 65536)
    assert len(long) < 100 and long.endswith("(65536 characters)")
    message = client_message("ü\n" * 10_000)
    assert message.isascii() and len(message) <= 1024 and message.endswith("(truncated)")


@pytest.mark.parametrize("status", [200, 400, 404, 412, 413, 429, 499, 500, 503, 504, 599])
def test_reason_phrases_are_fixed_ascii(status: int) -> None:
    phrase = reason_phrase(status)
    assert phrase and phrase.isascii()


@pytest.mark.parametrize(
    ("key", "value"),
    [("target", "²"), ("target", "9" * 5000), ("map_size", "²"), ("map_size", "3x²")],
)
def test_option_numbers_are_ascii_digits(key: str, value: str) -> None:
    with pytest.raises(errors.InvalidOptionError) as info:
        parse_options({key: value.encode()}, num_classes=2, method_name=str)
    assert info.value.message.isascii() and len(info.value.message) < 300
