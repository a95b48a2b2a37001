"""Regenerate ``learner_pb2.py`` / ``learner_pb2_grpc.py`` from ``learner.proto``.

The generated code is committed. It was made with grpcio-tools 1.72.2 (protoc of protobuf 6.30), so it
runs with protobuf >= 6.30 (6.x and 7.x) and grpcio >= 1.72. Regenerating with a newer grpcio-tools
raises those minimums to the tools' versions; to keep them, install the old tools aside::

    pip install --target /tmp/grpctools "grpcio-tools==1.72.2"
    PYTHONPATH=/tmp/grpctools python -m colearn.grpc.protos.generate

Run from the repository root.
"""
from __future__ import annotations

import sys
from pathlib import Path

PROTO = Path("colearn/grpc/protos/learner.proto")


def main() -> int:
    from grpc_tools import protoc

    if not PROTO.is_file():
        print(f"run from the repository root: {PROTO} not found", file=sys.stderr)
        return 2
    return protoc.main(["grpc_tools.protoc", "-I.", "--python_out=.", "--pyi_out=.", "--grpc_python_out=.",
                        str(PROTO)])


if __name__ == "__main__":
    sys.exit(main())
