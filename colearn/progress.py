"""Terminal views of an experiment (rich): a live progress bar with one line per round, and summary tables."""
from __future__ import annotations

from typing import Any, List, Optional

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
    return (f"round {record.round_index + 1:>3}  proposer {record.proposer if record.proposer is not None else '-':>2}  "
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
        self.progress.update(self.task, description=f"round {round_index + 1}: learner {proposer} proposes")

    def on_round_end(self, record: RoundRecord) -> None:
        self.progress.console.print(describe_round(record), highlight=False)
        self.progress.update(self.task, advance=1)

    def on_experiment_end(self, results: ExperimentResults) -> None:
        self.progress.stop()


def summary_table(results: ExperimentResults, baseline: Optional[List[Optional[float]]] = None) -> Table:
    """Per learner: initial and final held scores, proposals made and accepted, and (optionally) alone-training."""
    table = Table(title=f"{len(results.rounds)} rounds, {results.n_accepted} accepted", show_footer=True)
    columns = ["learner", "initial test", "final vote", "final test", "proposed", "accepted"]
    columns += ["trained alone (test)"] if baseline is not None else []
    final_test = results.final_test_scores
    footers = ["mean", _score(mean_known(results.initial_test_scores)), _score(mean_known(results.final_vote_scores)),
               _score(results.final_mean_test_score), str(len(results.rounds)), str(results.n_accepted)]
    footers += [_score(mean_known(list(baseline)))] if baseline is not None else []
    for name, footer in zip(columns, footers):
        table.add_column(name, footer=footer, justify="right")
    for i in range(results.n_learners):
        proposed = [r for r in results.rounds if r.proposer == i]
        row = [str(i), _score(results.initial_test_scores[i] if results.initial_test_scores else None),
               _score(results.final_vote_scores[i]), _score(final_test[i]), str(len(proposed)),
               str(sum(r.accepted for r in proposed))]
        row += [_score(baseline[i])] if baseline is not None else []
        table.add_row(*row)
    return table
