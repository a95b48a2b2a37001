"""Learners on other machines: a learner server and a remote backend over gRPC, secure by default.

- :mod:`colearn.grpc.server`: ``colearn serve`` -- serves one learner's MLI calls.
- :mod:`colearn.grpc.client`: :class:`RemoteLearner`, an MLI over a channel.
- :mod:`colearn.grpc.backend`: :class:`GrpcBackend`, the backend the protocol drives remote learners with.
- :mod:`colearn.grpc.security`: TLS, mutual TLS, bearer tokens, self-signed certificates.
- :mod:`colearn.grpc.limits`: what peers may spend on a server (sizes, stream slots, timeouts, threads).
- :mod:`colearn.grpc.chunking`: the chunked wire format of weights (colearn.encoding blobs).

Needs the ``grpc`` extra (``pip install 'colearn[grpc]'``). Nothing here is imported by ``import colearn``.
"""
from __future__ import annotations

PROTOCOL_VERSION = 3
"""Version of the learner service's messages; a peer with another version is refused (FAILED_PRECONDITION).
3: a stream's first chunk carries the header and data together (2: a header-only chunk first)."""

INSTANCE_HEADER = "colearn-instance"
"""Call metadata: the server instance (``Info``'s ``instance_id``) a caller expects. A server started since
(restarted, its learner rebuilt) refuses the call with FAILED_PRECONDITION, its details starting with
:data:`RESTARTED`, before the learner sees it."""
RESTARTED = "server restarted"

__all__ = ["PROTOCOL_VERSION", "INSTANCE_HEADER", "RESTARTED"]
