from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MapEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MAP_ENCODING_UNSPECIFIED: _ClassVar[MapEncoding]
    MAP_ENCODING_FLOAT16: _ClassVar[MapEncoding]
    MAP_ENCODING_FLOAT32: _ClassVar[MapEncoding]
    MAP_ENCODING_UINT8: _ClassVar[MapEncoding]
    MAP_ENCODING_PNG: _ClassVar[MapEncoding]

class MapSpace(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MAP_SPACE_UNSPECIFIED: _ClassVar[MapSpace]
    MAP_SPACE_LAYER: _ClassVar[MapSpace]
    MAP_SPACE_RESIZED: _ClassVar[MapSpace]
MAP_ENCODING_UNSPECIFIED: MapEncoding
MAP_ENCODING_FLOAT16: MapEncoding
MAP_ENCODING_FLOAT32: MapEncoding
MAP_ENCODING_UINT8: MapEncoding
MAP_ENCODING_PNG: MapEncoding
MAP_SPACE_UNSPECIFIED: MapSpace
MAP_SPACE_LAYER: MapSpace
MAP_SPACE_RESIZED: MapSpace

class Status(_message.Message):
    __slots__ = ("code", "message", "http_status")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    http_status: int
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., http_status: _Optional[int] = ...) -> None: ...

class Geometry(_message.Message):
    __slots__ = ("original_height", "original_width", "input_height", "input_width", "scale", "pad_top", "pad_left", "content_height", "content_width")
    ORIGINAL_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_WIDTH_FIELD_NUMBER: _ClassVar[int]
    INPUT_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    INPUT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    PAD_TOP_FIELD_NUMBER: _ClassVar[int]
    PAD_LEFT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    original_height: int
    original_width: int
    input_height: int
    input_width: int
    scale: float
    pad_top: int
    pad_left: int
    content_height: int
    content_width: int
    def __init__(self, original_height: _Optional[int] = ..., original_width: _Optional[int] = ..., input_height: _Optional[int] = ..., input_width: _Optional[int] = ..., scale: _Optional[float] = ..., pad_top: _Optional[int] = ..., pad_left: _Optional[int] = ..., content_height: _Optional[int] = ..., content_width: _Optional[int] = ...) -> None: ...

class Map(_message.Message):
    __slots__ = ("method", "height", "width", "encoding", "space", "data", "normalized", "raw_min", "raw_max", "target_class")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    RAW_MIN_FIELD_NUMBER: _ClassVar[int]
    RAW_MAX_FIELD_NUMBER: _ClassVar[int]
    TARGET_CLASS_FIELD_NUMBER: _ClassVar[int]
    method: str
    height: int
    width: int
    encoding: MapEncoding
    space: MapSpace
    data: bytes
    normalized: bool
    raw_min: float
    raw_max: float
    target_class: int
    def __init__(self, method: _Optional[str] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., encoding: _Optional[_Union[MapEncoding, str]] = ..., space: _Optional[_Union[MapSpace, str]] = ..., data: _Optional[bytes] = ..., normalized: _Optional[bool] = ..., raw_min: _Optional[float] = ..., raw_max: _Optional[float] = ..., target_class: _Optional[int] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("decode_ms", "preprocess_ms", "forward_cam_ms", "encode_ms", "batch_size", "decode_shared", "core_wait_ms", "forward_cam_cpu_ms")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    FORWARD_CAM_MS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    DECODE_SHARED_FIELD_NUMBER: _ClassVar[int]
    CORE_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    FORWARD_CAM_CPU_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    preprocess_ms: float
    forward_cam_ms: float
    encode_ms: float
    batch_size: int
    decode_shared: bool
    core_wait_ms: float
    forward_cam_cpu_ms: float
    def __init__(self, decode_ms: _Optional[float] = ..., preprocess_ms: _Optional[float] = ..., forward_cam_ms: _Optional[float] = ..., encode_ms: _Optional[float] = ..., batch_size: _Optional[int] = ..., decode_shared: _Optional[bool] = ..., core_wait_ms: _Optional[float] = ..., forward_cam_cpu_ms: _Optional[float] = ...) -> None: ...

class ExplainResult(_message.Message):
    __slots__ = ("status", "model", "architecture", "classes", "logits", "probabilities", "predicted_class", "positive_probability", "threshold", "positive", "maps", "geometry", "timings", "trained", "trained_on", "seen_in_training")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_CLASS_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_FIELD_NUMBER: _ClassVar[int]
    MAPS_FIELD_NUMBER: _ClassVar[int]
    GEOMETRY_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_FIELD_NUMBER: _ClassVar[int]
    TRAINED_ON_FIELD_NUMBER: _ClassVar[int]
    SEEN_IN_TRAINING_FIELD_NUMBER: _ClassVar[int]
    status: Status
    model: str
    architecture: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    logits: _containers.RepeatedScalarFieldContainer[float]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    predicted_class: int
    positive_probability: float
    threshold: float
    positive: bool
    maps: _containers.RepeatedCompositeFieldContainer[Map]
    geometry: Geometry
    timings: Timings
    trained: bool
    trained_on: str
    seen_in_training: bool
    def __init__(self, status: _Optional[_Union[Status, _Mapping]] = ..., model: _Optional[str] = ..., architecture: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., logits: _Optional[_Iterable[float]] = ..., probabilities: _Optional[_Iterable[float]] = ..., predicted_class: _Optional[int] = ..., positive_probability: _Optional[float] = ..., threshold: _Optional[float] = ..., positive: _Optional[bool] = ..., maps: _Optional[_Iterable[_Union[Map, _Mapping]]] = ..., geometry: _Optional[_Union[Geometry, _Mapping]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., trained: _Optional[bool] = ..., trained_on: _Optional[str] = ..., seen_in_training: _Optional[bool] = ...) -> None: ...
