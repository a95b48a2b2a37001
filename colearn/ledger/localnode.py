"""A throw-away local Ethereum node (ganache 7) on 127.0.0.1, for tests and benchmarks.

Found at ``$COLEARN_GANACHE``, then ``~/.cache/colearn-node/node_modules/.bin/ganache`` (where
``npm install --prefix ~/.cache/colearn-node ganache@7.9.2`` puts it), then on PATH.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Tuple

INSTALL_HINT = "npm install --prefix ~/.cache/colearn-node ganache@7.9.2 (or set COLEARN_GANACHE)"


class LocalNodeError(RuntimeError):
    """The local node could not be started or did not answer."""


def find_ganache() -> Optional[str]:
    """The ganache executable, or None when it (or node) is not installed."""
    candidates = (os.environ.get("COLEARN_GANACHE"),
                  str(Path.home() / ".cache" / "colearn-node" / "node_modules" / ".bin" / "ganache"),
                  shutil.which("ganache"))
    if shutil.which("node") is None:
        return None
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_ganache(binary: str, n_keys: int, label: str = "colearn", *, start_timeout: float = 90.0,
                  block_time: float = 0.0) -> Iterator[Tuple[str, Path]]:
    """Run ganache on 127.0.0.1 (a free port) funding ``n_keys`` throw-away keys derived from ``label``.

    ``block_time`` 0 mines a block per transaction (instamine); above 0 a block every ``block_time`` seconds,
    so that block-number deadlines pass with time, as on a real chain (what independent agents need).

    Yields ``(url, keys_file)``; the node is stopped on exit. Raises :class:`LocalNodeError` if it does not start.
    """
    from colearn.ledger.chain import LedgerError, rpc_chain

    keys = ["0x" + hashlib.sha256(f"{label}:{i}".encode()).hexdigest() for i in range(n_keys)]
    port = _free_port()
    mining = ["--miner.blockTime", str(block_time)] if block_time > 0 else ["--miner.instamine", "strict"]
    command = [binary, "--server.host", "127.0.0.1", "--server.port", str(port), "--logging.quiet",
               "--chain.hardfork", "shanghai", *mining]
    for key in keys:
        command += ["--wallet.accounts", f"{key},{10**24}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise LocalNodeError(f"ganache did not start: {process.stderr.read().decode()[-300:]}")
            try:
                rpc_chain(url, timeout=5)
                break
            except LedgerError:
                if time.monotonic() > deadline:
                    raise LocalNodeError(f"ganache did not answer within {start_timeout:g} s") from None
                time.sleep(0.5)
        with tempfile.TemporaryDirectory() as tmp:
            keys_file = Path(tmp) / "keys.txt"
            keys_file.write_text("\n".join(keys) + "\n")
            yield url, keys_file
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
