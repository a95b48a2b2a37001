"""Security of the learner service: TLS, mutual TLS, bearer tokens and self-signed certificates.

Servers on non-loopback addresses need TLS (and a token or client certificates) unless told otherwise.
Tokens are compared in constant time; a call without a valid ``authorization: Bearer <token>`` header
is refused with UNAUTHENTICATED before it reaches the learner. Tokens are read from files or the
``COLEARN_TOKEN`` environment variable, never from command lines (which other users can see).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import grpc

TOKEN_ENV = "COLEARN_TOKEN"
AUTH_HEADER = "authorization"


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_address(address: str) -> Tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) -> (host, port); errors name the address."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"learner address {address!r} is not host:port")
    return host.strip("[]"), int(port)


def read_token_file(path: os.PathLike | str) -> List[str]:
    """Tokens in a file: one per line; blank lines and lines starting with '#' are ignored."""
    lines = Path(path).read_text().splitlines()
    tokens = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not tokens:
        raise ValueError(f"token file {path} holds no token")
    return tokens


def resolve_tokens(token_file: Optional[os.PathLike | str] = None, *, use_env: bool = True) -> List[str]:
    """Tokens from ``token_file`` if given, else from ``$COLEARN_TOKEN`` (comma-separated), else none."""
    if token_file is not None:
        return read_token_file(token_file)
    if use_env and os.environ.get(TOKEN_ENV):
        return [t.strip() for t in os.environ[TOKEN_ENV].split(",") if t.strip()]
    return []


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Refuses (UNAUTHENTICATED) any call whose bearer token is not one of ``tokens``."""

    def __init__(self, tokens: Iterable[str]):
        self._digests = [_digest(t) for t in tokens]
        if not self._digests or any(not t for t in tokens):
            raise ValueError("tokens must be a non-empty list of non-empty strings")

    def _allowed(self, metadata: Sequence[Tuple[str, str]]) -> bool:
        values = [v for k, v in metadata or () if k == AUTH_HEADER]
        if len(values) != 1 or not isinstance(values[0], str) or not values[0].startswith("Bearer "):
            return False
        got = _digest(values[0][len("Bearer "):])
        ok = False
        for digest in self._digests:  # no early exit: every token is compared, in constant time
            ok |= hmac.compare_digest(got, digest)
        return ok

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails):
        handler = continuation(handler_call_details)
        if handler is None or self._allowed(handler_call_details.invocation_metadata):
            return handler
        return _refusing_handler(handler)


def _refusing_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    def refuse(request, context):  # noqa: ANN001 - gRPC's handler signature
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


def auth_metadata(token: Optional[str]) -> Tuple[Tuple[str, str], ...]:
    return ((AUTH_HEADER, f"Bearer {token}"),) if token else ()


def _read(path: Optional[os.PathLike | str], what: str) -> Optional[bytes]:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path} ({exc.strerror})") from None


@dataclass(frozen=True)
class ServerTLS:
    """Server certificate and key; with ``client_ca`` also mutual TLS (clients must present a cert it signed)."""

    cert_file: str
    key_file: str
    client_ca_file: Optional[str] = None

    def credentials(self) -> grpc.ServerCredentials:
        cert, key = _read(self.cert_file, "cert"), _read(self.key_file, "key")
        client_ca = _read(self.client_ca_file, "client_ca")
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                           require_client_auth=client_ca is not None)


@dataclass(frozen=True)
class ClientTLS:
    """What a client trusts (``ca_file``: the server's certificate or its CA) and, for mutual TLS, its own pair.

    ``server_name`` overrides the name checked against the server's certificate.
    """

    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    server_name: Optional[str] = None

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("client cert_file and key_file must be given together (mutual TLS)")
        return grpc.ssl_channel_credentials(root_certificates=_read(self.ca_file, "ca"),
                                            private_key=_read(self.key_file, "key"),
                                            certificate_chain=_read(self.cert_file, "cert"))

    def channel_options(self) -> List[Tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def make_self_signed(out_dir: os.PathLike | str, hosts: Sequence[str] = ("localhost", "127.0.0.1"), *,
                     name: str = "colearn", days: int = 30) -> Tuple[Path, Path]:
    """Write ``<name>.crt`` and ``<name>.key`` (EC P-256, self-signed, valid for ``hosts``) for trying TLS out.

    The certificate is its own CA: give it to clients as ``ca_file`` (or to a server as ``client_ca_file``).
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("making certificates needs cryptography: pip install cryptography") from exc
    if not hosts:
        raise ValueError("hosts must name at least one host name or IP address")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    names: List[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / f"{name}.crt", out / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    return cert_path, key_path
