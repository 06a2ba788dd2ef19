"""Decodes shared between worker processes: exactly what decode_image gives, once per image.

Every case compares against :func:`decode_image` itself: the pixels bit for bit and every field
of the description, for PNG (8- and 16-bit), a windowed DICOM and the real radiograph
RG1_UNCR.dcm. Several processes started together decode one image once; other limits never
share; failures are not kept; a damaged entry is decoded again; the folder stays under its cap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from ptxplain.errors import DecodeError, ImageTooLargeError
from ptxplain.imaging.decode import decode_image
from ptxplain.imaging.shared_decode import ENV_DIR, SharedDecoder, default_dir
from ptxplain.imaging.types import DecodedImage, DecodeLimits
from tests.factories.dicom_factory import make_dicom, phantom
from tests.factories.image_factory import gradient, pillow_bytes

LIMITS = DecodeLimits()
CAP = 64 * 1024 * 1024


def png8(seed: int = 0, side: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    return pillow_bytes(Image.fromarray(rng.integers(0, 255, (side, side), dtype=np.uint8)), "PNG")


def same(a: DecodedImage, b: DecodedImage) -> None:
    assert a.pixels.dtype == b.pixels.dtype == np.float32
    np.testing.assert_array_equal(a.pixels, b.pixels)
    for field in dataclasses.fields(DecodedImage):
        if field.name != "pixels":
            assert getattr(a, field.name) == getattr(b, field.name), field.name


def sources() -> dict[str, bytes]:
    sixteen = Image.fromarray(gradient(40, 56, 65535).astype(np.uint16))
    return {
        "png8": png8(),
        "png16": pillow_bytes(sixteen, "PNG"),
        "dicom_windowed": make_dicom(
            phantom().astype(np.uint16), bits_stored=12, WindowCenter=1800, WindowWidth=3000
        ),
        "RG1_UNCR": Path(str(get_testdata_file("RG1_UNCR.dcm"))).read_bytes(),
    }


@pytest.mark.parametrize("name", ["png8", "png16", "dicom_windowed", "RG1_UNCR"])
def test_a_second_worker_reads_exactly_what_the_first_decoded(name, tmp_path) -> None:
    data = sources()[name]
    first, second = (SharedDecoder(tmp_path, LIMITS, CAP) for _ in range(2))
    decoded, shared = first.decode(data)
    assert not shared and first.decodes == 1
    again, shared = second.decode(data)
    assert shared and second.decodes == 0 and second.hits == 1
    expected = decode_image(data, limits=LIMITS)
    same(decoded, expected)
    same(again, expected)
    again.pixels[0, 0] = 0.5  # writable, like a fresh decode
    assert len(list(tmp_path.glob("*.dec"))) == 1


def _worker(root: str, data: bytes, barrier, results) -> None:
    decoder = SharedDecoder(Path(root), LIMITS, CAP)
    barrier.wait()
    decoded, _ = decoder.decode(data)
    pixels = np.ascontiguousarray(decoded.pixels).tobytes()
    results.put((decoder.decodes, hashlib.sha256(pixels).hexdigest()))


def test_processes_started_together_decode_the_image_once(tmp_path) -> None:
    data = sources()["RG1_UNCR"]  # big enough that they all ask while the first decodes
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(str(tmp_path), data, barrier, results)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert sum(decodes for decodes, _ in got) == 1
    assert len({digest for _, digest in got}) == 1


def test_other_limits_never_share_and_refuse_as_decode_image_does(tmp_path) -> None:
    data = png8(side=48)
    SharedDecoder(tmp_path, LIMITS, CAP).decode(data)
    strict = SharedDecoder(tmp_path, DecodeLimits(max_pixels=100), CAP)
    with pytest.raises(ImageTooLargeError, match="max_pixels") as caught:
        strict.decode(data)
    with pytest.raises(ImageTooLargeError) as direct:
        decode_image(data, limits=DecodeLimits(max_pixels=100))
    assert str(caught.value) == str(direct.value) and strict.hits == 0


def test_failures_are_not_kept(tmp_path) -> None:
    decoder = SharedDecoder(tmp_path, LIMITS, CAP)
    for _ in range(2):
        with pytest.raises(DecodeError):
            decoder.decode(b"\x89PNG\r\n\x1a\n truncated")
    assert decoder.decodes == 2 and not list(tmp_path.glob("*.dec"))


def test_a_damaged_entry_is_removed_and_decoded_again(tmp_path, caplog) -> None:
    data = png8()
    SharedDecoder(tmp_path, LIMITS, CAP).decode(data)
    [entry] = tmp_path.glob("*.dec")
    entry.write_bytes(entry.read_bytes()[:-7])
    reader = SharedDecoder(tmp_path, LIMITS, CAP)
    decoded, shared = reader.decode(data)
    assert not shared and reader.decodes == 1 and "unreadable shared decode" in caplog.text
    same(decoded, decode_image(data, limits=LIMITS))
    assert reader.decode(data)[1]  # rewritten whole


def test_the_folder_stays_under_its_cap_oldest_out_first(tmp_path) -> None:
    entry = 48 * 48 * 4 + 400  # pixels + header, about
    cap = int(3.5 * entry)
    stale = tmp_path / ".tmp-left-by-a-killed-worker"
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 3600,) * 2)
    decoder = SharedDecoder(tmp_path, LIMITS, cap)
    images = [png8(seed) for seed in range(10)]
    for data in images:
        decoder.decode(data)
        time.sleep(0.01)  # distinct mtimes
        assert sum(p.stat().st_size for p in tmp_path.glob("*.dec")) <= cap
    assert not stale.exists()
    assert decoder.decode(images[-1])[1]  # the newest is kept
    assert not SharedDecoder(tmp_path, LIMITS, cap).decode(images[0])[1]  # the oldest went


def test_off_or_an_unsafe_folder_decodes_here(tmp_path, caplog) -> None:
    off = SharedDecoder(tmp_path / "off", LIMITS, 0)
    assert not off.enabled and not off.decode(png8())[1] and not (tmp_path / "off").exists()
    open_folder = tmp_path / "open"
    open_folder.mkdir(mode=0o777)
    open_folder.chmod(0o777)
    unsafe = SharedDecoder(open_folder, LIMITS, CAP)
    assert not unsafe.enabled and "closed to others" in caplog.text
    for _ in range(2):
        assert not unsafe.decode(png8())[1]
    assert not list(open_folder.glob("*.dec"))


def test_the_folder_is_the_environments_else_memory(monkeypatch) -> None:
    monkeypatch.setenv(ENV_DIR, "/somewhere/else")
    assert default_dir() == Path("/somewhere/else")
    monkeypatch.delenv(ENV_DIR)
    expected = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    if expected:
        assert default_dir() == Path(expected) / f"ptxplain-decodes-{os.getuid()}"
    assert default_dir().name == f"ptxplain-decodes-{os.getuid()}"


def test_a_folder_that_cannot_take_an_entry_costs_no_second_decode(tmp_path, monkeypatch) -> None:
    decoder = SharedDecoder(tmp_path, LIMITS, CAP)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(decoder, "_write", full)
    decoded, shared = decoder.decode(png8())
    assert not shared and decoder.decodes == 1
    same(decoded, decode_image(png8(), limits=LIMITS))
