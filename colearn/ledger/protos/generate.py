"""Regenerate ``blobs_pb2.py`` / ``blobs_pb2_grpc.py`` from ``blobs.proto`` (the generated code is committed).

Made with grpcio-tools 1.72.2, like colearn/grpc/protos (same runtime minimums: protobuf >= 6.30, grpcio >=
1.72); to keep them, install those tools aside and run from the repository root::

    pip install --target /tmp/grpctools "grpcio-tools==1.72.2"
    PYTHONPATH=/tmp/grpctools python -m colearn.ledger.protos.generate
"""
from __future__ import annotations

import sys
from pathlib import Path

PROTO = Path("colearn/ledger/protos/blobs.proto")


def main() -> int:
    from colearn.grpc.protos import generate  # the learner service's generator, pointed at this proto

    generate.PROTO = PROTO
    return generate.main()


if __name__ == "__main__":
    sys.exit(main())
