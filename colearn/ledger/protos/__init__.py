"""Generated protobuf/gRPC code of the ledger agents' peer service (``blobs.proto``); see ``generate``."""
