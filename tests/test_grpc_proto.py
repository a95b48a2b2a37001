"""The committed generated code matches learner.proto (regenerate with python -m colearn.grpc.protos.generate)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("grpc")

from colearn.grpc.protos import learner_pb2 as pb  # noqa: E402

PROTO = Path(pb.__file__).with_name("learner.proto")


def proto_messages() -> dict:
    """message name -> {field name: (number, in a oneof)} as written in learner.proto."""
    text = re.sub(r"//.*", "", PROTO.read_text())
    messages = {}
    for name, body in re.findall(r"message\s+(\w+)\s*\{((?:[^{}]|\{[^{}]*\})*)\}", text):
        oneofs = " ".join(re.findall(r"oneof\s+\w+\s*\{([^{}]*)\}", body))
        fields = re.findall(r"(?:repeated\s+)?[\w.]+\s+(\w+)\s*=\s*(\d+)\s*;", body)
        messages[name] = {field: (int(number), field in re.findall(r"(\w+)\s*=", oneofs)) for field, number in fields}
    return messages


def test_generated_messages_match_the_proto():
    written = proto_messages()
    generated = {name: {f.name: (f.number, f.containing_oneof is not None) for f in message.fields}
                 for name, message in pb.DESCRIPTOR.message_types_by_name.items()}
    assert written == generated, "learner.proto changed: regenerate the code (see colearn/grpc/protos/generate.py)"
    assert "header" in written["Chunk"] and not written["Chunk"]["header"][1]  # protocol 3: no oneof


def test_generated_service_matches_the_proto():
    written = re.findall(r"rpc\s+(\w+)\s*\(", PROTO.read_text())
    assert written == [m.name for m in pb.DESCRIPTOR.services_by_name["Learner"].methods]
