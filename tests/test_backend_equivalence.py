"""The same seed gives the same results.json whichever backend runs the learners (timings aside)."""
from __future__ import annotations

import importlib.util

import pytest

from colearn.backends.local import LocalBackend
from colearn.backends.processes import ProcessBackend
from colearn.experiment import Experiment
from colearn.protocol import ProtocolConfig
from colearn.runner import RunConfig, make_backend, run
from tests.backend_helpers import comparable, factories

pytestmark = pytest.mark.timeout(300)
HAS_SKLEARN_LEARNER = importlib.util.find_spec("colearn_other.sklearn_learner") is not None


def run_numpy(backend, selector: str = "round_robin", rounds: int = 8) -> dict:
    with backend:
        results = Experiment(backend, ProtocolConfig(vote_threshold=1.0, selector=selector, seed=3)).run(rounds)
    return comparable(results.to_json(include_timings=False))


@pytest.mark.parametrize("shm_threshold", [0, 1 << 30], ids=["shared-memory", "inline"])
def test_processes_match_local_round_for_round(shm_threshold):
    local = run_numpy(LocalBackend([f() for f in factories(4, seed=7)]), selector="random")
    processes = run_numpy(ProcessBackend(factories(4, seed=7), timeout=60, shm_threshold=shm_threshold),
                          selector="random")
    assert processes == local
    # the comparison is not vacuous: rounds differ in proposer and outcome
    assert len({r["proposer"] for r in local["rounds"]}) > 1
    assert {r["accepted"] for r in local["rounds"]} == {True, False}


def test_make_backend_passes_backend_options():
    config = RunConfig(n_learners=2, backend="processes", backend_options={"timeout": 12.5, "restart": False})
    with make_backend(config, factories(2)) as backend:
        assert isinstance(backend, ProcessBackend)
        assert backend.timeout == 12.5 and backend.restart is False and backend.n_learners == 2


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SKLEARN_LEARNER, reason="colearn_other (the sgd learner) is not installed")
def test_run_config_sgd_digits_processes_equals_local():
    config = RunConfig(task="digits", learner="sgd", n_learners=3, n_rounds=4, seed=5)
    local = run(config)
    processes = run(config.model_copy(update={"backend": "processes", "backend_options": {"timeout": 120}}))
    assert processes.backend == "processes" and local.backend == "local"
    assert comparable(processes.to_json(include_timings=False)) == comparable(local.to_json(include_timings=False))
    assert local.n_accepted > 0
