"""kill -9 of a `colearn run` driver at a random finished round, then `colearn run --resume OUT`: the same
results.json an uninterrupted run writes (wall times aside), on the local and processes backends."""
from __future__ import annotations

import copy
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from colearn.journal import JOURNAL_NAME
from colearn.resume import WEIGHTS_DIR
from colearn.results import ExperimentResults

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
N_ROUNDS = 10
SETTINGS = ("--task", "digits", "--n-learners", "4", "--n-rounds", str(N_ROUNDS), "--seed", "1", "--partition",
            "dirichlet", "--alpha", "0.3", "--vote-threshold", "1.0", "--no-plots", "-q")  # accepts and rejects


def colearn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "colearn.cli", "run", *args], capture_output=True, text=True,
                          timeout=240)


def finished_rounds(out: Path) -> int:
    try:
        text = (out / JOURNAL_NAME).read_text()
    except FileNotFoundError:
        return 0
    return sum(1 for line in text.split("\n")[:-1] if '"kind": "round"' in line)


def kill_at_a_finished_round(out: Path, backend: str, at_least: int) -> int:
    """Start a run, SIGKILL its driver once ``at_least`` rounds are in the journal; return how many were."""
    driver = subprocess.Popen([sys.executable, "-m", "colearn.cli", "run", *SETTINGS, "--backend", backend,
                               "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while finished_rounds(out) < at_least and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(10)
    return finished_rounds(out)


def comparable(path: Path) -> dict:
    return json.loads(ExperimentResults.load(path).to_json(include_timings=False))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("whole")
    result = colearn(*SETTINGS, "--out", str(out))
    assert result.returncode == 0, result.stderr
    whole = comparable(out / "results.json")
    assert 0 < sum(r["accepted"] for r in whole["rounds"]) < N_ROUNDS  # both kinds of round happen
    return whole


@pytest.mark.parametrize("backend", ["local", "processes"])
def test_kill_9_then_resume_gives_the_uninterrupted_results(tmp_path, uninterrupted, backend):
    at_least = random.Random().randint(1, N_ROUNDS - 2)
    killed_after = kill_at_a_finished_round(tmp_path, backend, at_least)
    assert at_least <= killed_after < N_ROUNDS, (at_least, killed_after)
    assert not (tmp_path / "results.json").exists()
    assert list((tmp_path / WEIGHTS_DIR).glob("*.clw")) or not any(
        r["accepted"] for r in uninterrupted["rounds"][:killed_after])
    resumed = colearn("--resume", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    expected = copy.deepcopy(uninterrupted)  # the fixture serves both backends
    got = comparable(tmp_path / "results.json")
    assert got["config"]["backend"] == backend
    for data in (expected, got):
        data.pop("backend")
        data["config"].pop("backend")
    assert got == expected, f"killed after {killed_after} rounds"
    assert finished_rounds(tmp_path) == N_ROUNDS


def test_resume_refuses_contradicting_settings_and_a_tampered_model(tmp_path):
    killed_after = kill_at_a_finished_round(tmp_path, "local", 3)
    assert killed_after < N_ROUNDS
    result = colearn("--resume", str(tmp_path), "--n-rounds", "50")
    assert result.returncode == 2 and "n_rounds: the run used 10, not 50" in result.stderr
    assert "Traceback" not in result.stderr
    kept = sorted((tmp_path / WEIGHTS_DIR).glob("*.clw"))
    assert kept, "no accepted model was kept"
    blob = bytearray(kept[-1].read_bytes())
    blob[-40] ^= 1
    kept[-1].write_bytes(bytes(blob))
    result = colearn("--resume", str(tmp_path))
    assert result.returncode == 2 and "do not match their hash" in result.stderr, result.stderr
    assert not (tmp_path / "results.json").exists()
    assert colearn("--resume", str(tmp_path / "nothing-here")).returncode == 2
