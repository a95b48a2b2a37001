"""The scikit-learn examples run in their fast modes (as scripts, the way a user runs them)."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from colearn.encoding import weights_digest
from colearn.learner_utils import WeightsMismatchError
from colearn.ml_interface import Weights

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, **env: str) -> str:
    env = {**os.environ, "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1", **env}
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def final_accuracy(output: str) -> float:
    return float(re.search(r"final mean test accuracy (\d\.\d+)", output).group(1))


def test_sklearn_digits_fast_with_baseline_and_plots(tmp_path):
    out = run_example("sklearn_digits.py", "--fast", "--partition", "dirichlet", "--alpha", "0.3", "--baseline",
                      "--plots", str(tmp_path))
    assert len(re.findall(r"^round +\d+ +votes [P+\-.]{5} ", out, flags=re.M)) == 3
    assert 0.0 < final_accuracy(out) <= 1.0
    table = out.split("collective vs trained alone")[1]
    assert len(re.findall(r"^ +\d +\d\.\d{3} +\d\.\d{3} +[+-]\d\.\d{3} +\d\.\d{3}$", table, flags=re.M)) == 5
    assert re.search(r"collective model on all learners' test sets: \d\.\d{3}", table)
    assert (tmp_path / "scores.png").stat().st_size > 0 and (tmp_path / "vote_history.png").stat().st_size > 0


def test_random_forest_iris_fast():
    out = run_example("random_forest_iris.py", "--fast")
    assert len(re.findall(r"^round +\d+: proposer \d", out, flags=re.M)) == 3
    assert final_accuracy(out) > 0.5 and "bytes of skops" in out


def test_write_your_own_learner_fast_via_env():
    out = run_example("write_your_own_learner.py", COLEARN_FAST="1")  # fast mode from the environment
    assert len(re.findall(r"^round +\d+:", out, flags=re.M)) == 3
    assert 0.0 < final_accuracy(out) <= 1.0


def test_the_hand_written_learner_keeps_the_contract():
    """The from-scratch learner in the example obeys what it documents: isolation, copies, validation."""
    spec = importlib.util.spec_from_file_location("write_your_own_learner", EXAMPLES / "write_your_own_learner.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from colearn.data import load_task, split_learner_data

    a_data, b_data = split_learner_data(load_task("iris"), 2, seed=0)
    a, b = module.NumpyLogisticRegression(a_data, seed=0), module.NumpyLogisticRegression(b_data, seed=1)
    held = weights_digest(a.mli_get_current_weights().weights)
    proposal = a.mli_propose_weights()
    assert weights_digest(a.mli_get_current_weights().weights) == held != weights_digest(proposal.weights)
    verdict = b.mli_test_weights(proposal)
    b.mli_accept_weights(proposal)
    proposal.weights["W"][...] = 0  # scribbling on the proposal does not reach b's model
    assert not np.all(b.weights["W"] == 0) and b.held_scores == (verdict.vote_score, verdict.test_score)
    with pytest.raises(WeightsMismatchError):
        b.mli_accept_weights(Weights(weights={"W": np.zeros((3, 3)), "b": np.zeros(3)}))
