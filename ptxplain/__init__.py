"""ptxplain: serve chest X-ray classifiers side by side with their Grad-CAM explanations, and
study them. The core library; everything else builds on it and nothing here imports upward.

errors        the one exception hierarchy and its gRPC / HTTP status mapping
image_format  which image a body holds (PNG, JPEG, DICOM), from its magic bytes; no dependencies
protos        the generation of the Python stubs from protos/ and their drift check
models        the registry of architectures, model metadata, local weights
imaging       decoding (PNG / JPEG / DICOM) and letterbox preprocessing
explain       the engine (logits + CAM from one forward pass), CAM methods, maps, options, codec
v1, torchserve  generated protobuf / gRPC stubs (ptxplain.v1 and TorchServe's own)
cli           the ``ptxplain`` command (the one door that may import every layer)
"""

__all__ = [
    "cli",
    "errors",
    "explain",
    "image_format",
    "imaging",
    "models",
    "protos",
    "torchserve",
    "v1",
]
