"""Headless plots of an experiment: score curves and the vote-history heatmap, saved as PNG or SVG.

Figures are plain :class:`matplotlib.figure.Figure` objects with an Agg canvas attached, so nothing
here touches pyplot or the global backend: plotting works the same in a script, a test, a CI job or a
notebook. Each ``plot_*`` function draws into ``ax`` when given one, or into a new figure.

>>> save_plots(results, "out", formats=("png", "svg"))          # doctest: +SKIP
[PosixPath('out/scores.png'), PosixPath('out/vote_history.png'), ...]

Rounds are numbered from 0, as everywhere in colearn (console, CSV, results.json, audit): the scores at
round ``k`` are those of the models held after round ``k``; the initial evaluation, before round 0, sits at
-1 and is labelled "initial".
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

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

    The first row is the initial evaluation (x = -1) when the results have one; unknown scores are NaN.
    """
    if which not in ("test", "vote"):
        raise ValueError(f"which must be 'test' or 'vote', got {which!r}")
    rows = results.held_score_matrix(which)
    first = -1
    if not rows[0]:  # no initial evaluation was recorded
        rows, first = rows[1:], 0
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
LABELLED_LEARNERS = 10  # up to this many learners, each thin line carries its learner's number at its end


def round_ticks(ax: Axes, first: int, last: int, *, max_ticks: int = 12) -> List[int]:
    """Integer x ticks from ``first`` to ``last`` at a round step (1, 2, 5, 10, ...) that always include the
    last round; a tick at -1 (the initial evaluation, before round 0) reads "initial"."""
    if last < 0:  # only the initial evaluation
        ax.set_xticks([-1])
        ax.set_xticklabels(["initial"])
        return [-1]
    span = max(1, last - max(first, 0))
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 10**9) if span / s <= max_ticks)
    ticks = list(range(max(first, 0) if first >= 0 or step == 1 else step, last + 1, step))  # 0 crowds "initial"
    if ticks and last - ticks[-1] < step / 2 and ticks[-1] != last:
        ticks[-1] = last  # the last round's tick replaces a neighbour it would crowd
    elif not ticks or ticks[-1] != last:
        ticks.append(last)
    if first < 0:
        ticks = [-1] + ticks
    ax.set_xticks(ticks)
    ax.set_xticklabels(["initial" if t == -1 else str(t) for t in ticks])
    return ticks


def focus_range(values: np.ndarray, references: Sequence[float] = ()) -> Optional[tuple[float, float]]:
    """y limits around the finite ``values`` and reference lines, padded by 8%: the interesting part, not 0..1.
    With many values (long runs) the lowest 5% (the first rounds' climb) may fall below the axis."""
    known = np.asarray([v for v in np.ravel(values) if np.isfinite(v)], dtype=float)
    references = [float(r) for r in references if r is not None and math.isfinite(r)]
    if not len(known) and not references:
        return None
    floor = float(np.percentile(known, 5 if len(known) >= 200 else 0)) if len(known) else math.inf
    low, high = min([floor, *references]), max([*known.tolist(), *references])
    pad = 0.08 * (high - low) or 0.05 * max(abs(high), 1e-3)
    return low - pad, high + pad


def draw_score_curves(ax: Axes, x: Sequence[int], test: Optional[np.ndarray] = None,
                      vote: Optional[np.ndarray] = None, *, score_name: str = "score",
                      references: Optional[Dict[str, float]] = None) -> Axes:
    """Per-learner curves (thin, labelled at their ends), the learners' min-max band and their mean (thick)
    of rounds x learners score arrays; ``references`` are horizontal lines (label -> value), e.g. the
    trained-alone baseline. The y range fits the rounds' scores (x >= 0) and the references: an initial
    evaluation far below them is noted in the corner rather than squashing the curves."""
    x = np.asarray(x)
    series = [(name, data) for name, data in (("test", test), ("vote", vote)) if data is not None]
    both = len(series) == 2
    handles: List[Any] = []
    in_range: List[np.ndarray] = []
    ends: List[tuple[float, float, str, str]] = []  # (x, y, learner, colour) where each thin line ends
    for name, data in series:
        if len(x) == 0:
            continue
        data = np.asarray(data, dtype=float).reshape(len(x), -1)
        base = {"test": "tab:blue", "vote": "tab:red"}[name]
        n_learners = data.shape[1]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN row: no band there
            mean = _nanmean_rows(data)
            low, high = np.nanmin(data, axis=1), np.nanmax(data, axis=1)
        if n_learners > 1:
            band = ax.fill_between(x, low, high, color=base if both else "tab:blue", alpha=0.12, linewidth=0,
                                   label=f"{name}: range over learners")
            handles.append(band)
        for i in range(n_learners):
            colour = base if both else f"C{i % 10}"
            (line,) = ax.plot(x, data[:, i], "-", color=colour, alpha=0.45, linewidth=0.9,
                              label=f"{name} {score_name}, learner {i}")
            known = np.flatnonzero(np.isfinite(data[:, i]))
            if n_learners <= LABELLED_LEARNERS and len(known):
                ends.append((float(x[known[-1]]), float(data[known[-1], i]), str(i), colour))
        (line,) = ax.plot(x, mean, "-", color=base if both else "black", linewidth=2.5,
                          label=f"mean {name} {score_name}")
        handles.insert(0, line)
        in_range.append(data[x >= 0] if (x >= 0).any() else data)
    for label, value in (references or {}).items():
        handles.append(ax.axhline(value, color="dimgrey", linestyle=(0, (4, 3)) if "all" not in label else ":",
                                  linewidth=1.5, label=label))
    ax.set_xlabel("round (numbered from 0; the learners' numbers end their lines)" if len(x) else "round")
    ax.set_ylabel(score_name if not both else f"{score_name} (held models)")
    if len(x):
        round_ticks(ax, int(x[0]), int(x[-1]))
        ax.set_xlim(x[0] - 0.5, x[-1] + 0.5)
        limits = focus_range(np.concatenate([d.ravel() for d in in_range]) if in_range else np.array([]),
                             list((references or {}).values()))
        if limits is not None:
            ax.set_ylim(*limits)
            shown = [np.asarray(d, dtype=float) for _, d in series]
            if any((d[np.isfinite(d)] < limits[0]).any() for d in shown):
                initial = [np.nanmean(d[x < 0]) for d in shown if (x < 0).any() and np.isfinite(d[x < 0]).any()]
                note = f" (initial mean {min(initial):.3g})" if initial else ""
                ax.text(0.01, 0.02, f"scores below {limits[0]:.3g} are off the axis{note}", transform=ax.transAxes,
                        fontsize="small", color="dimgrey")
            _label_line_ends(ax, ends, 0.03 * (limits[1] - limits[0]))
    ax.grid(True, alpha=0.3)
    if handles:  # below the axes, never over the curves
        ax.legend(handles=handles, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  ncol=min(len(handles), 3), frameon=False)
    return ax


def _label_line_ends(ax: Axes, ends: List[tuple[float, float, str, str]], close: float) -> None:
    """Write each learner's number where its line ends; lines that end together share one label ("1,3")."""
    groups: List[List[tuple[float, float, str, str]]] = []
    for end in sorted(ends, key=lambda e: (e[0], e[1])):
        if groups and groups[-1][0][0] == end[0] and abs(end[1] - groups[-1][-1][1]) < close:
            groups[-1].append(end)
        else:
            groups.append([end])
    for group in groups:
        y_end = float(np.mean([g[1] for g in group]))
        colour = group[0][3] if len({g[3] for g in group}) == 1 else "dimgrey"
        ax.annotate(",".join(sorted((g[2] for g in group), key=int)), (1.0, y_end), xycoords=ax.get_yaxis_transform(),
                    xytext=(3, 0), textcoords="offset points", fontsize="x-small", color=colour, va="center",
                    annotation_clip=False)  # just right of the frame, level with the line's last point


def say_instead(ax: Axes, message: str) -> Axes:
    """An axes that states why there is nothing to draw, instead of empty axes."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", wrap=True)
    return ax


def _nanmean_rows(data: np.ndarray) -> np.ndarray:
    known = ~np.isnan(data)
    counts = known.sum(axis=1)
    sums = np.where(known, data, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def draw_vote_grid(ax: Axes, codes: np.ndarray, *, first_round: int = 0,
                   proposers: Optional[Sequence[Optional[int]]] = None,
                   accepted: Optional[Sequence[Optional[bool]]] = None, legend: bool = True) -> Axes:
    """Draw a learners x rounds matrix of cell codes as a heatmap; mark each proposer cell with a check
    (accepted) or a cross (rejected), and write accepted rounds' numbers in bold green on the x axis."""
    codes = np.asarray(codes, dtype=int)
    n_learners, n_rounds = codes.shape
    x0 = first_round - 0.5
    if n_rounds == 0 or n_learners == 0:
        return say_instead(ax, "no rounds were run: no votes to show")
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
    ticks = round_ticks(ax, first_round, first_round + n_rounds - 1, max_ticks=25)
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
    """The metric results.json names (``accuracy``, ``loss``, ...), else ``score``."""
    return str(results.metric or results.config.get("score_name") or results.config.get("metric") or "score")


def _axis_label(results: ExperimentResults, which: str) -> str:
    """``test accuracy (higher is better)``: the metric and, when known, its direction."""
    direction = ("" if results.higher_is_better is None
                 else f" ({'higher' if results.higher_is_better else 'lower'} is better)")
    return f"{'test and vote' if which == 'both' else which} {_score_name(results)}{direction}"


def baseline_references(results: ExperimentResults) -> Dict[str, float]:
    """Reference lines of a ``--baseline`` run: the learners trained alone, on their own test sets (``alone``)
    and on every learner's test sets together (``alone, all``), averaged over learners."""
    rows = results.extra.get("baseline_alone") or []
    references: Dict[str, float] = {}
    for key, label in (("test_score", "alone: trained alone, own test set (mean)"),
                       ("pooled_test_score", "alone, all: trained alone, all test sets (mean)")):
        values = [row.get(key) for row in rows if isinstance(row, dict)]
        known = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        if known:
            references[label] = math.fsum(known) / len(known)
    return references


def plot_scores(results: ExperimentResults, which: str = "test", ax: Optional[Axes] = None) -> Axes:
    """Mean, range and per-learner curves of the held models' ``"test"``, ``"vote"`` or ``"both"`` scores.

    With no rounds, or no score known at all (every learner failed), the axes say so instead of staying empty.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if ax is None:
        ax = new_figure(*_scores_size(results)).add_subplot()
    x, test = score_matrix(results, "test")
    _, vote = score_matrix(results, "vote")
    shown = [data for name, data in (("test", test), ("vote", vote)) if which in (name, "both")]
    title = f"held models' {which} scores" if which != "both" else "held models' test and vote scores"
    if not results.rounds:
        known = [v for v in np.ravel(shown) if np.isfinite(v)]
        initial = f" (initial mean {np.mean(known):.4g})" if known else ""
        ax.set_title(title)
        return say_instead(ax, f"no rounds were run: no scores to plot{initial}")
    if not any(np.isfinite(data).any() for data in shown):
        ax.set_title(title)
        return say_instead(ax, f"no {which} score is known: every learner failed to score "
                               f"in all {len(results.rounds)} rounds")
    references = baseline_references(results) if which in ("test", "both") else {}
    draw_score_curves(ax, x, test if which in ("test", "both") else None,
                      vote if which in ("vote", "both") else None, score_name=_score_name(results),
                      references=references)
    ax.set_ylabel(_axis_label(results, which))
    ax.set_title(title)
    return ax


def plot_vote_history(results: ExperimentResults, ax: Optional[Axes] = None) -> Axes:
    """Heatmap of learners x rounds: approve / reject / abstain, proposer cells marked, accepted rounds marked."""
    if ax is None:
        ax = new_figure(*_votes_size(results)).add_subplot()
    draw_vote_grid(ax, vote_matrix(results), first_round=0,
                   proposers=[r.proposer for r in results.rounds], accepted=[r.accepted for r in results.rounds])
    ax.set_title(f"vote history ({results.n_accepted} of {len(results.rounds)} proposals accepted)")
    return ax


def _scores_size(results: ExperimentResults) -> tuple[float, float]:
    return min(12.0, max(8.0, 0.06 * len(results.rounds) + 7.0)), 5.0


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
    top.set_xlim(-1.5, len(results.rounds) - 0.5)
    bottom.set_xlim(*top.get_xlim())
    return _save(figure, path, fmt)


def save_plots(results: ExperimentResults, out_dir: Union[str, Path],
               formats: Iterable[str] = ("png",), which: str = "test") -> List[Path]:
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


__all__ = ["ABSTAIN", "APPROVE", "NO_VOTE", "PROPOSER", "REJECT", "VOTE_COLOURS", "baseline_references",
           "draw_score_curves",
           "draw_vote_grid", "new_figure", "plot_results", "plot_scores", "plot_vote_history", "save_plots",
           "score_matrix", "vote_matrix"]
