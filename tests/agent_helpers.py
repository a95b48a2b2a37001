"""Helpers for the agent tests: a ganache node on 127.0.0.1 that mines on a clock, per-agent key files,
`colearn deploy`, `colearn agent` and `colearn watch` processes, bounded waits and clean stops."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

from eth_account import Account

from colearn.ledger.chain import rpc_chain
from colearn.ledger.experiment_file import ExperimentFile, open_experiment

BLOCK_TIME = 0.5


def ganache_or_skip(n_keys: int, label: str, block_time: float = 0.0) -> Iterator[Tuple[str, Path]]:
    """For a module-scoped fixture: (url, keys file) of a ganache node on 127.0.0.1 funding ``n_keys`` throw-away
    keys; the test is skipped (with the install hint) when ganache is missing or does not start."""
    import pytest

    from colearn.ledger.localnode import INSTALL_HINT, LocalNodeError, find_ganache, local_ganache

    binary = find_ganache()
    if binary is None:
        pytest.skip(f"no ganache: {INSTALL_HINT}")
    try:
        with local_ganache(binary, n_keys, label, block_time=block_time) as node:
            yield node
    except LocalNodeError as exc:
        pytest.skip(str(exc))


def cli(*args: str) -> List[str]:
    return [sys.executable, "-m", "colearn.cli", *args]


def split_keys(keys_file: Path, out: Path, n: int) -> List[Path]:
    """One key file per agent (mode 600), as each organisation would keep its own."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, key in enumerate(keys_file.read_text().split()[:n]):
        path = out / f"key-{i}.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        paths.append(path)
    return paths


def address_of(key_file: Path) -> str:
    return Account.from_key(key_file.read_text().strip()).address


def deploy(url: str, keys: List[Path], out: Path, *extra: str) -> ExperimentFile:
    learners = ",".join(address_of(k) for k in keys)
    done = subprocess.run(cli("deploy", "--learners", learners, "--rpc-url", url, "--key-file", str(keys[0]),
                              "--out", str(out), *extra), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return ExperimentFile.load(out)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> None:
    ends = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > ends:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


class Agents:
    """`colearn agent` processes, one per key; logs in ``root/agent-<i>.log``; all stopped by :meth:`stop_all`."""

    def __init__(self, url: str, experiment: Path, keys: List[Path], root: Path, *extra: str):
        self.url, self.experiment, self.keys, self.root, self.extra = url, experiment, keys, root, extra
        self.processes: dict = {}
        self.starts: dict = {}

    def log(self, i: int) -> str:
        return "".join(p.read_text() for p in sorted(self.root.glob(f"agent-{i}.*.log")))

    def start(self, i: int, workdir: Optional[Path] = None, *more: str) -> subprocess.Popen:
        self.starts[i] = self.starts.get(i, 0) + 1
        log = open(self.root / f"agent-{i}.{self.starts[i]}.log", "w")
        env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            cli("agent", str(self.experiment), "--rpc-url", self.url, "--key-file", str(self.keys[i]),
                "--workdir", str(workdir or self.root / f"work-{i}"), *self.extra, *more),
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        self.processes[i] = process
        return process

    def kill(self, i: int) -> None:
        """kill -9, as a crash would."""
        process = self.processes.pop(i)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def wait_all(self, timeout: float) -> None:
        ends = time.monotonic() + timeout
        for i, process in list(self.processes.items()):
            process.wait(timeout=max(1.0, ends - time.monotonic()))
            assert process.returncode == 0, self.log(i)[-3000:]

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)


@contextmanager
def agents(url: str, experiment: Path, keys: List[Path], root: Path, *extra: str) -> Iterator[Agents]:
    group = Agents(url, experiment, keys, root, *extra)
    try:
        yield group
    finally:
        group.stop_all()


class ChainView:
    """The test's read-only view of the contract (no key)."""

    def __init__(self, url: str, experiment: Path):
        self.chain = rpc_chain(url)
        self.experiment = ExperimentFile.load(experiment)
        self.contract = open_experiment(self.chain, self.experiment)

    def state(self) -> tuple:
        return tuple(self.contract.functions.round_state().call())

    def current_round(self) -> int:
        return int(self.contract.functions.current_round().call())

    def current_model(self) -> str:
        return bytes(self.contract.functions.current_model().call()).hex()

    def events(self, name: str) -> list:
        from colearn.ledger.chain import read_events

        return [e for e in read_events(self.contract, self.experiment.deploy_block) if e["name"] == name]
