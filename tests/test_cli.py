"""`colearn` end to end: runs, files, config files, plots, and one-line errors for bad input."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from colearn.cli import app
from colearn.results import ExperimentResults

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    result = invoke("run", "--n-rounds", "4", "--seed", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def test_run_writes_results_csv_and_plots(short_run):
    results = ExperimentResults.load(short_run / "results.json")
    assert len(results.rounds) == 4 and results.n_learners == 5
    assert results.config["learner"] == "sgd" and results.config["seed"] == 3
    assert {"python", "colearn", "numpy"} <= set(results.versions)
    assert (short_run / "results.csv").read_text().startswith("round,learner")
    for name in ("scores.png", "vote_history.png"):
        assert (short_run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_prints_rounds_and_summary(tmp_path):
    result = invoke("run", "--n-rounds", "2", "--out", str(tmp_path), "--no-plots")
    assert "round   0" in result.output and "round   1" in result.output and "round   2" not in result.output
    assert "accuracy (higher is better) of the held models after 2 rounds" in result.output
    assert "wrote" in result.output


def test_same_seed_gives_same_results(short_run, tmp_path):
    assert invoke("run", "--n-rounds", "4", "--seed", "3", "--out", str(tmp_path), "--no-plots", "-q").exit_code == 0
    first = ExperimentResults.load(short_run / "results.json")
    second = ExperimentResults.load(tmp_path / "results.json")
    assert first.to_json(include_timings=False) == second.to_json(include_timings=False)


def test_plot_redraws_from_results(short_run, tmp_path):
    result = invoke("plot", str(short_run / "results.json"), "--out", str(tmp_path), "--format", "svg")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "vote_history.svg").read_text().lstrip().startswith(("<?xml", "<svg"))


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "task: iris\nn-learners: 3\nn_rounds: 2\nvote_threshold: 0.75\nseed: 5\n"),
    (".toml", 'task = "iris"\nn_learners = 3\nn_rounds = 2\nvote_threshold = 0.75\nseed = 5\n'),
])
def test_config_files_with_command_line_overrides(tmp_path, suffix, text):
    config = tmp_path / f"experiment{suffix}"
    config.write_text(text)
    result = invoke("run", "--config", str(config), "--n-rounds", "3", "--out", str(tmp_path), "--no-plots", "-q")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "results.json").read_text())["config"]
    assert (saved["task"], saved["n_learners"], saved["n_rounds"], saved["vote_threshold"]) == ("iris", 3, 3, 0.75)


@pytest.mark.parametrize("args, named", [
    (["--n-learners", "1"], "n-learners"),
    (["--vote-threshold", "1.5"], "vote-threshold"),
    (["--partition", "random"], "partition"),
    (["--n-rounds", "-2"], "n-rounds"),
    (["--learner", "nope"], "nope"),
    (["--task", "mnist"], "mnist"),
    (["--learner-param", "oops"], "KEY=VALUE"),
    (["--config", "missing.yaml"], "--config"),
    (["--strategy", "nope"], "strategy"),
    (["--backend", "ledger", "--strategy", "excluding"], "strategy"),
])
def test_bad_arguments_give_one_line_errors(tmp_path, args, named):
    result = runner.invoke(app, ["run", *args, "--out", str(tmp_path), "-q"])
    assert result.exit_code == 2
    assert named in result.output
    assert "Traceback" not in result.output


def test_strategy_option_decides_the_rounds(tmp_path):
    result = invoke("run", "--n-learners", "4", "--n-rounds", "2", "--strategy", "excluding", "--out", str(tmp_path),
                    "--no-plots", "-q")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "results.json").read_text())["config"]
    assert saved["strategy"] == "excluding" and saved["protocol"]["strategy"] == "excluding"


def test_bad_config_key_is_named(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("n_learnerz: 3\n")
    result = runner.invoke(app, ["run", "--config", str(config), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "n-learnerz" in result.output


def test_console_script_help_and_learners():
    completed = subprocess.run([sys.executable, "-m", "colearn.cli", "run", "--help"], capture_output=True,
                               text=True, check=True)
    assert "--vote-threshold" in completed.stdout and "--config" in completed.stdout
    listed = invoke("learners").output
    assert "sgd" in listed and "torch-mlp" in listed


def test_baseline_compares_collective_with_training_alone(tmp_path):
    result = invoke("run", "--task", "iris", "--n-learners", "3", "--n-rounds", "3", "--partition", "dirichlet",
                    "--alpha", "1.0", "--baseline", "--out", str(tmp_path), "--no-plots", "-q")
    assert result.exit_code == 0, result.output
    assert "alone, all" in result.output and "collective model on all learners' test sets" in result.output
    extra = ExperimentResults.load(tmp_path / "results.json").extra
    rows = extra["baseline_alone"]
    assert [row["learner"] for row in rows] == [0, 1, 2]
    assert all(0.0 <= row["test_score"] <= 1.0 and 0.0 <= row["pooled_test_score"] <= 1.0 for row in rows)
    assert 0.0 <= extra["collective_pooled_test_score"] <= 1.0
