"""The PyTorch examples run (in their fast modes), including the 0.2.x MNIST script on a tiny IDX fixture."""
from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the PyTorch examples need torch (pip install 'colearn[pytorch]')")

from tests.example_helpers import check_dp_tradeoff, load_example, run_mnist_script  # noqa: E402


@pytest.fixture
def torch_threads():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the examples set one thread; leave the process as it was


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_digits_example_fast_mode(model, capsys, torch_threads):
    results = load_example("pytorch_digits").main(["--model", model, "--fast"])
    assert len(results.rounds) == 3 and any(r.accepted for r in results.rounds)
    final = results.rounds[-1].held_test_scores
    assert all(0.0 <= s <= 1.0 for s in final)
    assert f"{model}: 3 rounds" in capsys.readouterr().out


@pytest.mark.slow
def test_dp_example_fast_mode_reports_budgets(tmp_path, capsys, torch_threads):
    all_results = load_example("pytorch_digits_dp").main(["--fast", "--plot", str(tmp_path / "dp.png")])
    check_dp_tradeoff(all_results, tmp_path / "dp.png", capsys.readouterr().out)


@pytest.mark.slow
def test_0_2_x_mnist_script_runs_unchanged_on_local_idx_files(tmp_path):
    completed = run_mnist_script("pytorch_mnist.py", tmp_path)
    assert "Colearn Example Finished!" in completed.stdout
