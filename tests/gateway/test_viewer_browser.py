"""The viewer in a real headless Chromium, against the session's real TorchServe (five
random-init models at 64 px) and a real gateway that also routes a model TorchServe does not
serve ('ghost'): a phantom DICOM through the file picker and the real radiograph RG1_UNCR.dcm
(pydicom-data) dropped on the page; every tile checked from the canvas's own pixels.

Set ``PTXPLAIN_VIEWER_SHOTS=DIR`` to keep the screenshots (else they go to the test's tmp dir).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import RLELossless

from harness.phantom.generate import PhantomConfig, generate_phantom
from services.gateway import BackendConfig, GatewayConfig
from tests.conftest import LIVE_ARCHS, LiveTorchServe
from tests.gateway.conftest import LoopThread

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

pytestmark = pytest.mark.live
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "no Chromium + chromedriver on this machine (Debian: apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )
MODELS = (*LIVE_ARCHS, "ghost")
WAIT_S = 240


@dataclasses.dataclass
class Page:
    driver: webdriver.Chrome
    base: str
    shots: Path

    def tile(self, model: str) -> object:
        return self.driver.find_element(By.CSS_SELECTOR, f'article.tile[data-model="{model}"]')

    def pixels(self, model: str) -> np.ndarray:
        """The tile's canvas as (H, W, 3) uint8, read back from the browser."""
        url = self.driver.execute_script(
            "return arguments[0].querySelector('canvas').toDataURL('image/png')", self.tile(model)
        )
        data = base64.b64decode(url.split(",", 1)[1])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def text(self, model: str, part: str) -> str:
        return str(self.tile(model).find_element(By.CSS_SELECTOR, part).text)

    def arm(self) -> float:
        """Forget the last request's phase; the time now."""
        self.driver.execute_script("document.getElementById('status').dataset.phase = 'armed'")
        return time.perf_counter()

    def wait_done(self, since: float) -> float:
        """Seconds from ``since`` until the page says every tile is in."""
        WebDriverWait(self.driver, WAIT_S).until(
            lambda d: (
                d.find_element(By.ID, "status").get_attribute("data-phase") in ("done", "failed")
            )
        )
        return time.perf_counter() - since

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


def colour_fraction(pixels: np.ndarray) -> float:
    """The share of pixels that are not gray: where a map is drawn over the film."""
    spread = pixels.max(axis=2).astype(int) - pixels.min(axis=2).astype(int)
    return float((spread > 24).mean())


@pytest.fixture(scope="module")
def base(torchserve: LiveTorchServe, loop_thread: LoopThread) -> Iterator[str]:
    ts = torchserve.config

    def backend(name: str, models: tuple[str, ...]) -> BackendConfig:
        return BackendConfig(
            name=name,
            grpc=ts.grpc_inference_target,
            management=ts.management_url,
            models=models,
            key_file=ts.key_file,
        )

    config = GatewayConfig(
        backends=(backend("main", LIVE_ARCHS), backend("ghosts", ("ghost",))),
        grpc_port=0,
        http_port=0,
        catalog_refresh_s=2.0,
    )
    running = loop_thread.start_gateway(config)
    yield f"http://127.0.0.1:{running.http_port}"
    loop_thread.run(running.stop(0))


@pytest.fixture(scope="module")
def page(base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,1900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    shots = Path(os.environ.get("PTXPLAIN_VIEWER_SHOTS") or tmp_path_factory.mktemp("shots"))
    shots.mkdir(parents=True, exist_ok=True)
    try:
        driver.get(base)
        WebDriverWait(driver, 60).until(
            lambda d: len(Select(d.find_element(By.ID, "method")).options) > 1
        )
        yield Page(driver, base, shots)
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def phantom_dicom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = PhantomConfig(n=2, seed=5, size=256, positive_fraction=1.0, compressed_fraction=0.0)
    root = tmp_path_factory.mktemp("phantom")
    result = generate_phantom(config, root)
    return root / result.cases[0].path


def drop(page: Page, path: Path) -> float:
    """Drop ``path`` on the drop zone as a drag and drop does; returns when it was dropped."""
    driver = page.driver
    driver.execute_script(
        "const i = document.createElement('input'); i.type = 'file'; i.id = 'test-drop';"
        "i.hidden = true; document.body.append(i);"
    )
    driver.find_element(By.ID, "test-drop").send_keys(str(path))
    started = time.perf_counter()
    driver.execute_script(
        "const t = new DataTransfer(); t.items.add(document.getElementById('test-drop').files[0]);"
        "document.getElementById('test-drop').remove();"
        "document.getElementById('drop').dispatchEvent("
        "  new DragEvent('drop', {dataTransfer: t, bubbles: true, cancelable: true}));"
    )
    return started


def check_every_tile(page: Page) -> dict[str, np.ndarray]:
    """Each model's tile shows its verdict and a map (or says its map is all zero); the ghost
    shows its own error; the original shows the film alone."""
    film = page.pixels("")
    assert film.std() > 8 and colour_fraction(film) < 0.001  # a gray picture, no heat
    drawn = {}
    for model in LIVE_ARCHS:
        assert "p = " in page.text(model, ".label"), model
        note = page.text(model, ".note")
        pixels = page.pixels(model)
        if "All-zero map" in note:
            assert colour_fraction(pixels) < 0.001, model
            continue
        assert colour_fraction(pixels) > 0.02, (model, note)
        drawn[model] = pixels
    assert len(drawn) >= 3, f"too few maps drawn: {sorted(drawn)}"
    error = page.text("ghost", ".error")
    assert "ghost" in error and "not found" in error.lower(), error
    assert "failed" in str(page.tile("ghost").get_attribute("class"))
    return drawn


def changed(before: dict[str, np.ndarray], page: Page) -> list[str]:
    return [m for m, p in before.items() if np.abs(page.pixels(m).astype(int) - p).mean() > 1.0]


def test_phantom_dicom_then_opacity_and_method(page: Page, phantom_dicom: Path) -> None:
    started = page.arm()
    page.driver.find_element(By.ID, "file").send_keys(str(phantom_dicom))
    seconds = page.wait_done(started)
    page.shot("phantom_gradcam")
    drawn = check_every_tile(page)
    print(f"phantom DICOM: drop to last tile {seconds:.2f} s (the page: {last_tile_ms(page)} ms)")

    slider = page.driver.find_element(By.ID, "opacity")
    slider.send_keys(Keys.END)  # opacity 100 %: the heat covers the film
    assert page.driver.find_element(By.ID, "opacity-out").text == "100 %"
    assert sorted(changed(drawn, page)) == sorted(drawn)
    page.shot("phantom_opacity100")

    page.driver.find_element(By.ID, "zoom-in").click()  # zoom is the same on every tile
    transforms = page.driver.execute_script(
        "return [...document.querySelectorAll('.tile canvas')].map(c => c.style.transform)"
    )
    assert len(set(transforms)) == 1 and "scale(1.25)" in transforms[0], transforms
    page.driver.find_element(By.ID, "zoom-reset").click()

    before = {m: page.pixels(m) for m in drawn}
    started = page.arm()
    Select(page.driver.find_element(By.ID, "method")).select_by_value("eigencam")
    page.wait_done(started)
    assert all("eigencam" in page.text(m, ".note") for m in LIVE_ARCHS)
    assert len(changed(before, page)) >= len(before) - 1
    page.shot("phantom_eigencam")


def test_exports_the_grid_as_png_and_the_answers_as_json(page: Page) -> None:
    page.driver.execute_script(
        "window.__saved = []; const make = URL.createObjectURL;"
        "URL.createObjectURL = (blob) => { window.__saved.push(blob); return make(blob); };"
        "HTMLAnchorElement.prototype.click = function () { window.__saved.push(this.download); };"
    )
    page.driver.find_element(By.ID, "export-json").click()
    page.driver.find_element(By.ID, "export-png").click()
    WebDriverWait(page.driver, 30).until(
        lambda d: d.execute_script("return window.__saved.length") >= 4
    )
    saved = page.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const read = (b) => new Promise((ok) => { const f = new FileReader();"
        "  f.onload = () => ok([b.type, f.result.split(',')[1]]); f.readAsDataURL(b); });"
        "Promise.all(window.__saved.map((x) => typeof x === 'string' ? x : read(x))).then(done);"
    )
    (json_type, json_data), json_name, (png_type, png_data), png_name = saved
    assert json_type == "application/json" and json_name.endswith("_viewer.json")
    answers = json.loads(base64.b64decode(json_data))
    assert {r["model"] for r in answers["results"]} == set(MODELS)
    assert answers["options"]["method"] == "eigencam"
    assert png_type == "image/png" and png_name.endswith("_viewer.png")
    grid = np.asarray(Image.open(io.BytesIO(base64.b64decode(png_data))).convert("RGB"))
    assert grid.shape[1] >= 4 * 300 and colour_fraction(grid) > 0.05


def last_tile_ms(page: Page) -> str:
    return str(page.driver.find_element(By.ID, "status").get_attribute("data-last-tile-ms"))


def test_real_radiograph_dropped(page: Page) -> None:
    from pydicom.data import get_testdata_file

    radiograph = Path(str(get_testdata_file("RG1_UNCR.dcm")))
    started = page.arm()
    Select(page.driver.find_element(By.ID, "method")).select_by_value("gradcam")
    page.wait_done(started)  # back to gradcam: the phantom again, then the radiograph
    page.arm()
    started = drop(page, radiograph)
    seconds = page.wait_done(started)
    page.shot("rg1_uncr")
    check_every_tile(page)
    assert "1841×1955" in page.text("", ".arch")
    print(f"RG1_UNCR.dcm: drop to last tile {seconds:.2f} s (the page: {last_tile_ms(page)} ms)")


def test_compressed_phantoms_show_their_film_or_say_why(
    page: Page, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("compressed")
    config = PhantomConfig(n=2, seed=6, size=256, compressed_fraction=1.0)
    for case in generate_phantom(config, root).cases:
        started = page.arm()
        page.driver.find_element(By.ID, "file").send_keys(str(root / case.path))
        page.wait_done(started)
        film, note = page.pixels(""), page.text("", ".note")
        if case.transfer_syntax == RLELossless:  # decoded in the page
            assert film.std() > 8 and note == "", note
        else:  # JPEG 2000: the browser cannot decode it; the models still answer
            assert "cannot show JPEG 2000" in note, note
            assert "p = " in page.text("resnet18", ".label")


def test_a_non_image_shows_a_clear_message(page: Page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a radiograph\n")
    started = page.arm()
    page.driver.find_element(By.ID, "file").send_keys(str(notes))
    page.wait_done(started)
    message = page.driver.find_element(By.ID, "message")
    assert message.is_displayed()
    assert "notes.txt" in message.text and "PNG, JPEG or DICOM" in message.text, message.text
    assert page.driver.find_elements(By.CSS_SELECTOR, "article.tile") == []  # no empty tiles
    page.shot("non_image")
