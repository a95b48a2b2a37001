"""colearn 0.2.x's live plot, ``ColearnPlot``, drawn with :mod:`colearn.plot`'s functions.

Under an interactive matplotlib backend (a desktop window) it behaves as in 0.2.x: the figure updates
after each ``plot_*`` call and :meth:`ColearnPlot.block` shows it until the window is closed. Under a
non-interactive backend (Agg, SVG, PDF, a notebook's inline backend, CI) nothing touches pyplot, the
plot is drawn into an off-screen figure, and ``block()`` returns at once, saving the figure to
``save_path`` when one was given.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from colearn.plot import (ABSTAIN, APPROVE, NO_VOTE, PROPOSER, REJECT, draw_score_curves, draw_vote_grid,
                          new_figure)
from colearn.results import ExperimentResults
from colearn.utils.results import Results, from_experiment_results

NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def is_interactive_backend() -> bool:
    """True when matplotlib's current backend opens windows (TkAgg, QtAgg, macosx, ...)."""
    import matplotlib

    backend = str(matplotlib.get_backend())
    try:
        from matplotlib.backends import backend_registry

        _, gui = backend_registry.resolve_backend(backend)
        return gui not in (None, "headless")
    except (ImportError, ValueError, RuntimeError):
        return backend.lower() not in NON_INTERACTIVE and "inline" not in backend.lower()


def legacy_vote_matrix(results: Results) -> np.ndarray:
    """Learners x entries matrix of :mod:`colearn.plot` cell codes for 0.2.x ``Results``.

    An entry without a proposer (the initial result, an individual training round) has NO_VOTE cells.
    """
    n_learners = max((len(r.votes) for r in results.data), default=0)
    codes = np.full((n_learners, len(results.data)), NO_VOTE, dtype=int)
    for column, result in enumerate(results.data):
        if result.block_proposer is None:
            continue
        for i, vote in enumerate(result.votes):
            codes[i, column] = APPROVE if vote is True else REJECT if vote is False else ABSTAIN
        codes[result.block_proposer, column] = PROPOSER
    return codes


class ColearnPlot:
    """Scores (top) and vote history (bottom) of 0.2.x :class:`~colearn.utils.results.Results`.

    Also accepts new-style :class:`~colearn.results.ExperimentResults`.
    """

    def __init__(self, score_name: str = "user-defined score", draw_time: float = 0.01,
                 save_path: Union[str, Path, None] = None):
        self.score_name = score_name
        self.draw_time = draw_time  # pause that lets an interactive window redraw
        self.save_path = Path(save_path) if save_path is not None else None
        self.interactive = is_interactive_backend()
        self.fig_invalid = False
        self._make_axes()

    def _make_axes(self) -> None:
        figure = None
        if self.interactive:
            try:
                import matplotlib.pyplot as plt

                plt.ion()
                figure = plt.figure(figsize=(10, 8), layout="constrained")
                plt.show(block=False)
            except Exception:  # e.g. a GUI backend without a display: draw off-screen instead
                self.interactive = False
        self.figure = figure if figure is not None else new_figure(10, 8)
        self.results_axes, self.votes_axes = self.figure.subplots(2, 1, height_ratios=[3, 2])
        self.fig_invalid = False

    def _legacy(self, results: Union[Results, ExperimentResults]) -> Results:
        return from_experiment_results(results) if isinstance(results, ExperimentResults) else results

    def plot_results_and_votes(self, results: Union[Results, ExperimentResults]) -> None:
        self.plot_results(results)
        self.plot_votes(results)

    def plot_results(self, results: Union[Results, ExperimentResults]) -> None:
        """Per-learner and mean test and vote scores, one point per entry of ``results.data``."""
        if self.fig_invalid:
            self._make_axes()
        results = self._legacy(results)
        results.process_statistics()
        self.results_axes.clear()
        if results.data:
            x = np.arange(len(results.data))
            draw_score_curves(self.results_axes, x, np.array(results.h_test_scores, dtype=float).T,
                              np.array(results.h_vote_scores, dtype=float).T, score_name=self.score_name)
            self.results_axes.set_xlabel("training round")
        self._draw()

    def plot_votes(self, results: Union[Results, ExperimentResults]) -> None:
        """Heatmap of the votes: approve / reject / abstain, proposer marked with the round's outcome."""
        if self.fig_invalid:
            self._make_axes()
        results = self._legacy(results)
        self.votes_axes.clear()
        if results.data:
            draw_vote_grid(self.votes_axes, legacy_vote_matrix(results), first_round=0,
                           proposers=[r.block_proposer for r in results.data],
                           accepted=[bool(r.vote) if r.block_proposer is not None else None for r in results.data])
            self.votes_axes.set_xlim(-0.5, len(results.data) - 0.5)
            self.votes_axes.set_xlabel("training round")
        self._draw()

    def _draw(self) -> None:
        if self.interactive:
            import matplotlib.pyplot as plt

            self.figure.canvas.draw_idle()
            plt.pause(self.draw_time)

    def save(self, path: Union[str, Path]) -> Path:
        """Save the current figure (format from the suffix)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.figure.savefig(path, dpi=110)
        return path

    def block(self) -> Optional[Any]:
        """Show the plot until its window is closed; with a non-interactive backend, return at once
        (after saving to ``save_path`` if given)."""
        if self.save_path is not None:
            self.save(self.save_path)
        if not self.interactive:
            return None
        if self.fig_invalid:
            raise RuntimeError("a previous call to block() closed the plot; plot again before blocking")
        import matplotlib.pyplot as plt

        plt.ioff()
        plt.show(block=True)
        self.fig_invalid = True  # closing the window destroys the figure
        return None


__all__ = ["ColearnPlot", "is_interactive_backend", "legacy_vote_matrix"]
