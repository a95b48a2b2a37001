from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StreamHeader(_message.Message):
    __slots__ = ("protocol_version", "total_bytes", "metadata_json")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    total_bytes: int
    metadata_json: str
    def __init__(self, protocol_version: _Optional[int] = ..., total_bytes: _Optional[int] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: StreamHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[StreamHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class CallRequest(_message.Message):
    __slots__ = ("protocol_version",)
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    def __init__(self, protocol_version: _Optional[int] = ...) -> None: ...

class InfoReply(_message.Message):
    __slots__ = ("protocol_version", "encoding_version", "colearn_version", "learner", "healthy", "max_bytes", "instance_id")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENCODING_VERSION_FIELD_NUMBER: _ClassVar[int]
    COLEARN_VERSION_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    encoding_version: int
    colearn_version: str
    learner: str
    healthy: bool
    max_bytes: int
    instance_id: str
    def __init__(self, protocol_version: _Optional[int] = ..., encoding_version: _Optional[int] = ..., colearn_version: _Optional[str] = ..., learner: _Optional[str] = ..., healthy: bool = ..., max_bytes: _Optional[int] = ..., instance_id: _Optional[str] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("verdict_json",)
    VERDICT_JSON_FIELD_NUMBER: _ClassVar[int]
    verdict_json: str
    def __init__(self, verdict_json: _Optional[str] = ...) -> None: ...

class AcceptReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
