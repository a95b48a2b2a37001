"""The Keras examples run (in their fast modes), including the 0.2.x MNIST script on a tiny IDX fixture."""
from __future__ import annotations

import pytest

pytest.importorskip("tensorflow", reason="the Keras examples need TensorFlow (pip install 'colearn[keras]')")

from tests.example_helpers import check_dp_tradeoff, load_example, run_mnist_script  # noqa: E402


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
    check_dp_tradeoff(all_results, tmp_path / "dp.png", capsys.readouterr().out)


@pytest.mark.slow
def test_0_2_x_mnist_script_runs_unchanged_on_local_idx_files(tmp_path):
    completed = run_mnist_script("keras_mnist.py", tmp_path)
    assert completed.stdout.count("LATEST ROUND RESULTS") == 2
    assert "Colearn Example Finished!" in completed.stdout
