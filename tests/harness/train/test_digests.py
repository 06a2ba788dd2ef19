"""Training's pixel digests: a short run writes train-digests.bin (every train and val image,
nothing of the test split) and records it in the metadata; the archive carries it; the handler
loaded from that archive flags a training image as seen and a test image as not. Phantom DICOMs
(native, RLE and JPEG 2000) and their PNG conversion digest the same read as training reads them
or as the handler decodes a request. ResNet-18 at 32 px, one epoch, 20 images."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from handlers.archive import WeightsSource, build_archive
from handlers.torchserve_handler import PtxplainHandler
from harness.data.dataset import ReadOptions
from harness.data.layouts import open_dataset
from harness.data.png_layout import write_png_layout
from harness.data.split import load_or_create_split
from harness.phantom.generate import PhantomConfig, generate_phantom
from harness.train.data import read_train_val
from harness.train.run import WEIGHTS_FILENAME, TrainConfig, train
from ptxplain.imaging.decode import DecodeLimits, decode_image
from ptxplain.imaging.digest import DIGESTS_FILENAME, file_sha256, pixel_digest, read_digests
from ptxplain.models.meta import META_FILENAME, ModelMeta
from tests.handlers.test_torchserve_handler import make_context, run


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digests") / "phantom"
    generate_phantom(PhantomConfig(n=20, seed=8, size=64, compressed_fraction=0.5), root)
    return root


def _served_digest(path: Path) -> bytes:
    """The digest the handler computes for the file sent as a request body."""
    return pixel_digest(decode_image(path.read_bytes(), limits=DecodeLimits()).pixels)


def test_every_phantom_image_digests_the_same_in_training_and_in_the_handler(
    data: Path, tmp_path: Path
) -> None:
    dataset = open_dataset(data, ReadOptions(state_dir=tmp_path))
    png = tmp_path / "png"
    write_png_layout(dataset, png)
    for folder in (data, png):
        records = open_dataset(folder, ReadOptions(state_dir=tmp_path / folder.name)).records
        assert len(records) >= 10
        for record in records:
            assert pixel_digest(record.load_pixels()) == _served_digest(record.path), record.path
    suffixes = {r.path.suffix for r in dataset.records}
    assert suffixes == {".dcm"}


def test_a_run_records_its_train_and_val_digests_and_the_archive_serves_them(
    data: Path, tmp_path: Path
) -> None:
    config = TrainConfig(
        arch="resnet18",
        data=data,
        out=tmp_path / "ckpt",
        input_size=32,
        epochs=1,
        batch_size=8,
        threads=1,
        progress=False,
    )
    train(config)
    records = read_train_val(data, ReadOptions())
    seen = read_digests(tmp_path / "ckpt" / DIGESTS_FILENAME)
    assert seen.train == {_served_digest(r.path) for r in records.train}
    assert seen.val == {_served_digest(r.path) for r in records.val}
    dataset = open_dataset(data, ReadOptions())
    test = load_or_create_split(dataset, data).records(dataset, "test")
    assert test and not any(_served_digest(r.path) in seen for r in test)
    meta = ModelMeta.read(tmp_path / "ckpt" / META_FILENAME)
    assert meta.training_digests == len(records.train) + len(records.val) == len(seen)
    assert meta.training_digests_sha256 == file_sha256(tmp_path / "ckpt" / DIGESTS_FILENAME)

    checkpoint = WeightsSource(checkpoint=tmp_path / "ckpt" / WEIGHTS_FILENAME)
    archive = build_archive("resnet18", tmp_path / "store", weights=checkpoint)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(archive.path) as opened:
        assert DIGESTS_FILENAME in opened.namelist()
        opened.extractall(unpacked)
    handler = PtxplainHandler()
    handler.initialize(make_context(unpacked, 1))
    rows = [{"body": records.train[0].path.read_bytes()}, {"body": test[0].path.read_bytes()}]
    flags = [result.seen_in_training for result, _ in run(handler, unpacked, rows)]
    assert flags == [True, False]
