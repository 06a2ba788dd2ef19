"""The interactive API docs (/docs: Swagger UI, /redoc: ReDoc) load with no network: every asset
comes from the gateway itself, and a real headless Chromium that can resolve no other host
renders the operations."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator

import pytest
import requests

from services.gateway import RunningGateway
from tests.gateway.conftest import LoopThread
from tests.gateway.fakes import FakeMetadata, FakeModel, FakeTorchServe, gateway_config

TOKEN = "docs-token"
_BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
_DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def base(loop_thread: LoopThread) -> Iterator[str]:
    fake = FakeTorchServe({"fast": FakeModel()})
    loop_thread.run(fake.start())
    config = gateway_config({"main": (fake.target, ("fast",))}, client_token=TOKEN)
    running: RunningGateway = loop_thread.start_gateway(config, FakeMetadata())
    yield f"http://127.0.0.1:{running.http_port}"
    loop_thread.run(running.stop(0))
    loop_thread.run(fake.stop())


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_the_gateways_own_assets(base: str, page: str) -> None:
    answer = requests.get(base + page, timeout=10)  # no token: the docs are open
    assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', answer.text)
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    assert "cdn" not in answer.text.lower() and "fonts.googleapis" not in answer.text
    for asset in assets:
        fetched = requests.get(base + asset, timeout=10)
        assert fetched.status_code == 200 and len(fetched.content) > 1000, asset


def test_openapi_document_lists_both_protocols(base: str) -> None:
    paths = requests.get(f"{base}/openapi.json", timeout=10).json()["paths"]
    assert {"/v1/explain", "/v2/models/{model}/infer", "/v2/health/ready"} <= set(paths)
    explain = paths["/v1/explain"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in explain


@pytest.mark.skipif(_BROWSER is None or _DRIVER is None, reason="no chromium / chromedriver")
def test_swagger_ui_renders_in_a_browser_with_no_network(base: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = str(_BROWSER)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    # Every host but the loopback fails to resolve: a CDN asset could not load.
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(_DRIVER)))
    try:
        driver.get(f"{base}/docs")
        deadline = time.monotonic() + 30
        paths: list[str] = []
        while time.monotonic() < deadline and "/v2/models/{model}/infer" not in paths:
            time.sleep(0.2)
            found = driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
            paths = [e.get_attribute("data-path") or e.text for e in found]
        assert "/v1/explain" in paths and "/v2/models/{model}/infer" in paths
        requested = [
            json.loads(entry["message"])["message"]["params"]["request"]["url"]
            for entry in driver.get_log("performance")
            if '"Network.requestWillBeSent"' in entry["message"]
        ]
        outside = [u for u in requested if not u.startswith((base, "data:", "blob:"))]
        assert requested and not outside, outside
    finally:
        driver.quit()
