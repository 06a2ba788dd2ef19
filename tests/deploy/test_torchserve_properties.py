"""config.properties for containers, rendered by TorchServeConfig."""

from __future__ import annotations

from pathlib import Path

from services.containers import torchserve_properties as props
from services.containers.torchserve_properties import main, render
from tests.deploy.support import REPO

COMMITTED = REPO / "k8s" / "base" / "model-server" / "config.properties"


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")
    return {key: value for key, value in pairs}


def test_committed_cluster_config_is_current() -> None:
    assert COMMITTED.read_text() == render(token_auth=False), (
        "stale: python -m services.containers.torchserve_properties --no-token-auth "
        "--out k8s/base/model-server/config.properties"
    )


def test_container_settings() -> None:
    cluster, image = _properties(render(token_auth=False)), _properties(render(token_auth=True))
    assert cluster["disable_token_authorization"] == "true"
    assert image["disable_token_authorization"] == "false", "a lone `docker run` keeps tokens"
    for values in (cluster, image):
        assert values["inference_address"] == "http://0.0.0.0:8080"
        assert values["grpc_inference_address"] == "0.0.0.0"
        assert values["model_store"] == str(props.MODEL_STORE)
        assert values["enable_model_api"] == "false"
        assert values["metrics_mode"] == "prometheus"


def test_main_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "etc" / "config.properties"
    assert main(["--no-token-auth", "--out", str(out)]) == 0
    assert out.read_text() == render(token_auth=False)
