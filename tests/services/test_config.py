"""TorchServeConfig: defaults, validation, and the rendered config.properties."""

from __future__ import annotations

import dataclasses
import re
import zipfile
from pathlib import Path

import pytest

from ptxplain.errors import ConfigError
from services.torchserve import (
    DEFAULT_MAX_REQUEST_SIZE,
    GATEWAY_IMAGE_CAP,
    Ports,
    TorchServeConfig,
)
from services.torchserve.config import (
    LOG_CONFIG,
    SMALL_MACHINE_JVM_FLAGS,
    TORCHSERVE_DEFAULT_MAX_SIZE,
)


def properties(text: str) -> dict[str, str]:
    """key=value lines of a rendered .properties file (comments and blanks skipped)."""
    pairs = [line.split("=", 1) for line in text.splitlines() if line and line[0] not in "#!"]
    return {key.strip(): value.strip() for key, value in pairs}


def make(tmp_path: Path, **kw: object) -> TorchServeConfig:
    return TorchServeConfig(model_store=tmp_path / "store", run_dir=tmp_path / "run", **kw)  # type: ignore[arg-type]


def test_defaults_render_torchserve_properties(tmp_path: Path) -> None:
    props = properties(make(tmp_path).render())
    assert props["inference_address"] == "http://127.0.0.1:8080"
    assert props["management_address"] == "http://127.0.0.1:8081"
    assert props["metrics_address"] == "http://127.0.0.1:8082"
    assert (props["grpc_inference_address"], props["grpc_inference_port"]) == ("127.0.0.1", "7070")
    assert (props["grpc_management_address"], props["grpc_management_port"]) == (
        "127.0.0.1",
        "7071",
    )
    assert props["disable_token_authorization"] == "false"
    assert props["token_expiration_min"] == "60.0"
    assert props["metrics_mode"] == "prometheus"
    assert props["enable_model_api"] == "false"
    assert props["default_workers_per_model"] == "1"
    assert props["load_models"] == "all"
    assert props["model_store"] == str(tmp_path / "store")
    assert int(props["max_request_size"]) == DEFAULT_MAX_REQUEST_SIZE


def test_every_rendered_name_is_a_torchserve_0_12_property(tmp_path: Path) -> None:
    """Each key must be a string constant of the installed frontend's ConfigManager, or (vmargs)
    one that the ``torchserve`` launcher reads."""
    import ts

    jar = Path(ts.__file__).parent / "frontend" / "model-server.jar"
    with zipfile.ZipFile(jar) as opened:
        constants = opened.read("org/pytorch/serve/util/ConfigManager.class")
    launcher = (Path(ts.__file__).parent / "model_server.py").read_text()
    assert 'props.get("vmargs")' in launcher
    for key in properties(make(tmp_path).render()):
        if key != "vmargs":
            assert key.encode() in constants, f"{key} is not a TorchServe 0.12 property"


def test_request_cap_fits_the_gateway_image_cap_with_headroom(tmp_path: Path) -> None:
    config = make(tmp_path)
    assert config.max_request_size > GATEWAY_IMAGE_CAP > TORCHSERVE_DEFAULT_MAX_SIZE
    assert config.max_response_size >= 4 * 1024 * 1024 * 4  # four 1024x1024 float32 maps


def test_fractional_token_expiry_and_named_models(tmp_path: Path) -> None:
    config = make(
        tmp_path, token_expiration_min=0.05, models=("resnet18", "vit_s16"), token_auth=False
    )
    props = properties(config.render())
    assert props["token_expiration_min"] == "0.05"
    assert props["load_models"] == "resnet18.mar,vit_s16.mar"
    assert props["disable_token_authorization"] == "true"
    assert config.expected_models() == ["resnet18", "vit_s16"]


def test_all_models_means_every_archive_in_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    for name in ("b", "a"):
        (store / f"{name}.mar").write_bytes(b"")
    (store / "notes.txt").write_text("x")
    assert make(tmp_path).expected_models() == ["a", "b"]


def test_ports_from_base_and_free_ports(tmp_path: Path) -> None:
    assert Ports.from_base(9000).items()[-1] == ("grpc_management", 9004)
    config = make(tmp_path, ports=Ports(0, 0, 0, 0, 0)).with_free_ports()
    chosen = [port for _, port in config.ports.items()]
    assert all(chosen) and len(set(chosen)) == 5
    assert config.grpc_inference_target == f"127.0.0.1:{config.ports.grpc_inference}"


def test_paths_derive_from_run_dir(tmp_path: Path) -> None:
    config = make(tmp_path)
    run = tmp_path / "run"
    assert (config.key_file, config.pid_file) == (run / "key_file.json", run / "torchserve.pid")
    assert config.log_path.parent == config.log_dir == run / "logs"
    config.write_properties()
    assert config.properties_path.read_text() == config.render()
    assert "$" not in config.render()


def test_a_small_machine_gets_a_lean_frontend(tmp_path: Path) -> None:
    small = make(tmp_path, cores=2)
    props = properties(small.render())
    assert (props["number_of_netty_threads"], props["netty_client_threads"]) == ("1", "1")
    assert props["vmargs"].split() == [
        "-Xmx2048m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        f"-Dlog4j.configurationFile={LOG_CONFIG}",
    ]
    assert small.effective_jvm_flags() == SMALL_MACHINE_JVM_FLAGS


def test_a_larger_machine_keeps_torchserves_and_the_jvms_defaults(tmp_path: Path) -> None:
    props = properties(make(tmp_path, cores=16).render())
    assert (props["number_of_netty_threads"], props["netty_client_threads"]) == ("0", "0")
    assert props["vmargs"].split() == ["-Xmx2048m", f"-Dlog4j.configurationFile={LOG_CONFIG}"]


def test_frontend_settings_given_override_the_derived_ones(tmp_path: Path) -> None:
    config = make(
        tmp_path,
        cores=2,
        netty_threads=0,
        netty_client_threads=3,
        jvm_flags=("-XX:+UseParallelGC",),
        jvm_heap_mb=512,
    )
    props = properties(config.render())
    assert (props["number_of_netty_threads"], props["netty_client_threads"]) == ("0", "3")
    assert props["vmargs"].split()[:2] == ["-Xmx512m", "-XX:+UseParallelGC"]
    assert make(tmp_path, cores=2, jvm_flags=()).effective_jvm_flags() == ()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"ports": Ports(inference=70000)}, "inference=70000"),
        ({"ports": Ports(inference=7070)}, "ports must differ"),
        ({"token_expiration_min": 0.01}, "token_expiration_min"),
        ({"max_request_size": 0}, "max_request_size"),
        ({"max_response_size": 2**31}, "max_response_size"),
        ({"job_queue_size": -1}, "job_queue_size"),
        ({"metrics_mode": "statsd"}, "metrics_mode"),
        ({"models": ("bad name",)}, "bad name"),
        ({"models": ()}, "models"),
        ({"host": "127.0.0.1\nenable_model_api=true"}, "newline"),
        ({"netty_threads": -1}, "netty_threads"),
        ({"netty_client_threads": 5000}, "netty_client_threads"),
        ({"jvm_flags": ("-Xss1m -Dx=y",)}, "one word"),
        ({"jvm_flags": ("Xss1m",)}, "one word"),
        ({"log_config": Path("/a b/log4j2.xml")}, "whitespace"),
        ({"cores": 0}, "cores"),
    ],
)
def test_invalid_settings_are_config_errors(tmp_path: Path, overrides: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        make(tmp_path, **overrides)


def test_run_dir_too_long_for_worker_sockets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too long"):
        TorchServeConfig(model_store=tmp_path, run_dir=tmp_path / ("x" * 120))


def test_config_is_frozen(tmp_path: Path) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make(tmp_path).host = "0.0.0.0"  # type: ignore[misc]
