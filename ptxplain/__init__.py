"""ptxplain: serve chest X-ray classifiers side by side with their Grad-CAM explanations, and
study them. The core library; everything else builds on it and nothing here imports upward.

errors        the one exception hierarchy and its gRPC / HTTP status mapping
build_info    ptxplain's version and those of torch, TorchServe, Python (no imports)
image_format  which image a body holds (PNG, JPEG, DICOM), from its magic bytes; no dependencies
protos        the generation of the Python stubs from protos/ and their drift check
models        the registry of architectures, model metadata, local weights
imaging       decoding (PNG / JPEG / DICOM) and letterbox preprocessing
explain       the engine (logits + CAM from one forward pass), CAM methods, maps, options, codec
v1, torchserve, oip  generated protobuf / gRPC stubs (ptxplain.v1, TorchServe's own, and
              the Open Inference Protocol's)
cli           the ``ptxplain`` command (the one door that may import every layer)
"""

__version__ = "0.1.0"  # the one place; pyproject.toml reads it

__all__ = [
    "__version__",
    "build_info",
    "cli",
    "errors",
    "explain",
    "image_format",
    "imaging",
    "models",
    "oip",
    "protos",
    "torchserve",
    "v1",
]
