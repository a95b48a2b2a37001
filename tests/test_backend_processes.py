"""ProcessBackend: failure semantics (raise, crash, hang), restart, shared memory and cleanup."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from colearn.backends.base import Failure
from colearn.backends.processes import BackendStartError, ProcessBackend
from colearn.backends.shm import SEGMENT_PREFIX, leftover_segments
from colearn.experiment import Experiment
from colearn.ml_interface import ModelFormat, Weights
from colearn.protocol import ProtocolConfig
from tests.backend_helpers import NumpyFactory, factories, pid_alive, wait_dead

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(180)


def assert_clean(backend: ProcessBackend, pids: list[int]) -> None:
    assert wait_dead([p for p in pids if p is not None]) == [], "worker processes outlived close()"
    assert leftover_segments(f"{SEGMENT_PREFIX}{backend.token}") == [], "shared-memory segments leaked"


@pytest.fixture(scope="module")
def shared_backend():
    """One healthy 3-learner backend for the tests that do not break workers (startup is the slow part)."""
    with ProcessBackend(factories(3), timeout=30, shm_threshold=0) as backend:
        yield backend


def test_calls_reach_the_learner_in_its_process(shared_backend):
    pids = shared_backend.worker_pids
    assert len(set(pids)) == 3 and os.getpid() not in pids
    current = shared_backend.current_weights(1)
    assert isinstance(current, Weights) and current.weights["w"].dtype == np.float32
    proposal = shared_backend.propose(0)
    assert isinstance(proposal, Weights) and not np.array_equal(proposal.weights["w"], current.weights["w"])
    verdicts = shared_backend.test(proposal, [1, 2])
    assert set(verdicts) == {1, 2} and all(v.weights is proposal for v in verdicts.values())
    assert all(isinstance(v.vote, bool) for v in verdicts.values())
    model = shared_backend.current_model(2)
    assert model.model_format == ModelFormat.WEIGHTS_ONLY and model.model["w"].shape == (20,)


def test_unencodable_weights_are_refused_per_learner(shared_backend):
    answers = shared_backend.test(Weights(weights=object()), [1, 2])
    assert all(isinstance(a, Failure) and a.kind == "invalid" for a in answers.values())
    assert "cannot be sent" in answers[1].error


def test_large_weights_travel_through_one_shared_segment(shared_backend):
    seen: list[list[str]] = []
    prefix = f"{SEGMENT_PREFIX}{shared_backend.token}"
    Experiment(shared_backend, ProtocolConfig(), hooks=[lambda record: seen.append(leftover_segments(prefix))]).run(3)
    # while the experiment runs, the current proposal (and accepted weights) sit in shared memory
    assert all(1 <= len(names) <= 2 for names in seen), seen


def test_a_raising_learner_abstains_and_its_worker_lives_on():
    with ProcessBackend(factories(4, faults={2: (("test", 2, "raise"),)}), timeout=30) as backend:
        pid = backend.worker_pids[2]
        results = Experiment(backend, ProtocolConfig()).run(2)
        first, second = results.rounds
        assert first.votes[2] is None and "injected failure in test call 2" in first.vote_errors[2]
        assert first.abstentions == 1 and first.approvals + first.rejections == 2
        assert second.votes[2] is not None and backend.worker_pids[2] == pid


@pytest.mark.slow
def test_a_crashing_worker_abstains_is_restarted_and_rejoins_with_the_shared_model():
    with ProcessBackend(factories(4, faults={2: (("test", 2, "exit"),)}), timeout=30) as backend:
        old_pid = backend.worker_pids[2]
        experiment = Experiment(backend, ProtocolConfig())
        first = experiment.run_round()
        assert first.votes[2] is None and "died (exit code 3)" in first.vote_errors[2]
        assert first.accepted and first.accept_errors[2] is None  # rebuilt from its factory to accept
        assert not pid_alive(old_pid) and backend.worker_pids[2] not in (None, old_pid)
        np.testing.assert_array_equal(backend.current_weights(2).weights["w"], backend.current_weights(0).weights["w"])
        second = experiment.run_round()
        assert second.votes[2] is not None and second.vote_errors[2] is None
        pids = backend.worker_pids
    assert_clean(backend, pids)


@pytest.mark.slow
def test_a_hanging_worker_times_out_is_killed_and_the_experiment_continues():
    with ProcessBackend(factories(3, faults={1: (("test", 2, "hang"),)}), timeout=2.0) as backend:
        hung_pid = backend.worker_pids[1]
        results = Experiment(backend, ProtocolConfig()).run(2)
        first, second = results.rounds
        assert first.votes[1] is None and "no answer within 2 s" in first.vote_errors[1]
        assert first.votes[2] is not None
        assert wait_dead([hung_pid]) == []
        assert second.proposer == 1 and second.proposer_error is None  # restarted in time to propose
        pids = backend.worker_pids
    assert_clean(backend, pids)


def test_no_restart_leaves_a_crashed_learner_down():
    with ProcessBackend(factories(3, faults={1: (("propose", 1, "exit"),)}), timeout=30, restart=False) as backend:
        answer = backend.propose(1)
        assert isinstance(answer, Failure) and answer.kind == "crashed"
        again = backend.test(backend.current_weights(0), [1, 2])
        assert again[1].kind == "crashed" and "not restarted" in again[1].error
        assert not isinstance(again[2], Failure)


def test_worker_killed_between_rounds_is_reported_and_nothing_leaks():
    backend = ProcessBackend(factories(3), timeout=30, shm_threshold=0)
    experiment = Experiment(backend, ProtocolConfig())
    experiment.run_round()
    victim = backend.worker_pids[2]
    os.kill(victim, signal.SIGKILL)
    wait_dead([victim])
    record = experiment.run_round()
    assert record.votes[2] is None and "died (exit code -9)" in record.vote_errors[2]
    pids = [p for p in backend.worker_pids if p is not None]
    backend.close()
    backend.close()  # idempotent
    assert_clean(backend, pids)


def test_an_exception_in_the_driver_cleans_up():
    with pytest.raises(RuntimeError, match="driver bug"):
        with ProcessBackend(factories(3), timeout=30, shm_threshold=0) as backend:
            pids = backend.worker_pids
            Experiment(backend, ProtocolConfig()).run_round()
            raise RuntimeError("driver bug")
    assert_clean(backend, pids)
    assert isinstance(backend.propose(0), Failure)  # closed: failures, not hangs


def test_a_factory_that_fails_stops_the_start_and_leaves_nothing_behind(monkeypatch):
    # only this backend's segments: other colearn runs on the machine may hold theirs meanwhile
    import colearn.backends.processes as processes

    token = f"t{os.getpid():x}"[-8:]
    monkeypatch.setattr(processes, "new_token", lambda: token)
    broken = [NumpyFactory(0), NumpyFactory(1, fail_to_start=True)]
    with pytest.raises(BackendStartError, match=r"learner 1: factory failed: RuntimeError: factory 1 refuses"):
        ProcessBackend(broken, timeout=30)
    assert leftover_segments(f"{SEGMENT_PREFIX}{token}") == []


@pytest.mark.parametrize("kwargs, name", [({"timeout": 0}, "timeout"), ({"start_method": "fork"}, "start_method"),
                                          ({"max_restarts": -1}, "max_restarts")])
def test_bad_options_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ProcessBackend(factories(2), **kwargs)


SIGINT_SCRIPT = textwrap.dedent("""
    import signal
    import sys
    from colearn.backends.processes import ProcessBackend
    from colearn.experiment import Experiment
    from colearn.protocol import ProtocolConfig
    from tests.backend_helpers import factories

    if __name__ == "__main__":
        # as when started from a terminal: a background job of a non-interactive shell (how CI may run the
        # suite) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler
        signal.signal(signal.SIGINT, signal.default_int_handler)
        backend = ProcessBackend(factories(3, faults={1: (("test", 2, "hang"),)}), timeout=None, shm_threshold=0)
        print(backend.token, *backend.worker_pids, flush=True)
        with backend:
            Experiment(backend, ProtocolConfig()).run(3)   # learner 1 hangs in round 0 until Ctrl-C
""")


@pytest.mark.slow
def test_ctrl_c_stops_the_driver_and_cleans_up(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(SIGINT_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        token, *pids = proc.stdout.readline().split()
        assert pids, proc.stderr.read()
        time.sleep(1.5)  # let round 0 reach the hanging voter
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
    assert wait_dead([int(p) for p in pids]) == []
    assert leftover_segments(f"{SEGMENT_PREFIX}{token}") == []
