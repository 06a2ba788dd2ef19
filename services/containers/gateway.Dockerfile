# syntax=docker/dockerfile:1
# ptxplain gateway: gRPC 50051 (ptxplain.v1.Explainer, health, reflection) and the HTTP/JSON twin
# on 8000. No torch: only the gateway's own dependencies (the list below; versions come from
# pyproject.toml through services/containers/requirements.py). Build from the repository root:
#   docker build -f services/containers/gateway.Dockerfile -t ptxplain/gateway:0.1.0 .
# Run with a config (services/gateway/config.py): mount it and set PTXPLAIN_GATEWAY_CONFIG, or
# pass its YAML text in PTXPLAIN_GATEWAY_CONFIG_YAML (docs/containers.md).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtualenv with the gateway's dependencies, then the sources ---------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /build
COPY pyproject.toml services/containers/requirements.py ./
# tests/deploy/test_images.py checks that this list covers everything the gateway imports.
RUN python requirements.py pyproject.toml --only \
        grpcio grpcio-health-checking grpcio-reflection protobuf pyyaml requests \
        fastapi pydantic uvicorn prometheus-client python-multipart fastapi-offline > gateway.txt \
    && pip install -r gateway.txt
# ptxplain (the CLI, errors, stubs) and services; not handlers/ or harness/ (torch, numpy).
COPY ptxplain /app/ptxplain
COPY services /app/services
RUN python -m compileall -q /app

# -- runtime: tini as PID 1, a non-root user ----------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# Debian's security updates move this version; the base image tag pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 gateway \
    && useradd --uid 1000 --gid 1000 --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 1000:1000
WORKDIR /app
EXPOSE 50051 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "services.containers.healthcheck", "http://127.0.0.1:8000/healthz"]
# `ptxplain gateway` without an installed console script (the image has no torch, so every
# subcommand module must import without it; tests/deploy/test_entrypoints.py runs this).
ENTRYPOINT ["tini", "--", "python", "-c", "import sys; from ptxplain.cli import main; sys.exit(main())", \
            "gateway"]
