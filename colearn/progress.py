"""Terminal views of an experiment (rich): a live progress bar with one line per round, and summary tables."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from colearn.hooks import Callback
from colearn.results import ExperimentResults, RoundRecord, mean_known

VOTE_MARKS = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[yellow]·[/]"}


def _score(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


def describe_round(record: RoundRecord) -> str:
    """One line for a round: index, proposer, each learner's vote, the decision and the mean held test score."""
    marks = "".join("[bold]P[/]" if i == record.proposer else VOTE_MARKS[vote] for i, vote in enumerate(record.votes))
    decision = "[green]accepted[/]" if record.accepted else "[red]rejected[/]"
    reason = f" ({record.proposer_error})" if record.proposer_error else ""
    return (f"round {record.round_index:>3}  proposer {record.proposer if record.proposer is not None else '-':>2}  "
            f"votes {marks}  {decision}{reason}  mean test {_score(record.mean_held_test_score)}")


class RichProgress(Callback):
    """Shows a progress bar and prints one line per round as the experiment runs."""

    def __init__(self, n_rounds: int, console: Optional[Console] = None):
        self.console = console or Console()
        self.n_rounds = n_rounds
        self.progress = Progress(TextColumn("[bold]colearn[/]"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.description}"), TimeElapsedColumn(), console=self.console,
                                 transient=True)
        self.task: Any = None

    def on_experiment_start(self, experiment: Any) -> None:
        self.progress.start()
        self.task = self.progress.add_task("initial evaluation", total=self.n_rounds)

    def on_round_start(self, round_index: int, proposer: int) -> None:
        self.progress.update(self.task, description=f"round {round_index}: learner {proposer} proposes")

    def on_round_end(self, record: RoundRecord) -> None:
        self.progress.console.print(describe_round(record), highlight=False)
        self.progress.update(self.task, advance=1)

    def on_experiment_end(self, results: ExperimentResults) -> None:
        self.progress.stop()


def plural(count: int, noun: str) -> str:
    """``1 round``, ``2 rounds``, ``0 rounds``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def metric_label(results: ExperimentResults) -> str:
    """``accuracy (higher is better)``, or ``score`` when the results do not name their metric."""
    name = results.metric or "score"
    if results.higher_is_better is None:
        return name
    return f"{name} ({'higher' if results.higher_is_better else 'lower'} is better)"


def summary_table(results: ExperimentResults, baseline: Optional[List[Dict[str, Any]]] = None) -> Table:
    """Per learner: initial and final held scores, proposals made and accepted and, with ``baseline`` rows
    (see :func:`colearn.baseline.train_alone_baseline`), its test score when trained alone.

    ``alone``: the learner's model trained alone on its own share, scored on its own test set;
    ``alone, all``: that model scored on every learner's test set together (see docs/cli.md)."""
    title = (f"{metric_label(results)} of the held models after {plural(len(results.rounds), 'round')}, "
             f"{results.n_accepted} accepted")
    table = Table(title=title, show_footer=True, min_width=len(title))  # as wide as its title: no wrapping
    final_test = results.final_test_scores
    columns = {"learner": "mean", "initial": _score(mean_known(results.initial_test_scores)),
               "vote": _score(mean_known(results.final_vote_scores)),
               "test": _score(results.final_mean_test_score),
               "prop.": str(len(results.rounds)), "acc.": str(results.n_accepted)}
    alone = {row["learner"]: row for row in baseline or []}
    if baseline:
        columns["alone"] = _score(mean_known([row["test_score"] for row in baseline]))
        if all("pooled_test_score" in row for row in baseline):
            columns["alone, all"] = _score(mean_known([row["pooled_test_score"] for row in baseline]))
    budgets = results.rounds[-1].dp_budgets if results.rounds else []
    if any(budget is not None for budget in budgets):
        columns["DP ε spent"] = ""
    for name, footer in columns.items():
        table.add_column(name, footer=footer, justify="right")
    for i in range(results.n_learners):
        proposed = [r for r in results.rounds if r.proposer == i]
        row = [str(i), _score(results.initial_test_scores[i] if results.initial_test_scores else None),
               _score(results.final_vote_scores[i]), _score(final_test[i]), str(len(proposed)),
               str(sum(r.accepted for r in proposed))]
        if baseline:
            row.append(_score(alone.get(i, {}).get("test_score")))
        if "alone, all" in columns:
            row.append(_score(alone.get(i, {}).get("pooled_test_score")))
        if "DP ε spent" in columns:
            budget = budgets[i] if i < len(budgets) else None
            row.append("-" if budget is None else f"{budget.consumed_epsilon:.2f} / {budget.target_epsilon:g}")
        table.add_row(*row)
    pooled = results.extra.get("collective_pooled_test_score")
    if pooled is not None:
        table.caption = f"collective model on all learners' test sets: {pooled:.4f}"
    return table
