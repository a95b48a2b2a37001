"""Shared by the framework example tests: load an example as a module, run a script, check a DP run, fixtures."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np

from colearn.data.mnist import MNIST_FILES, write_idx

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    """Import ``examples/NAME.py`` as a module (its ``main(argv)`` can then be called in-process)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_dp_tradeoff(all_results: Dict, plot: Path, output: str) -> None:
    """What a fast DP trade-off run must show: budgets only under DP, spent by every proposer, never past target."""
    assert list(all_results) == ["no DP", "eps<=10"]
    assert all(b is None for b in all_results["no DP"].rounds[-1].dp_budgets)
    budgets = all_results["eps<=10"].rounds[-1].dp_budgets
    proposers = {r.proposer for r in all_results["eps<=10"].rounds}
    assert all(budgets[i].consumed_epsilon > 0 for i in proposers)
    assert all(b.consumed_epsilon <= b.target_epsilon for b in budgets if b is not None)
    assert plot.stat().st_size > 0
    assert "spent/target epsilon per learner" in output


def write_tiny_mnist(directory: Path, n_train: int = 60, n_test: int = 40) -> Path:
    """Random 28x28 'digits' in the four MNIST IDX files (gzipped), as the 0.2.x scripts expect."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
              "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, n_test).astype(np.uint8)}
    for key, stem in MNIST_FILES.items():
        write_idx(directory / f"{stem}.gz", arrays[key])
    return directory


def run_mnist_script(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a 0.2.x-style MNIST script for 2 rounds on a tiny local IDX fixture; fails the test on a non-zero exit."""
    data = write_tiny_mnist(tmp_path / "mnist")
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(EXAMPLES.parent)}
    completed = subprocess.run([sys.executable, str(EXAMPLES / script), "--data", str(data), "--rounds", "2",
                                "--plot", str(tmp_path / "plot.png")],
                               capture_output=True, text=True, timeout=300, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("Doing collective learning round") == 2
    assert (tmp_path / "plot.png").stat().st_size > 0
    return completed
