"""Who may read the page: loopback by default; anywhere else only with a token, checked on every request.

Tokens come from the mechanism of ``colearn serve`` (a token file, one per line, or ``$COLEARN_TOKEN``; never the
command line). A request is let in when it carries a valid token as ``Authorization: Bearer <token>``, as
``?token=<token>`` (answered with a redirect that drops it from the address and sets an HttpOnly cookie holding the
token's SHA-256, so that the page's own requests and its event stream carry it), or as that cookie. Tokens are
compared in constant time. On a loopback address the ``Host`` header must name loopback too, so that a web page
elsewhere cannot read the dashboard through DNS rebinding.
"""
from __future__ import annotations

import hashlib
import hmac
from http.cookies import SimpleCookie
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional
from urllib.parse import parse_qsl, urlencode

from colearn.grpc.security import is_loopback

ASGIApp = Callable[[Dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]
COOKIE = "colearn_dashboard"
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-store"),
]


def token_digest(token: str) -> str:
    """What the cookie holds instead of the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenCheck:
    """Decides whether a request's credentials match one of ``tokens`` (constant time, every token compared)."""

    def __init__(self, tokens: Iterable[str]):
        tokens = list(tokens)
        if not tokens or any(not isinstance(t, str) or not t for t in tokens):
            raise ValueError("tokens must be a non-empty list of non-empty strings")
        self._digests = [token_digest(t).encode() for t in tokens]

    def digest_matches(self, digest: str) -> bool:
        ok = False
        for known in self._digests:  # no early exit
            ok |= hmac.compare_digest(digest.encode(), known)
        return ok

    def token_matches(self, token: str) -> bool:
        return self.digest_matches(token_digest(token))


def _headers(scope: Dict[str, Any]) -> Dict[str, List[str]]:
    found: Dict[str, List[str]] = {}
    for name, value in scope.get("headers", []):
        found.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return found


async def _send_plain(send: Callable[[Any], Awaitable[None]], status: int, text: str,
                      headers: Optional[List[tuple]] = None) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: security headers on every answer; the Host check on loopback; the token check if any."""

    def __init__(self, app: ASGIApp, *, tokens: Optional[Iterable[str]] = None, loopback_only: bool = True):
        self.app = app
        self.check = TokenCheck(tokens) if tokens else None
        self.loopback_only = loopback_only

    async def __call__(self, scope: Dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if self.loopback_only and not _is_loopback_host(headers.get("host", [""])[0]):
            await _send_plain(send, 400, "this dashboard answers to a loopback Host only (open 127.0.0.1)")
            return
        if self.check is not None:
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            given = [value for key, value in query if key == "token"]
            if given:
                await self._login(scope, send, given[-1], [(k, v) for k, v in query if k != "token"])
                return
            if not self._allowed(headers):
                await _send_plain(send, 401, "this dashboard needs a token: open it once as /?token=YOUR_TOKEN "
                                             "(a token of its --token-file or $COLEARN_TOKEN)",
                                  [(b"www-authenticate", b"Bearer")])
                return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _allowed(self, headers: Dict[str, List[str]]) -> bool:
        assert self.check is not None
        authorization = headers.get("authorization", [])
        if authorization:
            value = authorization[0]
            return len(authorization) == 1 and value.startswith("Bearer ") and \
                self.check.token_matches(value[len("Bearer "):])
        for header in headers.get("cookie", []):
            cookie = SimpleCookie()
            try:
                cookie.load(header)
            except Exception:  # a malformed cookie header is no credential
                continue
            if COOKIE in cookie and self.check.digest_matches(cookie[COOKIE].value):
                return True
        return False

    async def _login(self, scope: Dict[str, Any], send: Callable, token: str, rest: List[tuple]) -> None:
        assert self.check is not None
        if not self.check.token_matches(token):
            await _send_plain(send, 401, "invalid token", [(b"www-authenticate", b"Bearer")])
            return
        location = "/" + scope.get("path", "/").lstrip("/\\") + (f"?{urlencode(rest)}" if rest else "")  # stays here
        cookie = f"{COOKIE}={token_digest(token)}; HttpOnly; SameSite=Strict; Path=/"
        await _send_plain(send, 303, "signed in", [(b"location", location.encode()), (b"set-cookie", cookie.encode())])


def _is_loopback_host(host_header: str) -> bool:
    """True when a Host header names localhost or a loopback IP address (with or without a port)."""
    if host_header.startswith("["):
        host = host_header[1:].split("]")[0]
    else:
        host = host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header
    return is_loopback(host)


__all__ = ["COOKIE", "Guard", "TokenCheck", "token_digest"]
