"""The Keras examples run (in their fast modes), including the 0.2.x MNIST script on a tiny IDX fixture."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the Keras examples need TensorFlow (pip install 'colearn[keras]')")

from colearn.data.mnist import MNIST_FILES, write_idx  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_digits_example_fast_mode(model, capsys):
    results = load_example("keras_digits").main(["--model", model, "--fast"])
    assert len(results.rounds) == 3 and any(r.accepted for r in results.rounds)
    final = results.rounds[-1].held_test_scores
    assert all(0.0 <= s <= 1.0 for s in final)
    assert f"{model}: 3 rounds" in capsys.readouterr().out


@pytest.mark.slow
def test_dp_example_fast_mode_reports_budgets(tmp_path, capsys):
    all_results = load_example("keras_digits_dp").main(["--fast", "--plot", str(tmp_path / "dp.png")])
    assert list(all_results) == ["no DP", "eps<=10"]
    assert all(b is None for b in all_results["no DP"].rounds[-1].dp_budgets)
    budgets = all_results["eps<=10"].rounds[-1].dp_budgets
    proposers = {r.proposer for r in all_results["eps<=10"].rounds}
    assert all(budgets[i].consumed_epsilon > 0 for i in proposers)
    assert all(b.consumed_epsilon <= b.target_epsilon for b in budgets if b is not None)
    assert (tmp_path / "dp.png").stat().st_size > 0
    assert "spent/target epsilon per learner" in capsys.readouterr().out


def write_tiny_mnist(directory: Path, n_train: int = 60, n_test: int = 40) -> Path:
    """Random 28x28 'digits' in the four MNIST IDX files (gzipped), as the 0.2.x script expects."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
              "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, n_test).astype(np.uint8)}
    for key, stem in MNIST_FILES.items():
        write_idx(directory / f"{stem}.gz", arrays[key])
    return directory


@pytest.mark.slow
def test_0_2_x_mnist_script_runs_unchanged_on_local_idx_files(tmp_path):
    (tmp_path / "mnist").mkdir()
    data = write_tiny_mnist(tmp_path / "mnist")
    plot = tmp_path / "plot.png"
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(EXAMPLES.parent)}
    completed = subprocess.run([sys.executable, str(EXAMPLES / "keras_mnist.py"), "--data", str(data),
                                "--rounds", "2", "--plot", str(plot)],
                               capture_output=True, text=True, timeout=300, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("Doing collective learning round") == 2
    assert completed.stdout.count("LATEST ROUND RESULTS") == 2
    assert "Colearn Example Finished!" in completed.stdout
    assert plot.stat().st_size > 0
