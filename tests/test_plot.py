"""colearn.plot: score curves and vote-history heatmap, headless, as PNG or SVG."""
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from colearn import Experiment, ExperimentResults, ProtocolConfig, RoundRecord
from colearn.plot import (ABSTAIN, ACCEPTED_COLOUR, APPROVE, NO_VOTE, PROPOSER, REJECT, VOTE_COLOURS,
                          plot_results, plot_scores, plot_vote_history, save_plots, vote_matrix)
from colearn.utils.plot import ColearnPlot, legacy_vote_matrix
from colearn.utils.results import from_experiment_results
from tests.learners import PlusOneLearner


def _record(index, proposer, accepted, votes, errors=None, proposer_error=None, held=None):
    n = len(votes)
    held = held or [float(index + 1)] * n
    return RoundRecord(round_index=index, proposer=proposer, accepted=accepted, votes=votes,
                       vote_errors=errors or [None] * n, proposal_vote_scores=[None] * n,
                       proposal_test_scores=[None] * n, held_vote_scores=held, held_test_scores=held,
                       proposer_error=proposer_error)


@pytest.fixture
def handmade() -> ExperimentResults:
    """Every kind of cell: approve, reject, abstain, proposer, a failed proposer, no proposer at all."""
    return ExperimentResults(n_learners=3, initial_vote_scores=[0.0, 1.0, 2.0], initial_test_scores=[0.0, 1.0, 2.0],
                             rounds=[_record(0, 0, True, [None, True, False]),
                                     _record(1, 1, False, [False, None, None], errors=[None, None, "boom"]),
                                     _record(2, 2, False, [None, None, None], proposer_error="exploded"),
                                     _record(3, None, False, [None, None, None])])


EXPECTED = np.array([[PROPOSER, REJECT, NO_VOTE, NO_VOTE],
                     [APPROVE, PROPOSER, NO_VOTE, NO_VOTE],
                     [REJECT, ABSTAIN, PROPOSER, NO_VOTE]])


def test_vote_matrix_encodes_each_kind_of_cell(handmade):
    assert np.array_equal(vote_matrix(handmade), EXPECTED)


def test_heatmap_pixels_show_the_votes_in_their_colours(handmade):
    ax = plot_vote_history(handmade)
    assert np.array_equal(ax.images[0].get_array(), EXPECTED)
    figure = ax.figure
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(int)
    height = pixels.shape[0]
    for learner in range(3):
        for column in range(4):
            # off-centre, so that the proposer's marker does not cover the sample
            x, y = ax.transData.transform((column - 0.3, learner - 0.3))
            got = pixels[int(round(height - y)), int(round(x))]
            want = np.array(to_rgb(VOTE_COLOURS[EXPECTED[learner, column]])) * 255
            assert np.abs(got - want).max() <= 3, (learner, column, got, want)


def test_proposer_cells_and_accepted_rounds_are_marked(handmade):
    ax = plot_vote_history(handmade)
    markers = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
    assert markers["proposal accepted"] == [[0, 0]]  # rounds are numbered from 0, as in results.json
    assert markers["proposal rejected"] == [[1, 1], [2, 2]]  # the round without a proposer has no marker
    labels = {label.get_text(): label for label in ax.get_xticklabels()}
    assert labels["0"].get_color() == ACCEPTED_COLOUR and labels["0"].get_fontweight() == "bold"
    assert labels["1"].get_color() != ACCEPTED_COLOUR and "3" in labels  # the last round has its tick
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert {"approve", "reject", "proposer", "proposal accepted"} <= set(legend)
    assert any(text.startswith("abstain") for text in legend)


def test_plot_scores_draws_held_scores_with_the_initial_evaluation_before_round_0():
    learners = [PlusOneLearner(limit=2), PlusOneLearner(limit=3), PlusOneLearner()]
    results = Experiment(learners, ProtocolConfig()).run(5)
    ax = plot_scores(results, "test")
    lines = {line.get_label(): line for line in ax.get_lines()}
    mean = lines["mean test score"]
    held = np.array(results.held_score_matrix("test"), dtype=float)
    assert list(mean.get_xdata()) == list(range(-1, 5))
    ticks = {label.get_text(): tick for label, tick in zip(ax.get_xticklabels(), ax.get_xticks())}
    assert ticks["initial"] == -1 and ticks["4"] == 4  # the last round is ticked
    assert np.allclose(mean.get_ydata(), held.mean(axis=1))
    assert np.allclose(lines["test score, learner 1"].get_ydata(), held[:, 1])
    both = {line.get_label() for line in plot_scores(results, "both").get_lines()}
    assert {"mean test score", "mean vote score"} <= both
    with pytest.raises(ValueError, match="which"):
        plot_scores(results, "train")


def test_save_plots_writes_valid_png_and_svg(tmp_path, handmade):
    paths = save_plots(handmade, tmp_path / "out", formats=("png", "svg"))
    assert sorted(p.name for p in paths) == ["scores.png", "scores.svg", "vote_history.png", "vote_history.svg"]
    for path in paths:
        if path.suffix == ".png":
            with Image.open(path) as image:
                assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 100
                image.verify()
        else:
            root = ET.parse(path).getroot()
            assert root.tag.endswith("svg")
    with pytest.raises(ValueError, match="formats"):
        save_plots(handmade, tmp_path, formats=("gif",))


def test_plot_results_one_file_in_the_format_of_its_suffix(tmp_path, handmade):
    svg = plot_results(handmade, tmp_path / "all.svg")
    assert ET.parse(svg).getroot().tag.endswith("svg")
    png = plot_results(handmade, tmp_path / "all.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="path"):
        plot_results(handmade, tmp_path / "all.gif")


def test_plotting_does_not_touch_pyplot(tmp_path):
    # pyplot owns the global backend and figure registry; colearn.plot never imports it
    code = ("import sys; from colearn import Experiment; from colearn.plot import save_plots;"
            "from tests.learners import PlusOneLearner;"
            f"save_plots(Experiment([PlusOneLearner(), PlusOneLearner()]).run(2), r'{tmp_path}', ('png', 'svg'));"
            "print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.split() == ["False"]
    assert len(list(tmp_path.iterdir())) == 4


def test_colearn_plot_accepts_new_results_and_does_not_block_under_agg(tmp_path, handmade):
    plot = ColearnPlot(score_name="accuracy", save_path=tmp_path / "live.png")
    assert plot.interactive is False
    plot.plot_results_and_votes(handmade)
    legacy = from_experiment_results(handmade)
    assert np.array_equal(plot.votes_axes.images[0].get_array(), legacy_vote_matrix(legacy))
    assert plot.block() is None
    assert (tmp_path / "live.png").exists()
    plot.plot_results_and_votes(handmade)  # still usable after block()


def test_results_without_rounds_say_so_instead_of_empty_axes(tmp_path):
    results = Experiment([PlusOneLearner(), PlusOneLearner()]).run(0)
    paths = save_plots(results, tmp_path, formats=("png",))
    assert all(p.stat().st_size > 0 for p in paths)
    for ax in (plot_scores(results), plot_vote_history(results)):
        assert not ax.get_lines() and not ax.axison
        assert any("no rounds were run" in text.get_text() for text in ax.texts)


def _scored(n_rounds: int, n_learners: int, *, initial: float = 0.1, failed: bool = False) -> ExperimentResults:
    """Rounds whose held scores climb from 0.9 towards 1.0 (or are all unknown: every learner failed)."""
    rng = np.random.default_rng(0)
    rounds = []
    for r in range(n_rounds):
        held = [None] * n_learners if failed else [float(0.9 + 0.1 * r / n_rounds - 0.01 * rng.random())
                                                   for _ in range(n_learners)]
        record = _record(r, r % n_learners, not failed, [None] * n_learners, held=held)
        rounds.append(record.model_copy(update={"held_test_scores": held, "held_vote_scores": held}))
    start = [None if failed else initial] * n_learners
    return ExperimentResults(n_learners=n_learners, initial_vote_scores=start, initial_test_scores=start,
                             rounds=rounds, metric="accuracy", higher_is_better=True)


def test_the_y_axis_fits_the_rounds_not_the_initial_evaluation_and_names_the_metric():
    ax = plot_scores(_scored(20, 5))
    low, high = ax.get_ylim()
    assert 0.85 < low < 0.9 and 1.0 <= high < 1.02  # not 0..1: the initial 0.1 would squash the curves
    assert ax.get_ylabel() == "test accuracy (higher is better)"
    assert any("off the axis (initial mean 0.1)" in text.get_text() for text in ax.texts)


def test_every_learner_is_labelled_and_the_last_round_is_ticked_at_100_rounds_by_10_learners():
    ax = plot_scores(_scored(100, 10))
    labels = ",".join(text.get_text() for text in ax.texts if text.get_text()[:1].isdigit()).split(",")
    assert sorted(int(label) for label in labels) == list(range(10))  # each thin line ends with its number
    ticks = [label.get_text() for label in ax.get_xticklabels()]
    assert ticks[0] == "initial" and ticks[-1] == "99" and len(ticks) <= 14
    votes = plot_vote_history(_scored(100, 10))
    assert votes.get_xticklabels()[-1].get_text() == "99" and len(votes.get_xticks()) <= 27


def test_baseline_runs_draw_reference_lines():
    results = _scored(5, 3)
    results.extra["baseline_alone"] = [{"learner": i, "test_score": 0.8 + 0.01 * i, "pooled_test_score": 0.7}
                                       for i in range(3)]
    lines = {line.get_label(): line for line in plot_scores(results).get_lines()}
    alone = [line for label, line in lines.items() if label.startswith("alone:")]
    pooled = [line for label, line in lines.items() if label.startswith("alone, all:")]
    assert np.allclose(alone[0].get_ydata(), 0.81) and np.allclose(pooled[0].get_ydata(), 0.7)
    assert plot_scores(results).get_ylim()[0] < 0.7  # the references are in view


def test_an_all_failed_run_says_so_instead_of_empty_axes():
    ax = plot_scores(_scored(4, 3, failed=True))
    assert not ax.get_lines() and any("every learner failed" in text.get_text() for text in ax.texts)
