from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class BlobRequest(_message.Message):
    __slots__ = ("sha256",)
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sha256: bytes
    def __init__(self, sha256: _Optional[bytes] = ...) -> None: ...

class BlobPiece(_message.Message):
    __slots__ = ("total_bytes", "data")
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    total_bytes: int
    data: bytes
    def __init__(self, total_bytes: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class VoteRequest(_message.Message):
    __slots__ = ("round_index",)
    ROUND_INDEX_FIELD_NUMBER: _ClassVar[int]
    round_index: int
    def __init__(self, round_index: _Optional[int] = ...) -> None: ...

class VoteReply(_message.Message):
    __slots__ = ("found", "vote", "model_hash", "v", "r", "s")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VOTE_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    V_FIELD_NUMBER: _ClassVar[int]
    R_FIELD_NUMBER: _ClassVar[int]
    S_FIELD_NUMBER: _ClassVar[int]
    found: bool
    vote: int
    model_hash: bytes
    v: int
    r: bytes
    s: bytes
    def __init__(self, found: bool = ..., vote: _Optional[int] = ..., model_hash: _Optional[bytes] = ..., v: _Optional[int] = ..., r: _Optional[bytes] = ..., s: _Optional[bytes] = ...) -> None: ...

class ScoresRequest(_message.Message):
    __slots__ = ("round_index",)
    ROUND_INDEX_FIELD_NUMBER: _ClassVar[int]
    round_index: int
    def __init__(self, round_index: _Optional[int] = ...) -> None: ...

class ScoresReply(_message.Message):
    __slots__ = ("found", "vote_score", "test_score")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VOTE_SCORE_FIELD_NUMBER: _ClassVar[int]
    TEST_SCORE_FIELD_NUMBER: _ClassVar[int]
    found: bool
    vote_score: float
    test_score: float
    def __init__(self, found: bool = ..., vote_score: _Optional[float] = ..., test_score: _Optional[float] = ...) -> None: ...
