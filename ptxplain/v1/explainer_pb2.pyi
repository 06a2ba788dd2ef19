from ptxplain.v1 import result_pb2 as _result_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExplainOptions(_message.Message):
    __slots__ = ("methods", "target", "map_size", "map_encoding", "normalize", "logits_only")
    METHODS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MAP_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAP_ENCODING_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    LOGITS_ONLY_FIELD_NUMBER: _ClassVar[int]
    methods: _containers.RepeatedScalarFieldContainer[str]
    target: str
    map_size: str
    map_encoding: _result_pb2.MapEncoding
    normalize: bool
    logits_only: bool
    def __init__(self, methods: _Optional[_Iterable[str]] = ..., target: _Optional[str] = ..., map_size: _Optional[str] = ..., map_encoding: _Optional[_Union[_result_pb2.MapEncoding, str]] = ..., normalize: _Optional[bool] = ..., logits_only: _Optional[bool] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("image", "models", "options")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    models: _containers.RepeatedScalarFieldContainer[str]
    options: ExplainOptions
    def __init__(self, image: _Optional[bytes] = ..., models: _Optional[_Iterable[str]] = ..., options: _Optional[_Union[ExplainOptions, _Mapping]] = ...) -> None: ...

class GatewayTimings(_message.Message):
    __slots__ = ("queue_ms", "backend_ms", "gateway_ms", "attempts")
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_MS_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    queue_ms: float
    backend_ms: float
    gateway_ms: float
    attempts: int
    def __init__(self, queue_ms: _Optional[float] = ..., backend_ms: _Optional[float] = ..., gateway_ms: _Optional[float] = ..., attempts: _Optional[int] = ...) -> None: ...

class ModelResult(_message.Message):
    __slots__ = ("model", "status", "result", "gateway_timings", "architecture", "trained", "trained_on")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    TRAINED_FIELD_NUMBER: _ClassVar[int]
    TRAINED_ON_FIELD_NUMBER: _ClassVar[int]
    model: str
    status: _result_pb2.Status
    result: _result_pb2.ExplainResult
    gateway_timings: GatewayTimings
    architecture: str
    trained: bool
    trained_on: str
    def __init__(self, model: _Optional[str] = ..., status: _Optional[_Union[_result_pb2.Status, _Mapping]] = ..., result: _Optional[_Union[_result_pb2.ExplainResult, _Mapping]] = ..., gateway_timings: _Optional[_Union[GatewayTimings, _Mapping]] = ..., architecture: _Optional[str] = ..., trained: _Optional[bool] = ..., trained_on: _Optional[str] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("request_id", "results", "image_format", "image_bytes", "total_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    results: _containers.RepeatedCompositeFieldContainer[ModelResult]
    image_format: str
    image_bytes: int
    total_ms: float
    def __init__(self, request_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ModelResult, _Mapping]]] = ..., image_format: _Optional[str] = ..., image_bytes: _Optional[int] = ..., total_ms: _Optional[float] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "architecture", "family", "version", "input_size", "classes", "positive_class", "threshold", "depth", "parameters", "flops", "trained", "ready", "backend", "weights_source", "detail", "methods", "trained_on", "data_fingerprint", "cam_grid", "training_digests")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_CLASS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    FLOPS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_ON_FIELD_NUMBER: _ClassVar[int]
    DATA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CAM_GRID_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    architecture: str
    family: str
    version: str
    input_size: int
    classes: _containers.RepeatedScalarFieldContainer[str]
    positive_class: int
    threshold: float
    depth: int
    parameters: int
    flops: int
    trained: bool
    ready: bool
    backend: str
    weights_source: str
    detail: str
    methods: _containers.RepeatedScalarFieldContainer[str]
    trained_on: str
    data_fingerprint: str
    cam_grid: _containers.RepeatedScalarFieldContainer[int]
    training_digests: int
    def __init__(self, name: _Optional[str] = ..., architecture: _Optional[str] = ..., family: _Optional[str] = ..., version: _Optional[str] = ..., input_size: _Optional[int] = ..., classes: _Optional[_Iterable[str]] = ..., positive_class: _Optional[int] = ..., threshold: _Optional[float] = ..., depth: _Optional[int] = ..., parameters: _Optional[int] = ..., flops: _Optional[int] = ..., trained: _Optional[bool] = ..., ready: _Optional[bool] = ..., backend: _Optional[str] = ..., weights_source: _Optional[str] = ..., detail: _Optional[str] = ..., methods: _Optional[_Iterable[str]] = ..., trained_on: _Optional[str] = ..., data_fingerprint: _Optional[str] = ..., cam_grid: _Optional[_Iterable[int]] = ..., training_digests: _Optional[int] = ...) -> None: ...

class UnlistedBackend(_message.Message):
    __slots__ = ("backend", "reason", "detail")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    backend: str
    reason: str
    detail: str
    def __init__(self, backend: _Optional[str] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "unlisted_backends")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    UNLISTED_BACKENDS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    unlisted_backends: _containers.RepeatedCompositeFieldContainer[UnlistedBackend]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., unlisted_backends: _Optional[_Iterable[_Union[UnlistedBackend, _Mapping]]] = ...) -> None: ...

class ModelResultBytes(_message.Message):
    __slots__ = ("model", "status", "result", "gateway_timings", "architecture", "trained", "trained_on")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    TRAINED_FIELD_NUMBER: _ClassVar[int]
    TRAINED_ON_FIELD_NUMBER: _ClassVar[int]
    model: str
    status: _result_pb2.Status
    result: bytes
    gateway_timings: GatewayTimings
    architecture: str
    trained: bool
    trained_on: str
    def __init__(self, model: _Optional[str] = ..., status: _Optional[_Union[_result_pb2.Status, _Mapping]] = ..., result: _Optional[bytes] = ..., gateway_timings: _Optional[_Union[GatewayTimings, _Mapping]] = ..., architecture: _Optional[str] = ..., trained: _Optional[bool] = ..., trained_on: _Optional[str] = ...) -> None: ...

class ExplainResponseBytes(_message.Message):
    __slots__ = ("request_id", "results", "image_format", "image_bytes", "total_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    results: _containers.RepeatedCompositeFieldContainer[ModelResultBytes]
    image_format: str
    image_bytes: int
    total_ms: float
    def __init__(self, request_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ModelResultBytes, _Mapping]]] = ..., image_format: _Optional[str] = ..., image_bytes: _Optional[int] = ..., total_ms: _Optional[float] = ...) -> None: ...

class ExplainResultHead(_message.Message):
    __slots__ = ("status", "model", "positive", "timings", "trained")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_FIELD_NUMBER: _ClassVar[int]
    status: _result_pb2.Status
    model: str
    positive: bool
    timings: _result_pb2.Timings
    trained: bool
    def __init__(self, status: _Optional[_Union[_result_pb2.Status, _Mapping]] = ..., model: _Optional[str] = ..., positive: _Optional[bool] = ..., timings: _Optional[_Union[_result_pb2.Timings, _Mapping]] = ..., trained: _Optional[bool] = ...) -> None: ...
