"""Reading request bodies on the HTTP faces: capped as they stream in, and multipart/form-data
uploads (the TorchServe habit: ``curl -F data=@chest.dcm``) parsed by python-multipart.

An upload's image is its file part named ``data`` (TorchServe's name), ``image`` or ``file``;
its other fields are returned as text for the route to interpret (the v2 route's parameters).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from ptxplain.errors import ImageTooLargeError, InvalidInputError

__all__ = ["IMAGE_FIELDS", "content_type", "is_multipart", "read_body", "read_form"]

IMAGE_FIELDS = ("data", "image", "file")
_MAX_FIELDS = 32


def content_type(request: Request) -> str:
    """The request's media type, lower case, without parameters."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_multipart(request: Request) -> bool:
    return content_type(request) == "multipart/form-data"


async def read_body(request: Request, cap: int, what: str) -> bytes:
    """The body, refused (413, naming the cap) as soon as it passes ``cap`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise ImageTooLargeError(
            f"{what} is {declared} bytes, over the gateway's cap of {cap} bytes"
        )
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > cap:
            raise ImageTooLargeError(f"{what} is over the gateway's cap of {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _once(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


async def _parts(request: Request, body: bytes, cap: int) -> list[tuple[str, str | UploadFile]]:
    parser = MultiPartParser(
        request.headers,
        _once(body),
        max_files=len(IMAGE_FIELDS),
        max_fields=_MAX_FIELDS,
        max_part_size=cap,
    )
    try:
        return list((await parser.parse()).multi_items())
    except MultiPartException as exc:
        raise InvalidInputError(f"multipart/form-data body: {exc.message}") from exc


async def read_form(request: Request, cap: int) -> tuple[bytes, dict[str, str]]:
    """The uploaded image and the form's text fields (at most ``cap`` bytes of body)."""
    body = await read_body(request, cap, "multipart/form-data body")
    images: list[bytes] = []
    fields: dict[str, str] = {}
    for name, value in await _parts(request, body, cap):
        if isinstance(value, str):
            fields[name] = value
        elif name in IMAGE_FIELDS:
            images.append(await value.read())
        else:
            raise InvalidInputError(
                f"multipart/form-data file field {name!r}: send the image as "
                f"{' or '.join(map(repr, IMAGE_FIELDS))} (curl -F data=@image.png)"
            )
    if len(images) != 1:
        raise InvalidInputError(
            f"multipart/form-data body must carry one image file (field 'data', as in "
            f"curl -F data=@image.png), got {len(images)}"
        )
    return images[0], fields
