"""Services: the gateway (gRPC + HTTP/JSON twin), TorchServe's launcher and clients, the local
stack that ``make deploy`` starts, and the container images' helpers.
"""

__all__ = [
    "containers",
    "gateway",
    "stack",
    "torchserve",
]
