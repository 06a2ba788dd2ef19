"""The gateway's typed config: YAML / environment in, validated objects out, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptxplain.errors import ConfigError
from services.gateway.config import CONFIG_YAML_ENV, TOKEN_ENV, load_config

YAML = """
grpc_port: 0
http_port: null
model_timeouts_s: {vit_s16: 5}
backends:
  - name: cnn
    grpc: 127.0.0.1:7070
    management: http://127.0.0.1:8081
    key_file: keys/key_file.json
    models: [resnet18, vgg16]
    max_in_flight: 4
  - name: vit
    grpc: vit-pod:7070
    management: http://vit-pod:8081
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_yaml_file_gives_a_typed_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, YAML), env={})
    cnn, vit = config.backends
    assert cnn.models == ("resnet18", "vgg16") and not cnn.discovers and cnn.max_in_flight == 4
    assert cnn.key_file == tmp_path / "keys" / "key_file.json"  # relative to the YAML file
    assert vit.discovers and vit.key_file is None
    assert config.http_port is None and config.grpc_port == 0
    assert config.timeout_for("vit_s16") == 5 and config.timeout_for("resnet18") == 60
    assert config.max_request_bytes > config.max_image_bytes == 32 * 1024 * 1024
    assert config.client_token is None


def test_environment_carries_the_yaml_and_the_token() -> None:
    config = load_config(None, env={CONFIG_YAML_ENV: YAML, TOKEN_ENV: "s3cret"})
    assert config.client_token == "s3cret" and "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (YAML.replace("max_in_flight: 4", "max_inflight: 4"), "max_inflight"),
        (YAML.replace("grpc_port: 0", "grpc_prot: 0"), "grpc_prot"),
        (
            YAML.replace("[resnet18, vgg16]", "[resnet18, resnet18x]\n    max_request_bytes: 1000"),
            "max_request_bytes",
        ),
        (
            YAML.replace(
                "vit-pod:7070\n    management: http://vit-pod:8081",
                "vit:7070\n    management: http://vit:8081\n    models: [vgg16]",
            ),
            "vgg16",
        ),
        ("backends: []", "backends"),
        ("host: 0.0.0.0\n" + YAML, "token"),
        (YAML.replace("127.0.0.1:7070", "nohostport"), "host:port"),
        ("[1, 2", "YAML"),
    ],
)
def test_bad_config_names_what_is_wrong(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(write(tmp_path, text), env={})


def test_remote_bind_with_a_token_file_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("abc\n")
    config = load_config(
        write(tmp_path, "host: 0.0.0.0\nclient_token_file: token\n" + YAML), env={}
    )
    assert config.client_token == "abc"


def test_no_config_at_all_is_an_error() -> None:
    with pytest.raises(ConfigError, match="--config"):
        load_config(None, env={})


def test_unknown_keys_are_located_like_the_yaml(tmp_path: Path) -> None:
    text = YAML.replace("max_in_flight: 4", "max_inflight: 4").replace(
        "grpc_port: 0", "grpc_port: 70000"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    message = str(caught.value)
    assert "backends[0].max_inflight: unknown key" in message
    assert "grpc_port: Input should be less than or equal to 65535" in message
    assert "too short" not in message


def test_overrides_are_validated_again(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, YAML), env={})
    assert config.replaced(grpc_port=1234).grpc_port == 1234
    with pytest.raises(ConfigError, match="grpc_port"):
        config.replaced(grpc_port=-1)
    with pytest.raises(ConfigError, match="token"):
        config.replaced(host="0.0.0.0")
