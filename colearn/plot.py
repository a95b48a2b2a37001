"""Headless plots of an experiment: score curves and the vote-history heatmap, saved as PNG or SVG.

Figures are plain :class:`matplotlib.figure.Figure` objects with an Agg canvas attached, so nothing
here touches pyplot or the global backend: plotting works the same in a script, a test, a CI job or a
notebook. Each ``plot_*`` function draws into ``ax`` when given one, or into a new figure.

>>> save_plots(results, "out", formats=("png", "svg"))          # doctest: +SKIP
[PosixPath('out/scores.png'), PosixPath('out/vote_history.png'), ...]

Rounds on the x axis: 0 is the initial evaluation, round ``k`` is the state after the ``k``-th round.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from colearn.results import ExperimentResults

# Cell codes of the vote-history matrix (see :func:`vote_matrix`).
REJECT, APPROVE, ABSTAIN, PROPOSER, NO_VOTE = 0, 1, 2, 3, 4
VOTE_LABELS = {APPROVE: "approve", REJECT: "reject", ABSTAIN: "abstain (failed / no vote)",
               PROPOSER: "proposer", NO_VOTE: "not asked (no proposal)"}
VOTE_COLOURS = {APPROVE: "#66bd63", REJECT: "#d73027", ABSTAIN: "#b0b0b0", PROPOSER: "#7570b3",
                NO_VOTE: "#f4f4f4"}
_CMAP = ListedColormap([VOTE_COLOURS[code] for code in range(5)], name="colearn_votes")
_NORM = BoundaryNorm(np.arange(-0.5, 5.5, 1.0), _CMAP.N)
ACCEPTED_COLOUR, REJECTED_COLOUR = "#006400", "#8b0000"
FORMATS = ("png", "svg", "pdf")
WHICH = ("test", "vote", "both")


# ---- data -------------------------------------------------------------------------------------
def new_figure(width: float = 8.0, height: float = 4.5) -> Figure:
    """A figure with its own Agg canvas: no pyplot, no global backend switch."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def score_matrix(results: ExperimentResults, which: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """``(x, scores)``: round numbers and a rounds x learners float array of the HELD models' scores.

    Row 0 is the initial evaluation when the results have one; unknown scores are NaN.
    """
    if which not in ("test", "vote"):
        raise ValueError(f"which must be 'test' or 'vote', got {which!r}")
    rows = results.held_score_matrix(which)
    first = 0
    if not rows[0]:  # no initial evaluation was recorded
        rows, first = rows[1:], 1
    n = results.n_learners
    scores = np.full((len(rows), n), np.nan)
    for r, row in enumerate(rows):
        for i, value in enumerate(row[:n]):
            if value is not None:
                scores[r, i] = value
    return np.arange(first, first + len(rows)), scores


def vote_matrix(results: ExperimentResults) -> np.ndarray:
    """Learners x rounds integer matrix of cell codes: APPROVE, REJECT, ABSTAIN, PROPOSER or NO_VOTE.

    A voter that failed or returned no valid vote is ABSTAIN; in a round without a usable proposal
    (no eligible proposer, or the proposer failed) nobody was asked, so the voters' cells are NO_VOTE.
    """
    codes = np.full((results.n_learners, len(results.rounds)), NO_VOTE, dtype=int)
    for column, record in enumerate(results.rounds):
        if record.proposer is None:
            continue
        if record.proposer_error is None:
            for i, vote in enumerate(record.votes):
                codes[i, column] = APPROVE if vote is True else REJECT if vote is False else ABSTAIN
        codes[record.proposer, column] = PROPOSER
    return codes


# ---- drawing on axes (reused by the 0.2.x ColearnPlot) -------------------------------------------
def draw_score_curves(ax: Axes, x: Sequence[int], test: Optional[np.ndarray] = None,
                      vote: Optional[np.ndarray] = None, *, score_name: str = "score") -> Axes:
    """Per-learner curves (thin, dashed) and their mean (thick) of rounds x learners score arrays."""
    x = np.asarray(x)
    series = [(name, data) for name, data in (("test", test), ("vote", vote)) if data is not None]
    both = len(series) == 2
    handles: List[Line2D] = []
    for name, data in series:
        if len(x) == 0:
            continue
        data = np.asarray(data, dtype=float).reshape(len(x), -1)
        base = {"test": "tab:blue", "vote": "tab:red"}[name]
        for i in range(data.shape[1]):
            colour = base if both else f"C{i % 10}"
            (line,) = ax.plot(x, data[:, i], "--", color=colour, alpha=0.5, linewidth=1,
                              label=f"{name} {score_name}, learner {i}")
            if not both and data.shape[1] <= 10:
                handles.append(line)
        with np.errstate(invalid="ignore"):
            mean = _nanmean_rows(data)
        (line,) = ax.plot(x, mean, "-", color=base if both else "black", linewidth=3,
                          label=f"mean {name} {score_name}")
        handles.append(line)
    ax.set_xlabel("round (0 = initial evaluation)")
    ax.set_ylabel(score_name if not both else f"{score_name} (held models)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(x):
        ax.set_xlim(x[0] - 0.5, x[-1] + 0.5)
    ax.grid(True, alpha=0.3)
    if handles:
        ax.legend(handles=handles, fontsize="small", loc="best")
    return ax


def _nanmean_rows(data: np.ndarray) -> np.ndarray:
    known = ~np.isnan(data)
    counts = known.sum(axis=1)
    sums = np.where(known, data, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def draw_vote_grid(ax: Axes, codes: np.ndarray, *, first_round: int = 1,
                   proposers: Optional[Sequence[Optional[int]]] = None,
                   accepted: Optional[Sequence[Optional[bool]]] = None, legend: bool = True) -> Axes:
    """Draw a learners x rounds matrix of cell codes as a heatmap; mark each proposer cell with a check
    (accepted) or a cross (rejected), and write accepted rounds' numbers in bold green on the x axis."""
    codes = np.asarray(codes, dtype=int)
    n_learners, n_rounds = codes.shape
    x0 = first_round - 0.5
    if n_rounds == 0 or n_learners == 0:
        ax.text(0.5, 0.5, "no rounds yet", transform=ax.transAxes, ha="center", va="center")
        return ax
    ax.imshow(codes, cmap=_CMAP, norm=_NORM, aspect="auto", interpolation="nearest",
              extent=(x0, x0 + n_rounds, n_learners - 0.5, -0.5))
    proposers = list(proposers) if proposers is not None else [None] * n_rounds
    accepted = list(accepted) if accepted is not None else [None] * n_rounds
    for flag, marker, colour in ((True, r"$\checkmark$", ACCEPTED_COLOUR), (False, "X", REJECTED_COLOUR)):
        xs = [first_round + c for c in range(n_rounds) if proposers[c] is not None and accepted[c] is flag]
        ys = [proposers[c] for c in range(n_rounds) if proposers[c] is not None and accepted[c] is flag]
        if xs:
            ax.scatter(xs, ys, marker=marker, c=colour, s=90 if flag else 60, zorder=3,
                       label="proposal accepted" if flag else "proposal rejected")
    step = max(1, math.ceil(n_rounds / 25))
    ticks = list(range(first_round, first_round + n_rounds, step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    for label, tick in zip(ax.get_xticklabels(), ticks):
        if accepted[tick - first_round]:
            label.set_color(ACCEPTED_COLOUR)
            label.set_fontweight("bold")
    ax.set_yticks(range(n_learners))
    ax.set_yticklabels([f"learner {i}" for i in range(n_learners)])
    ax.set_xticks(np.arange(x0, x0 + n_rounds + 0.5, 1.0), minor=True)
    ax.set_yticks(np.arange(-0.5, n_learners, 1.0), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("round (accepted rounds in bold green)")
    if legend:
        handles = [Patch(facecolor=VOTE_COLOURS[c], edgecolor="grey", label=VOTE_LABELS[c])
                   for c in (APPROVE, REJECT, ABSTAIN, PROPOSER, NO_VOTE)]
        handles += [Line2D([], [], linestyle="", marker=r"$\checkmark$", color=ACCEPTED_COLOUR, markersize=10,
                           label="proposal accepted"),
                    Line2D([], [], linestyle="", marker="X", color=REJECTED_COLOUR, markersize=8,
                           label="proposal rejected")]
        ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0)
    return ax


# ---- the public API on ExperimentResults ---------------------------------------------------------
def _score_name(results: ExperimentResults) -> str:
    return str(results.config.get("score_name") or results.config.get("metric") or "score")


def plot_scores(results: ExperimentResults, which: str = "test", ax: Optional[Axes] = None) -> Axes:
    """Mean and per-learner curves of the held models' ``"test"``, ``"vote"`` or ``"both"`` scores."""
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if ax is None:
        ax = new_figure(*_scores_size(results)).add_subplot()
    x, test = score_matrix(results, "test")
    _, vote = score_matrix(results, "vote")
    draw_score_curves(ax, x, test if which in ("test", "both") else None,
                      vote if which in ("vote", "both") else None, score_name=_score_name(results))
    ax.set_title(f"held models' {which} scores" if which != "both" else "held models' test and vote scores")
    return ax


def plot_vote_history(results: ExperimentResults, ax: Optional[Axes] = None) -> Axes:
    """Heatmap of learners x rounds: approve / reject / abstain, proposer cells marked, accepted rounds marked."""
    if ax is None:
        ax = new_figure(*_votes_size(results)).add_subplot()
    draw_vote_grid(ax, vote_matrix(results), first_round=1,
                   proposers=[r.proposer for r in results.rounds], accepted=[r.accepted for r in results.rounds])
    ax.set_title(f"vote history ({results.n_accepted} of {len(results.rounds)} proposals accepted)")
    return ax


def _scores_size(results: ExperimentResults) -> tuple[float, float]:
    return min(20.0, max(7.0, 0.3 * len(results.rounds) + 4.0)), 4.5


def _votes_size(results: ExperimentResults) -> tuple[float, float]:
    return min(20.0, max(8.0, 0.35 * len(results.rounds) + 5.0)), max(2.5, 0.4 * results.n_learners + 1.5)


def _check_format(fmt: str, name: str) -> str:
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"{name}: unsupported plot format {fmt!r}; choose one of {FORMATS}")
    return fmt


def plot_results(results: ExperimentResults, path: Union[str, Path], which: str = "both") -> Path:
    """One figure, scores above the vote history, saved to ``path`` (format from its suffix)."""
    path = Path(path)
    fmt = _check_format(path.suffix or ".png", "path")
    width = max(_scores_size(results)[0], _votes_size(results)[0])
    figure = new_figure(width, 4.5 + _votes_size(results)[1])
    top, bottom = figure.subplots(2, 1, height_ratios=[4.5, _votes_size(results)[1]])
    plot_scores(results, which, ax=top)
    plot_vote_history(results, ax=bottom)
    top.set_xlim(-0.5, len(results.rounds) + 0.5)
    bottom.set_xlim(-0.5, len(results.rounds) + 0.5)
    return _save(figure, path, fmt)


def save_plots(results: ExperimentResults, out_dir: Union[str, Path],
               formats: Iterable[str] = ("png",), which: str = "both") -> List[Path]:
    """Write ``scores.<fmt>`` and ``vote_history.<fmt>`` for each format into ``out_dir``; return the paths."""
    if isinstance(formats, str):
        formats = (formats,)
    checked = [_check_format(fmt, "formats") for fmt in formats]
    if not checked:
        raise ValueError("formats: give at least one format, e.g. ('png',)")
    out_dir = Path(out_dir)
    paths: List[Path] = []
    for fmt in checked:
        paths.append(_save(plot_scores(results, which).figure, out_dir / f"scores.{fmt}", fmt))
        paths.append(_save(plot_vote_history(results).figure, out_dir / f"vote_history.{fmt}", fmt))
    return paths


def _save(figure: Figure, path: Path, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format=fmt, dpi=110, bbox_inches="tight")
    return path


__all__ = ["ABSTAIN", "APPROVE", "NO_VOTE", "PROPOSER", "REJECT", "VOTE_COLOURS", "draw_score_curves",
           "draw_vote_grid", "new_figure", "plot_results", "plot_scores", "plot_vote_history", "save_plots",
           "score_matrix", "vote_matrix"]
