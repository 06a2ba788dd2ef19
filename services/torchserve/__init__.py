"""Everything between ptxplain's model handler and a real TorchServe 0.12.

config      TorchServeConfig -> config.properties (ports, tokens, limits, workers)
process     start TorchServe as a process group we own, wait until ready, stop it
auth        key_file.json, bearer tokens, refresh after a rejection
client      prediction options / results and the REST client (ExplainResult + HTTP status)
grpc_client the blocking gRPC client and what a failed TorchServe gRPC call means
management  list / describe models and their workers
"""

from services.torchserve.auth import KeyKind, TokenKeys, TokenSource, read_key_file, token_source
from services.torchserve.client import Prediction, RestClient, rest_client
from services.torchserve.config import (
    DEFAULT_MAX_REQUEST_SIZE,
    DEFAULT_MAX_RESPONSE_SIZE,
    GATEWAY_IMAGE_CAP,
    Ports,
    TorchServeConfig,
)
from services.torchserve.grpc_client import GrpcClient, error_from_rpc, grpc_client
from services.torchserve.management import ManagementClient, ModelStatus, management_client
from services.torchserve.process import TorchServeProcess, group_members, stop_pid_file

__all__ = [
    "DEFAULT_MAX_REQUEST_SIZE",
    "DEFAULT_MAX_RESPONSE_SIZE",
    "GATEWAY_IMAGE_CAP",
    "GrpcClient",
    "KeyKind",
    "ManagementClient",
    "ModelStatus",
    "Ports",
    "Prediction",
    "RestClient",
    "TokenKeys",
    "TokenSource",
    "TorchServeConfig",
    "TorchServeProcess",
    "error_from_rpc",
    "group_members",
    "grpc_client",
    "management_client",
    "read_key_file",
    "rest_client",
    "stop_pid_file",
    "token_source",
]
