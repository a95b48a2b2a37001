"""Learner servers as separate processes for the gRPC tests (127.0.0.1 only, free ports)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[1]


class ServerProcess:
    """``colearn serve`` in a child process; ``port`` is read from its port file."""

    def __init__(self, workdir: Path, name: str, serve_args: List[str], env: Optional[dict] = None):
        self.workdir, self.name, self.serve_args = workdir, name, serve_args
        self.env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.proc: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, port: int = 0, wait: float = 60.0) -> "ServerProcess":
        port_file = self.workdir / f"{self.name}.port"
        port_file.unlink(missing_ok=True)
        log = open(self.workdir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "colearn.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--port-file", str(port_file), *self.serve_args],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + wait
        while not port_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited with {self.proc.returncode}: "
                                   f"{(self.workdir / f'{self.name}.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"server {self.name} did not start within {wait}s")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        return self

    def kill9(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, wait: float = 60.0) -> None:
        """Start again on the same port."""
        assert self.port is not None
        self.start(self.port, wait)

    def stop(self, wait: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.kill9()


def entry_point_args(index: int, target: str = "tests.grpc_learners:make_learner", **params: object) -> List[str]:
    return ["--entry-point", target, "--params", json.dumps({"index": index, **params})]


def stop_all(servers: List[ServerProcess], wait: float = 10.0) -> None:
    """Terminate every server at once, then wait (SIGKILL for any that hangs)."""
    for server in servers:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.terminate()
    for server in servers:
        server.stop()
