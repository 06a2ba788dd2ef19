# syntax=docker/dockerfile:1
# ptxplain model server: TorchServe 0.12 + ptxplain's handler, one image for every architecture.
# Build from the repository root (docs/containers.md):
#   CPU   docker build -f services/containers/model-server.Dockerfile -t ptxplain/model-server:cpu .
#   CUDA  docker build -f services/containers/model-server.Dockerfile --build-arg TORCH_INDEX_URL= \
#           -t ptxplain/model-server:cuda .
#   with the archives baked in (default: mounted at /home/model-server/model-store):
#         docker build -f services/containers/model-server.Dockerfile --target baked \
#           --build-context archives=model_store -t ptxplain/model-server:cpu-baked .
# TORCH_INDEX_URL picks the torch wheel: PyTorch's CPU index (default), or empty for PyPI's
# default wheel, which bundles the CUDA runtime (the host needs the NVIDIA driver and container
# toolkit). Versions come from pyproject.toml alone (services/containers/requirements.py).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- base: Java 17 for TorchServe's frontend, tini as PID 1, a non-root user -------------------
FROM ${PYTHON_IMAGE} AS base
# Debian's security updates move these versions; the base image tag pins the release.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 model-server \
    && useradd --uid 1000 --gid 1000 --home-dir /home/model-server --create-home \
        --shell /usr/sbin/nologin model-server \
    && mkdir -p /home/model-server/model-store /home/model-server/run /home/model-server/logs \
    && chown -R 1000:1000 /home/model-server

# -- deps: the virtualenv, installed where it runs --------------------------------------------
# The runtime stage starts from here rather than copying /opt/venv (several GB with torch):
# a source change then rebuilds only the layers that hold /app.
FROM base AS deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /tmp/requirements
COPY pyproject.toml services/containers/requirements.py ./
RUN python -m venv /opt/venv \
    && python requirements.py pyproject.toml --only torch torchvision > torch.txt \
    && python requirements.py pyproject.toml > requirements.txt \
    && pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} -r torch.txt \
    && pip install -r requirements.txt \
    && rm -rf /tmp/requirements

# -- build: the sources, compiled, and the image's own config ---------------------------------
FROM deps AS build
WORKDIR /build
COPY ptxplain /app/ptxplain
COPY handlers /app/handlers
COPY harness /app/harness
COPY services /app/services
# The image's own config: token authorization on (a lone `docker run`); Compose and
# Kubernetes mount k8s/base/model-server/config.properties over it.
RUN PYTHONPATH=/app python -m services.containers.torchserve_properties --token-auth \
        --out /build/config.properties \
    && python -m compileall -q /app

# -- runtime: deps + /app and the config from build ------------------------------------------
FROM deps AS runtime
COPY --from=build /app /app
COPY --from=build /build/config.properties /etc/ptxplain/torchserve/config.properties
# TS_CONFIG_FILE: the launcher's config (wins over --ts-config); TEMP: java.io.tmpdir, where
# archives are extracted and the workers' sockets live; LOG_LOCATION: TorchServe's log files
# (its own log also goes to stdout); caches under /tmp, the one writable path besides run/ and
# logs/ when the root filesystem is read-only. NVIDIA_*: read by the NVIDIA runtime only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/model-server \
    TS_CONFIG_FILE=/etc/ptxplain/torchserve/config.properties \
    TEMP=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/.matplotlib \
    LOG_LOCATION=/home/model-server/logs \
    METRICS_LOCATION=/home/model-server/logs \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 1000:1000
# key_file.json (token authorization on) is written to the working directory.
WORKDIR /home/model-server/run
# 8080 REST inference, 8081 management, 8082 metrics, 7070 gRPC inference, 7071 gRPC management
EXPOSE 8080 8081 8082 7070 7071
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-m", "services.containers.healthcheck", "http://127.0.0.1:8080/ping", \
         "--key-file", "/home/model-server/run/key_file.json"]
# tini -g forwards SIGTERM to the whole group: the launcher, the JVM and the Python workers.
ENTRYPOINT ["tini", "-g", "--", "torchserve", "--foreground", "--ncs", \
            "--model-store", "/home/model-server/model-store"]
# Which archives to load: `all`, or a comma-separated list such as resnet50.mar,vit_s16.mar.
CMD ["--models", "all"]

# -- baked: the archives inside the image (build with --build-context archives=model_store) ----
FROM runtime AS baked
# `archives` is a named build context, not an earlier stage.
# hadolint ignore=DL3022
COPY --from=archives --chown=1000:1000 *.mar /home/model-server/model-store/

# -- default target: archives mounted at /home/model-server/model-store -----------------------
FROM runtime AS mounted
