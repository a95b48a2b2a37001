"""The dashboard in a real browser (Debian's headless Chromium driven by Playwright).

A running experiment: its rounds appear on the open page one by one without a reload, and the grid matches
``results.json`` at the end. A finished folder of 100 rounds x 20 learners: every cell matches, the page fits a
laptop screen, the optional panels (DP, ledger, flags) show. Screenshots go to the test's tmp_path.
"""
from __future__ import annotations

import os
import threading
import time

import pytest

from colearn import Experiment
from colearn.hooks import Callback
from colearn.journal import RoundJournal
from colearn.results import ExperimentResults
from tests.learners import FixedVoter, PlusOneLearner
from tests.test_dashboard_model import synthetic_results

CHROMIUM = os.environ.get("COLEARN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120), pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}: install Debian's (apt-get install -y chromium), "
                                         f"as .ci/run does, or point $COLEARN_CHROMIUM at one")]
CODES = {True: "A", False: "R", None: "X"}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 768})  # a laptop screen
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    errors = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], errors


def expected_cells(results: ExperimentResults):
    cells = []
    for record in results.rounds:
        for i in range(results.n_learners):
            if record.proposer == i:
                code = "P"
            elif record.proposer_error is not None:
                code = "-"
            else:
                code = CODES[record.votes[i]]
            cells.append([record.round_index, i, code])
    return cells


def shown_cells(page):
    return page.eval_on_selector_all(
        "#vote-grid rect.cell", "els => els.map(e => [+e.dataset.round, +e.dataset.learner, e.dataset.vote])")


def shown_decisions(page):
    return page.eval_on_selector_all(
        "#vote-grid rect.decision", "els => els.map(e => [+e.dataset.round, e.dataset.accepted === 'true'])")


class Gate(Callback):
    """Holds the experiment after each round (already in the journal) until the test lets it go on."""

    def __init__(self):
        self.go = threading.Semaphore(0)

    def on_round_end(self, record) -> None:
        self.go.acquire(timeout=30)  # bounded: the run goes on by itself if the test failed


def test_a_running_experiment_shows_each_round_as_it_ends_without_reload(page, tmp_path):
    from colearn.dashboard.process import DashboardProcess  # what `colearn run --dashboard` serves from

    n_rounds = 5
    learners = [PlusOneLearner(), PlusOneLearner(limit=3), FixedVoter(None), PlusOneLearner()]
    gate = Gate()
    experiment = Experiment(learners, hooks=[RoundJournal(tmp_path, fsync=False), gate])
    runner = threading.Thread(target=experiment.run, args=(n_rounds,), daemon=True)
    with DashboardProcess(tmp_path, poll_seconds=0.05) as server:
        assert server.url.startswith("http://127.0.0.1:")
        navigations = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        page.goto(server.url)
        page.wait_for_selector("#message")
        page.evaluate("window.__opened_once = true")
        runner.start()
        for k in range(n_rounds):
            page.wait_for_selector(f'#vote-grid rect.decision[data-round="{k}"]')
            assert page.locator("#vote-grid rect.decision").count() == k + 1  # round k, and not yet round k + 1
            assert page.inner_text("#status") == "running"
            gate.go.release()
        runner.join(timeout=30)
        assert not runner.is_alive()
        experiment.results.save(tmp_path / "results.json")  # what `colearn run` does at the end
        server.stop()  # as `colearn run --dashboard` does at the end: open pages get the end first
        assert page.locator("#status.finished").count() == 1  # the page got the end before the server went
        page.wait_for_function("document.getElementById('connection').textContent === 'server stopped'")
        assert page.evaluate("window.__opened_once === true") and len(navigations) == 1  # never reloaded

        results = ExperimentResults.load(tmp_path / "results.json")
        assert shown_cells(page) == expected_cells(results)
        assert {code for _, _, code in shown_cells(page)} >= {"P", "A", "R", "X"}
        assert not page.is_visible("#dp-section") and not page.is_visible("#ledger-section")  # none in this run
        assert "rounds flagged" not in page.inner_text("#learners")
        assert shown_decisions(page) == [[r.round_index, r.accepted] for r in results.rounds]
        page.hover('#vote-grid rect.cell[data-round="2"][data-learner="0"]')
        tip = page.inner_text("#tip")
        assert "round 2, learner 0" in tip and f"{results.rounds[2].held_test_scores[0]:.4f}" in tip
        page.screenshot(path=str(tmp_path / "running.png"), full_page=True)
    assert (tmp_path / "running.png").stat().st_size > 10_000


def test_a_finished_folder_of_100_rounds_and_20_learners_fits_a_laptop_screen(page, tmp_path):
    from colearn.dashboard.server import DashboardServer

    results = synthetic_results(n_rounds=100, n_learners=20, seed=3)
    results.save(tmp_path / "results.json")
    with DashboardServer(tmp_path) as server:
        started = time.monotonic()
        page.goto(server.url)
        page.wait_for_selector("#status.finished")
        assert time.monotonic() - started < 10
        assert shown_cells(page) == expected_cells(results)
        assert shown_decisions(page) == [[r.round_index, r.accepted] for r in results.rounds]
        grid_width = page.eval_on_selector("#vote-grid", "svg => svg.getBoundingClientRect().width")
        assert grid_width <= 1366 - 32  # the whole history without scrolling sideways
        assert page.eval_on_selector_all("#vote-grid rect.cell[data-flagged]", "els => els.length") == 3
        assert page.is_visible("#dp-section") and page.is_visible("#ledger-section")
        assert "rounds flagged" in page.inner_text("#learners")
        page.hover('#vote-grid rect.decision[data-round="6"]')  # a round without a proposal says why
        assert "no proposal: DP budget exhausted" in page.inner_text("#tip")
        page.hover("#chart-gas svg", position={"x": 200, "y": 100})
        assert "transactions" in page.inner_text("#tip")
        page.screenshot(path=str(tmp_path / "finished.png"), full_page=True)
    assert (tmp_path / "finished.png").stat().st_size > 10_000
