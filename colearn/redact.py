"""Keep secrets out of messages and logs: register a secret once, and every error line and log record hides it.

An RPC URL often carries an API key in its path or query (``https://node.example/v3/KEY``), and HTTP
libraries quote the URL, or just its path, when the node fails. :func:`register_secret` remembers a secret
and, for a URL, its user-info, path and query; :func:`redact` replaces each with ``***``. Once a secret is
registered, a log-record factory redacts every log message too.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Optional
from urllib.parse import urlsplit

MASK = "***"
_secrets: set[str] = set()
_lock = threading.Lock()
_previous_factory: Optional[Any] = None


def _parts(secret: str) -> set[str]:
    parts = {secret}
    try:
        url = urlsplit(secret)
    except ValueError:
        return parts
    if url.scheme and url.netloc:
        if url.path.strip("/"):
            parts.update({url.path, url.path + (f"?{url.query}" if url.query else "")})
        if url.query:
            parts.add(url.query)
        if url.password:
            parts.add(url.password)
        if url.username:
            parts.add(url.username)
    return {p for p in parts if len(p) >= 4}


def register_secret(secret: Optional[str]) -> None:
    """Remember ``secret`` (and, for a URL, the parts that can carry a key) so that :func:`redact` hides it."""
    if not secret:
        return
    with _lock:
        _secrets.update(_parts(str(secret)))
        _install_log_redaction()


def forget_secrets() -> None:
    """Forget every registered secret (tests)."""
    with _lock:
        _secrets.clear()


def redact(text: Any) -> str:
    """``text`` with every registered secret replaced by ``***`` (longest first, so a URL goes before its path)."""
    text = str(text)
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _install_log_redaction() -> None:
    global _previous_factory
    if _previous_factory is not None:
        return
    _previous_factory = previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _secrets:
            try:
                message = record.getMessage()
            except Exception:  # a malformed record: leave it to logging's own error handling
                return record
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, ()
        return record

    logging.setLogRecordFactory(factory)


__all__ = ["MASK", "register_secret", "forget_secrets", "redact"]
