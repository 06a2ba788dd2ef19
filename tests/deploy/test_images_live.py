"""The container images, built and run for real, as docker-compose.yml runs them.

Both images are built (``make images``'s code: Docker with an engine, else buildah with a
local stand-in base; the host's pip settings handed in). Then the Compose services
``model-server-cpu`` and ``gateway`` run from the file itself: each image's ENTRYPOINT with
the service's command, environment, configs, secrets, bind mounts and tmpfs folders, in the
image's filesystem and as its user (tests/deploy/image_runner.py, compose_run.py), in a
network namespace of their own. The model server mounts archives built here (one small
random-init model per architecture family). A phantom DICOM goes gateway -> model server
over gRPC and HTTP: every model answers with a map. Each image's HEALTHCHECK passes, the
processes run as the images' non-root users, and SIGTERM stops every one of them. Then: the
gateway image names a backend whose key file it cannot use (missing, or in a folder its user
cannot enter), and the model-server image with its own config (token authorization on) serves
a gateway image that reads the key file TorchServe wrote.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.phantom.generate import PhantomConfig, generate_phantom
from services.containers.engine import Engine, EngineMissing, find_engine, install_debian_packages
from services.containers.host_pip import host_pip
from services.containers.images import BuildOptions, Built, build_images, torch_index_url
from tests.conftest import _TIMINGS, LIVE_ARCHS, build_live_store
from tests.deploy.compose_run import compose_file, service_names, service_spec
from tests.deploy.image_runner import ImageProcess, Mount, NetNamespace
from tests.deploy.support import REPO

pytestmark = [pytest.mark.live, pytest.mark.timeout(3600)]

STACK = ["model-server-cpu", "gateway"]
# The user each image's Dockerfile creates (USER 1000:1000).
IMAGE_UID = 1000


@pytest.fixture(scope="module")
def engine() -> Engine:
    try:
        found = find_engine(install=True)
    except EngineMissing as exc:
        pytest.skip(f"neither a Docker engine nor buildah can be had here: {exc}")
    if found.kind == "buildah" and shutil.which("ip") is None:
        install_debian_packages(["iproute2"])  # `ip netns`: the stack's own network
    return found


@pytest.fixture(scope="module")
def built(engine: Engine) -> Mapping[str, Built]:
    pip = host_pip()
    options = BuildOptions(engine=engine, pip=pip, torch_index=torch_index_url(pip))
    images = build_images(options)
    _TIMINGS["images"] = f"{engine.kind}: " + "; ".join(b.summary() for b in images.values())
    return images


def _wait_healthy(
    container: ImageProcess, timeout_s: float, check: Sequence[str] | None = None
) -> float:
    """Run the image's HEALTHCHECK in the container until it passes; seconds it took."""
    started = time.monotonic()
    check = check or container.spec.healthcheck
    assert check, f"{container.spec.image} has no HEALTHCHECK"
    last = None
    while time.monotonic() - started < timeout_s and container.alive():
        last = container.exec(check, timeout_s=60)
        if last.returncode == 0:
            return time.monotonic() - started
        time.sleep(3)
    detail = (last.stderr if last else "") + container.log_tail()
    pytest.fail(f"{container.spec.image}: HEALTHCHECK never passed:\n{detail}")


@dataclasses.dataclass
class Stack:
    netns: NetNamespace | None
    model_server: ImageProcess
    gateway: ImageProcess
    token: Path
    dicom: Path
    store: Path
    models: list[str]
    ready_s: dict[str, float]
    left: dict[str, list[int]] = dataclasses.field(default_factory=dict)


def _start(
    engine: Engine, name: str, scratch: Path, replace: dict[str, Path], ns: Any
) -> ImageProcess:
    hosts = service_names(compose_file(), STACK)
    spec = service_spec(engine, name, scratch, replace, env={}, hosts=hosts)
    return ImageProcess(engine, spec, ns, scratch / f"{name}.log").start()


@pytest.fixture(scope="module")
def stack(
    engine: Engine,
    built: Mapping[str, Built],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    scratch = tmp_path_factory.mktemp("image-stack")
    store = scratch / "model_store"
    models = sorted(archive.name for archive in build_live_store(store))
    token = scratch / "gateway-token"
    token.write_text(secrets.token_urlsafe(24) + "\n")
    token.chmod(0o644)
    generate_phantom(PhantomConfig(n=1, seed=7, size=256, compressed_fraction=0.0), scratch / "ph")
    dicom = next((scratch / "ph").rglob("*.dcm"))
    replace = {
        "./model_store": store,
        "./run/compose/gateway-token": token,
    }
    netns = NetNamespace() if engine.kind == "buildah" else None
    model_server = _start(engine, "model-server-cpu", scratch, replace, netns)
    gateway = None
    try:
        ready = {"model-server": _wait_healthy(model_server, 600)}
        gateway = _start(engine, "gateway", scratch, replace, netns)
        ready["gateway"] = _wait_healthy(gateway, 120)
        live = Stack(netns, model_server, gateway, token, dicom, store, models, ready)
        yield live
    finally:
        if gateway is not None:
            left = gateway.stop(timeout_s=30)
            assert not left, f"gateway processes left after SIGTERM: {left}"
        left = model_server.stop(timeout_s=60)
        if netns is not None:
            netns.delete()
    assert not left, f"model-server processes left after SIGTERM: {left}"


def _client(stack: Stack, *extra: str, expect: int = 0) -> dict[str, Any]:
    command = [sys.executable, "-m", "tests.deploy.image_client"]
    command += ["--image", str(stack.dicom), "--token-file", str(stack.token)]
    command += ["--expect-models", str(expect or len(stack.models)), *extra]
    if stack.netns is not None:
        command = stack.netns.wrap(command)
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=900, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:] + stack.gateway.log_tail()
    return dict(json.loads(result.stdout))


def test_gateway_image_explains_a_phantom_dicom_through_the_model_server_image(
    stack: Stack,
) -> None:
    reply = _client(stack)
    assert "not_ready" not in reply, reply
    expected = stack.models
    assert len(expected) == len(LIVE_ARCHS)
    assert reply["models"] == expected and reply["unlisted"] == [], reply
    assert reply["health"] == "SERVING"
    grpc_results = {r["model"]: r for r in reply["grpc"]}
    assert sorted(grpc_results) == expected
    for model, result in grpc_results.items():
        assert result["code"] == 0 and result["maps"] >= 1 and result["map_bytes"] > 0, model
    assert reply["grpc_garbage"] == "INVALID_ARGUMENT"
    http = reply["http"]
    assert http["status"] == 200 and sorted(r["model"] for r in http["results"]) == expected
    assert all(r["code"] == "OK" and r["maps"] >= 1 for r in http["results"]), http
    assert http["garbage_status"] == 400
    assert http["readyz"]["status"] == 200 and http["readyz"]["unlisted_backends"] == []
    summary = ", ".join(
        f"{m} OK p={r['positive_probability']:.3f} {r['map_bytes']} B map"
        for m, r in grpc_results.items()
    )
    _TIMINGS["gateway-in-image reply to a phantom DICOM"] = (
        f"gRPC {summary}; HTTP 200 x{len(http['results'])}; garbage: "
        f"{reply['grpc_garbage']} / {http['garbage_status']}; ready after "
        + ", ".join(f"{k} {v:.0f} s" for k, v in stack.ready_s.items())
    )


@pytest.mark.parametrize("service", ["model_server", "gateway"])
def test_image_processes_run_as_the_images_user(stack: Stack, service: str) -> None:
    container: ImageProcess = getattr(stack, service)
    assert container.exec(["id", "-u"]).stdout.strip() == str(IMAGE_UID)
    inside = container.processes().values()
    programs = ("tini", "java", "python", "python3", "torchserve")
    served = {c: u for c, u in inside if Path(c.split()[0]).name in programs}
    assert any("java" in c for c in served) or any("ptxplain.cli" in c for c in served), served
    assert set(served.values()) == {IMAGE_UID}, served


def test_gateway_image_holds_no_torch(stack: Stack) -> None:
    for module in ("torch", "numpy", "handlers", "harness"):
        answer = stack.gateway.exec(["python", "-c", f"import {module}"])
        assert answer.returncode != 0 and "ModuleNotFoundError" in answer.stderr, module


_READYZ = """
import json, urllib.error, urllib.request
try:
    answer = urllib.request.urlopen("http://127.0.0.1:8010/readyz", timeout=30)
except urllib.error.HTTPError as exc:
    answer = exc
print(json.dumps({"status": answer.status, **json.loads(answer.read())}))
"""


@pytest.mark.parametrize(
    ("folder_mode", "reason"), [(0o700, "key_file_unreadable"), (0o755, "key_file_missing")]
)
def test_gateway_image_names_a_backend_whose_key_file_it_cannot_use(
    stack: Stack, engine: Engine, tmp_path: Path, folder_mode: int, reason: str
) -> None:
    """A key file in a folder the image's user cannot enter (a 0700 Secret mount), or absent."""
    keys = tmp_path / "keys"
    keys.mkdir(mode=folder_mode)
    keys.chmod(folder_mode)
    if folder_mode == 0o700:
        (keys / "key_file.json").write_text(json.dumps({"management": {"key": "k"}}))
    config = {
        "host": "127.0.0.1",
        "grpc_port": 50061,
        "http_port": 8010,
        "backends": [
            {
                "name": "model-server",
                "grpc": "model-server:7070",
                "management": "http://model-server:8081",
                "models": "all",
                "key_file": "/etc/ptxplain/keys/key_file.json",
            }
        ],
    }
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config))
    base = service_spec(engine, "gateway", tmp_path, hosts=service_names(compose_file(), STACK))
    spec = dataclasses.replace(
        base,
        env={"PTXPLAIN_GATEWAY_CONFIG": "/etc/ptxplain/gateway/gateway.yaml"},
        mounts=(
            Mount(tmp_path / "gateway.yaml", "/etc/ptxplain/gateway/gateway.yaml"),
            Mount(keys, "/etc/ptxplain/keys"),
        ),
    )
    gateway = ImageProcess(engine, spec, stack.netns, tmp_path / "gateway.log").start()
    try:
        moved = [c.replace(":8000/", ":8010/") for c in spec.healthcheck]
        _wait_healthy(gateway, 120, moved)
        answer = gateway.exec(["python", "-c", _READYZ])
        assert answer.returncode == 0, answer.stderr + gateway.log_tail()
        ready = json.loads(answer.stdout)
        assert ready["status"] == 503 and ready["models"] == [], ready
        assert [(u["backend"], u["reason"]) for u in ready["unlisted_backends"]] == [
            ("model-server", reason)
        ]
        assert f"({reason})" in gateway.log_tail(20000)  # the warning in the container's log
    finally:
        assert not gateway.stop(timeout_s=30)


def test_model_server_image_with_its_own_config_and_the_gateway_reading_its_key_file(
    stack: Stack, engine: Engine, tmp_path: Path
) -> None:
    """No config mounted: the image's own (token authorization on). TorchServe writes its key
    file into the run folder; its HEALTHCHECK sends that key; a gateway given the same file
    lists and calls the model with it. A namespace of its own: the images' default ports."""
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o1777)
    base = service_spec(engine, "model-server-cpu", tmp_path, {"./model_store": stack.store})
    store = tuple(m for m in base.mounts if m.target == "/home/model-server/model-store")
    spec = dataclasses.replace(
        base,
        command=(*base.command[:-2], "--models", "resnet18.mar"),  # one group's list
        mounts=(*store, Mount(run, "/home/model-server/run", read_only=False)),
    )
    config = {
        "host": "127.0.0.1",
        "backends": [
            {
                "name": "own-config",
                "grpc": "127.0.0.1:7070",
                "management": "http://127.0.0.1:8081",
                "models": "all",
                "key_file": "/run/torchserve/key_file.json",
            }
        ],
    }
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config))
    gateway_spec = dataclasses.replace(
        service_spec(engine, "gateway", tmp_path),
        env={"PTXPLAIN_GATEWAY_CONFIG": "/etc/ptxplain/gateway/gateway.yaml"},
        mounts=(
            Mount(tmp_path / "gateway.yaml", "/etc/ptxplain/gateway/gateway.yaml"),
            Mount(run, "/run/torchserve"),
        ),
    )
    netns = NetNamespace() if engine.kind == "buildah" else None
    server = ImageProcess(engine, spec, netns, tmp_path / "model-server.log").start()
    gateway = None
    try:
        _wait_healthy(server, 600)
        assert (run / "key_file.json").exists(), "token authorization is on in the image's config"
        keyless = server.exec(list(spec.healthcheck[:-2]))  # the probe without --key-file
        assert keyless.returncode != 0, "TorchServe answered /ping without its key"
        gateway = ImageProcess(engine, gateway_spec, netns, tmp_path / "gateway.log").start()
        _wait_healthy(gateway, 120)
        own = dataclasses.replace(stack, netns=netns, gateway=gateway)
        reply = _client(own, expect=1)
        assert reply["models"] == ["resnet18"] and reply["unlisted"] == [], reply
        assert [(r["model"], r["code"]) for r in reply["grpc"]] == [("resnet18", 0)], reply
        assert reply["grpc"][0]["maps"] >= 1 and reply["http"]["status"] == 200, reply
    finally:
        if gateway is not None:
            assert not gateway.stop(timeout_s=30)
        assert not server.stop(timeout_s=60)
        if netns is not None:
            netns.delete()
