"""The gateway: one request fans out to every model served by TorchServe (gRPC), answered over
gRPC (``ptxplain.v1.Explainer``) and its HTTP/JSON twin.

config        GatewayConfig: listen addresses, caps, deadlines, model -> backend map (YAML/env)
backend       one TorchServe: reused channel, in-flight bound, deadlines, connection retries, tokens
catalog       which models exist where, their metadata and readiness (management API)
edge          checks before the fan-out: image cap and format, model names, options
fanout        Gateway: the core both APIs share; per-model outcomes, partial answers
grpc_service  the Explainer service, health, reflection, the one interceptor; create_server
http_app      the FastAPI twin and its one error-handler set
runner        both servers in one loop; SIGTERM -> graceful stop
client        a blocking client for the CLI, benchmarks and tests
"""

from ptxplain.explain.options import ExplainOptions
from services.gateway.catalog import ModelInfo
from services.gateway.client import ExplainerClient
from services.gateway.config import BackendConfig, GatewayConfig, TlsConfig, load_config
from services.gateway.fanout import Gateway, ModelOutcome
from services.gateway.grpc_service import create_server
from services.gateway.http_app import create_http_app
from services.gateway.runner import RunningGateway, serve, start_gateway

__all__ = [
    "BackendConfig",
    "ExplainOptions",
    "ExplainerClient",
    "Gateway",
    "GatewayConfig",
    "ModelInfo",
    "ModelOutcome",
    "RunningGateway",
    "TlsConfig",
    "create_http_app",
    "create_server",
    "load_config",
    "serve",
    "start_gateway",
]
