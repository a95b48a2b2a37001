"""The driver under careless settings, hostile proposals and a sudden death: nothing starts that cannot work,
nothing crashes, nothing is left running."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from colearn.backends.local import LocalBackend
from colearn.encoding import encode_weights, encoded_size
from colearn.experiment import Experiment
from colearn.ml_interface import Weights
from colearn.protocol import ProtocolConfig
from colearn.runner import RunConfig, run
from tests.backend_helpers import NumpyFactory, NumpyRegressionLearner, factories, wait_dead

pytestmark = pytest.mark.timeout(120)
FOUR_TB = (2**40,)  # float32: 4 TiB


@pytest.fixture
def no_worker_may_start(monkeypatch):
    started = []
    from colearn.backends import processes

    monkeypatch.setattr(processes.ProcessBackend, "_start", lambda self, workers: started.extend(workers))
    return started


@pytest.mark.parametrize("update, named", [({"n_learners": 10000}, "n_learners=10000"),
                                           ({"learner_params": {"foo": 1}}, "learner_params.foo")])
def test_what_can_be_checked_is_checked_before_any_worker_starts(no_worker_may_start, update, named):
    config = RunConfig(task="iris", n_rounds=1, backend="processes").model_copy(update=update)
    with pytest.raises(ValueError, match=named):
        run(config)
    assert no_worker_may_start == []


def test_a_broadcast_view_of_four_terabytes_is_measured_without_copying():
    huge = np.broadcast_to(np.float32(1.0), FOUR_TB)
    small = {"w": np.arange(6, dtype=">f8").reshape(2, 3).T, "b": b"xyz", "n": 3}
    assert encoded_size(small) == len(encode_weights(small))
    tracemalloc.start()
    try:
        size = encoded_size({"w": huge, "bias": np.broadcast_to(np.int64(0), (3, 2**38))})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size > huge.nbytes + 3 * 2**38 * 8 and peak < 1_000_000


class _Exploding(list):
    """A container that fails when walked (as a hostile or broken weights object may)."""

    def __iter__(self):
        raise MemoryError("cannot allocate 4 TB")


class _HostileProposer(NumpyRegressionLearner):
    """Proposes a 4 TB broadcast view first, then weights that fail when measured, then honest weights."""

    def mli_propose_weights(self) -> Weights:
        self.proposals = getattr(self, "proposals", 0) + 1
        if self.proposals == 1:
            return Weights(weights={"w": np.broadcast_to(np.float32(1.0), FOUR_TB)})
        if self.proposals == 2:
            return Weights(weights={"w": _Exploding([1.0])})
        return super().mli_propose_weights()


def test_a_hostile_proposal_is_a_refused_round_not_a_crash():
    learners = [_HostileProposer(0)] + [f() for f in factories(4)[1:]]
    config = ProtocolConfig(selector=lambda round_index, n, eligible: 0)  # learner 0 proposes every round
    results = Experiment(LocalBackend(learners), config).run(3)
    huge, unmeasurable, honest = results.rounds
    assert huge.proposal_bytes > 4 * 2**40 and not huge.accepted  # measured from its shape, then refused:
    assert "cannot be copied" in huge.proposer_error and huge.votes == [None] * 4  # nobody is handed 4 TB
    assert unmeasurable.proposer_error is not None and "cannot be measured: MemoryError" in unmeasurable.proposer_error
    assert not unmeasurable.accepted and unmeasurable.votes == [None] * 4
    assert honest.proposer_error is None and honest.votes[1:] != [None] * 3
    assert results.rounds[-1].held_test_scores == honest.held_test_scores


class SlowToArrive(NumpyFactory):
    """A factory that takes its time to be unpickled in the new worker, before the worker's own code runs
    (as a heavy import does): the driver can die in that window. Writes the worker's pid first."""

    def __reduce__(self):
        return (_arrive, (os.environ["COLEARN_TEST_PID_DIR"], self.index))


def _arrive(pid_dir: str, index: int) -> NumpyFactory:
    Path(pid_dir, str(os.getpid())).write_text(str(index))
    time.sleep(2.0)
    return NumpyFactory(index)


DRIVER = """
from colearn.backends.processes import ProcessBackend
from tests.test_driver_hardening import SlowToArrive
ProcessBackend([SlowToArrive(i) for i in range(3)], start_timeout=60).close()
"""


@pytest.mark.slow
def test_workers_whose_driver_dies_while_they_start_leave_promptly_and_quietly(tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    stderr = tmp_path / "stderr"
    env = {**os.environ, "COLEARN_TEST_PID_DIR": str(pid_dir),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    with open(stderr, "w") as err:
        driver = subprocess.Popen([sys.executable, "-c", DRIVER], env=env, stderr=err)
    deadline = time.monotonic() + 60
    while len(list(pid_dir.iterdir())) < 3 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.05)
    workers = [int(p.name) for p in pid_dir.iterdir()]
    assert len(workers) == 3, stderr.read_text()
    os.kill(driver.pid, signal.SIGKILL)  # while every worker is still arriving, before its own code runs
    driver.wait(10)
    assert wait_dead(workers, timeout=6.0) == [], "workers outlived their driver"
    assert "Traceback" not in stderr.read_text() and "BrokenPipeError" not in stderr.read_text()
