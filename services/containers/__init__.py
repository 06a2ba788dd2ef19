"""Container images of ptxplain and the small programs they run (docs/containers.md).

model-server.Dockerfile  TorchServe 0.12 + ptxplain's handler (CPU, or CUDA via a build arg)
gateway.Dockerfile       the grpc.aio gateway and its HTTP/JSON twin (no torch)
requirements             pinned requirement lines read from pyproject.toml (build stage)
torchserve_properties    config.properties for a container, rendered by TorchServeConfig
healthcheck              HTTP probe for HEALTHCHECK (TorchServe /ping, gateway /healthz)
compose/                 the gateway and Prometheus configs used by docker-compose.yml
images                   `make images`: build both, with Docker or buildah
engine                   which tool builds: a Docker engine, else buildah (apt-installed)
base_image               a stand-in python:3.11-slim-bookworm from Debian's packages
host_pip                 the host's pip settings, handed to a build
"""

__all__ = [
    "base_image",
    "engine",
    "healthcheck",
    "host_pip",
    "images",
    "requirements",
    "torchserve_properties",
]
