"""colearn 0.2.x results: ``Result`` (one round), ``Results`` (a list of them plus statistics), ``print_results``.

:func:`from_experiment_results` turns new-style :class:`colearn.results.ExperimentResults` into these.
Scores are the scores of the models the learners hold after each round (NaN where unknown).
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence

import numpy as np

from colearn.results import ExperimentResults


class Result:
    """One round as colearn 0.2.x recorded it; lists are indexed by learner."""

    def __init__(self) -> None:
        self.vote: bool = False
        self.votes: List[Optional[bool]] = []
        self.test_scores: List[float] = []
        self.vote_scores: List[float] = []
        self.block_proposer: Optional[int] = None
        self.training_summaries: List[Any] = []

    def __repr__(self) -> str:
        return (f"Result(vote={self.vote}, votes={self.votes}, block_proposer={self.block_proposer}, "
                f"test_scores={self.test_scores}, vote_scores={self.vote_scores})")


class Results:
    """``data`` holds one :class:`Result` per round (the first is usually ``initial_result``);
    :meth:`process_statistics` fills the per-learner histories and summary statistics."""

    def __init__(self) -> None:
        self.data: List[Result] = []
        self.h_test_scores: List[List[float]] = []
        self.h_vote_scores: List[List[float]] = []
        self.mean_test_scores: List[float] = []
        self.mean_vote_scores: List[float] = []
        self.max_test_scores: List[float] = []
        self.max_vote_scores: List[float] = []
        self.highest_test_score: float = 0
        self.highest_vote_score: float = 0
        self.highest_mean_test_score: float = 0
        self.highest_mean_vote_score: float = 0
        self.current_mean_test_score: float = 0
        self.current_mean_vote_score: float = 0
        self.current_max_test_score: float = 0
        self.current_max_vote_score: float = 0
        self.mean_mean_test_score: float = 0
        self.mean_mean_vote_score: float = 0

    def process_statistics(self) -> None:
        """Compute, as colearn 0.2.x did: per-round mean and max; per-learner histories ``h_*``; the
        highest score, highest mean, current mean and max (last round) and the mean over everything."""
        if not self.data:
            return
        n_learners = len(self.data[0].vote_scores)
        test = np.array([_floats(r.test_scores) for r in self.data], dtype=float)
        vote = np.array([_floats(r.vote_scores) for r in self.data], dtype=float)
        self.mean_test_scores = [float(np.mean(row)) for row in test]
        self.mean_vote_scores = [float(np.mean(row)) for row in vote]
        self.max_test_scores = [float(np.max(row)) for row in test]
        self.max_vote_scores = [float(np.max(row)) for row in vote]
        self.h_test_scores = [[float(test[r, i]) for r in range(len(self.data))] for i in range(n_learners)]
        self.h_vote_scores = [[float(vote[r, i]) for r in range(len(self.data))] for i in range(n_learners)]
        self.highest_test_score = float(np.max(test))
        self.highest_vote_score = float(np.max(vote))
        self.highest_mean_test_score = max(self.mean_test_scores)
        self.highest_mean_vote_score = max(self.mean_vote_scores)
        self.current_mean_test_score = self.mean_test_scores[-1]
        self.current_mean_vote_score = self.mean_vote_scores[-1]
        self.current_max_test_score = self.max_test_scores[-1]
        self.current_max_vote_score = self.max_vote_scores[-1]
        self.mean_mean_test_score = float(np.mean(test))
        self.mean_mean_vote_score = float(np.mean(vote))


def _floats(values: Sequence[Any]) -> List[float]:
    return [math.nan if v is None else float(v) for v in values]


def print_results(results: Results) -> None:
    """Print the latest round as colearn 0.2.x did: proposer, decision, and each learner's vote and scores."""
    if not results.data:
        print("no results yet")
        return
    last = results.data[-1]
    rule = "-" * 50
    print("--------------- LATEST ROUND RESULTS -------------")
    print("Selected proposer:\t", last.block_proposer)
    print("New model accepted:\t", last.vote)
    print(rule)
    print("learner id\tvote\ttest score\tvote score")
    for i, vote in enumerate(last.votes):
        test = last.test_scores[i] if i < len(last.test_scores) else math.nan
        vote_score = last.vote_scores[i] if i < len(last.vote_scores) else math.nan
        print(f"{i}\t\t{str(vote):5}\t{_fmt(test)}\t\t{_fmt(vote_score)}")
    print(rule)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3f}"


def from_experiment_results(results: ExperimentResults) -> Results:
    """0.2.x :class:`Results` from new-style results: the initial evaluation (votes all True, as 0.2.x's
    ``initial_result``) then one :class:`Result` per round with the held models' scores."""
    legacy = Results()
    if results.initial_test_scores:
        first = Result()
        first.votes = [True] * results.n_learners
        first.test_scores = _floats(results.initial_test_scores)
        first.vote_scores = _floats(results.initial_vote_scores)
        legacy.data.append(first)
    for record in results.rounds:
        result = Result()
        result.vote = record.accepted
        result.votes = list(record.votes)
        result.test_scores = _floats(record.held_test_scores)
        result.vote_scores = _floats(record.held_vote_scores)
        result.block_proposer = record.proposer
        legacy.data.append(result)
    return legacy


__all__ = ["Result", "Results", "from_experiment_results", "print_results"]
