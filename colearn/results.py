"""What an experiment produces: one :class:`RoundRecord` per round inside :class:`ExperimentResults`.

Scores are recorded twice per round: the *proposal's* scores at each voter, and the scores of the
models the learners *hold after the round* (the proposal's if accepted, their previous ones if not).
The results also keep what is needed to repeat the run (configuration, seed, versions) and
round-trip exactly through :meth:`ExperimentResults.to_json` / :meth:`ExperimentResults.from_json`.
"""
from __future__ import annotations

import csv
import io
import math
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from colearn.ml_interface import DiffPrivBudget

TIMING_FIELDS = ("times",)


class PhaseTimes(BaseModel):
    """Wall time of each phase of a round, in seconds."""

    propose: float = 0.0
    vote: float = 0.0
    accept: float = 0.0
    total: float = 0.0


class RoundRecord(BaseModel):
    """Everything that happened in one round. Lists are indexed by learner."""

    model_config = ConfigDict(extra="forbid")

    round_index: int
    proposer: Optional[int]
    accepted: bool
    votes: List[Optional[bool]] = Field(description="per learner: True/False, None = abstained or proposer")
    vote_errors: List[Optional[str]] = Field(description="per learner: why it abstained, if it failed")
    proposal_vote_scores: List[Optional[float]]
    proposal_test_scores: List[Optional[float]]
    held_vote_scores: List[Optional[float]] = Field(description="scores of the model each learner holds after")
    held_test_scores: List[Optional[float]]
    approvals: int = 0
    rejections: int = 0
    abstentions: int = 0
    proposer_error: Optional[str] = None
    accept_errors: List[Optional[str]] = Field(default_factory=list)
    proposal_bytes: Optional[int] = None
    proposal_digest: Optional[str] = Field(None, description="sha256 of the proposal everyone voted on")
    decision_reason: Optional[str] = Field(None, description="why the strategy rejected, beyond the votes")
    flagged: List[int] = Field(default_factory=list, description="learners the strategy holds suspect")
    excluded_votes: List[int] = Field(default_factory=list, description="voters whose votes were not counted")
    dp_budgets: List[Optional[DiffPrivBudget]] = Field(default_factory=list)
    times: PhaseTimes = Field(default_factory=PhaseTimes)

    def check_learners(self, n_learners: int) -> None:
        """Raise ``ValueError`` naming the field when this round does not fit an experiment of ``n_learners``."""
        where = f"round {self.round_index}"
        if self.proposer is not None and not 0 <= self.proposer < n_learners:
            raise ValueError(f"{where}: proposer {self.proposer} is not one of the {n_learners} learners")
        for name in PER_LEARNER_FIELDS:
            values = getattr(self, name)
            if len(values) != n_learners and not (name in OPTIONAL_PER_LEARNER and not values):
                raise ValueError(f"{where}: {name} has {len(values)} entries for {n_learners} learners")
        if min(self.approvals, self.rejections, self.abstentions) < 0 or \
                self.approvals + self.rejections + self.abstentions > n_learners:
            raise ValueError(f"{where}: approvals/rejections/abstentions do not fit {n_learners} learners")

    @property
    def mean_held_test_score(self) -> Optional[float]:
        return mean_known(self.held_test_scores)

    @property
    def mean_held_vote_score(self) -> Optional[float]:
        return mean_known(self.held_vote_scores)


PER_LEARNER_FIELDS = ("votes", "vote_errors", "proposal_vote_scores", "proposal_test_scores", "held_vote_scores",
                      "held_test_scores", "accept_errors", "dp_budgets")
OPTIONAL_PER_LEARNER = ("accept_errors", "dp_budgets")  # empty in files of older versions
MAX_LEARNERS = 100_000  # a results file claiming more is refused before any per-learner work


def mean_known(values: List[Optional[float]]) -> Optional[float]:
    """Mean of the values that are known (not None); None when none is."""
    known = [v for v in values if v is not None]
    return math.fsum(known) / len(known) if known else None


def collect_versions(extra_modules: tuple[str, ...] = ()) -> Dict[str, str]:
    """Versions of Python, colearn and the frameworks that are installed (for repeating a run)."""
    versions = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for dist in ("colearn", "numpy", "scikit-learn", "pydantic", "torch", "opacus", "tensorflow", "keras",
                 "dp-accounting", "ray", "grpcio", "protobuf", "web3", "vyper", "onnx", "starlette", "uvicorn",
                 "matplotlib", "typer", "rich", *extra_modules):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def describe_metric(learners: Any) -> tuple[Optional[str], Optional[bool]]:
    """``(metric name, higher is better)`` of the first learner of a backend or list that holds learners in
    this process (``criterion_name``/``criterion`` and ``minimise_criterion``); ``(None, None)`` when unknown."""
    held = getattr(learners, "learners", learners)
    learner = held[0] if isinstance(held, (list, tuple)) and held else None
    if learner is None:
        return None, None
    name = getattr(learner, "criterion_name", None) or getattr(learner, "criterion", None)
    if name is not None and not isinstance(name, str):
        name = type(name).__name__  # a loss object, e.g. CrossEntropyLoss
    minimise = getattr(learner, "minimise_criterion", None)
    if isinstance(minimise, bool):
        return name, not minimise
    if isinstance(name, str):
        lowered = name.lower()
        if "loss" in lowered or "error" in lowered:
            return name, False
        if "accuracy" in lowered or "score" in lowered or lowered in ("auc", "f1", "r2"):
            return name, True
    return name, None


class ExperimentResults(BaseModel):
    """A whole experiment: configuration, versions, the initial evaluation and every round."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = 1
    config: Dict[str, Any] = Field(default_factory=dict)
    seed: Optional[int] = None
    versions: Dict[str, str] = Field(default_factory=dict)
    n_learners: int
    backend: str = "local"
    metric: Optional[str] = Field(None, description="what the scores measure (accuracy, loss, ...); None: unknown")
    higher_is_better: Optional[bool] = Field(None, description="direction of the metric; None: unknown")
    initial_vote_scores: List[Optional[float]] = Field(default_factory=list)
    initial_test_scores: List[Optional[float]] = Field(default_factory=list)
    rounds: List[RoundRecord] = Field(default_factory=list)
    extra: Dict[str, Any] = Field(default_factory=dict, description="anything a backend or example adds")

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentResults":
        """A results file read from disk is input: every per-learner list must fit ``n_learners``."""
        n = self.n_learners
        if not 1 <= n <= MAX_LEARNERS:
            raise ValueError(f"n_learners must be between 1 and {MAX_LEARNERS}, got {n}")
        for name in ("initial_vote_scores", "initial_test_scores"):
            if len(getattr(self, name)) not in (0, n):
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} learners")
        for record in self.rounds:
            if record.round_index < 0:
                raise ValueError(f"round_index must be >= 0, got {record.round_index}")
            record.check_learners(n)
        return self

    # ---- summaries -------------------------------------------------------------------------
    @property
    def final_test_scores(self) -> List[Optional[float]]:
        """Test score of the model each learner holds at the end."""
        return self.rounds[-1].held_test_scores if self.rounds else list(self.initial_test_scores)

    @property
    def final_vote_scores(self) -> List[Optional[float]]:
        return self.rounds[-1].held_vote_scores if self.rounds else list(self.initial_vote_scores)

    @property
    def final_mean_test_score(self) -> Optional[float]:
        return mean_known(self.final_test_scores)

    @property
    def n_accepted(self) -> int:
        return sum(1 for record in self.rounds if record.accepted)

    def held_score_matrix(self, which: str = "test") -> List[List[Optional[float]]]:
        """Rows: the initial evaluation, then the state after each round (round 0 first); columns: learners."""
        initial = self.initial_test_scores if which == "test" else self.initial_vote_scores
        attribute = "held_test_scores" if which == "test" else "held_vote_scores"
        return [list(initial)] + [list(getattr(r, attribute)) for r in self.rounds]

    # ---- serialisation ---------------------------------------------------------------------
    def to_json(self, *, include_timings: bool = True, indent: Optional[int] = 2) -> str:
        """JSON text; ``include_timings=False`` drops wall times so that two runs with one seed compare equal."""
        if include_timings:
            return self.model_dump_json(indent=indent)
        data = self.model_dump(mode="json", exclude={"rounds": {"__all__": set(TIMING_FIELDS)}})
        data.get("extra", {}).pop("timings", None)
        return ExperimentResults.model_validate(data).model_dump_json(
            indent=indent, exclude={"rounds": {"__all__": set(TIMING_FIELDS)}})

    @classmethod
    def from_json(cls, text: Union[str, bytes]) -> "ExperimentResults":
        return cls.model_validate_json(text)

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ExperimentResults":
        return cls.from_json(Path(path).read_text())

    def to_rows(self) -> List[Dict[str, Any]]:
        """One flat row per (round, learner); for CSV and pandas.

        Rounds are numbered from 0, as everywhere in colearn; the initial evaluation (before round 0) is round
        -1. With a ``--baseline`` run, ``alone_test_score`` and ``alone_pooled_test_score`` repeat on each row
        the learner's trained-alone scores (on its own test set, and on every learner's test sets together).
        """
        rows = [{"round": -1, "learner": i, "proposer": None, "accepted": None, "vote": None, "vote_error": None,
                 "proposal_vote_score": None, "proposal_test_score": None, "held_vote_score": v,
                 "held_test_score": t}
                for i, (v, t) in enumerate(zip(self.initial_vote_scores, self.initial_test_scores))]
        for r in self.rounds:
            for i in range(self.n_learners):
                rows.append({"round": r.round_index, "learner": i, "proposer": r.proposer,
                             "accepted": r.accepted, "vote": r.votes[i], "vote_error": r.vote_errors[i],
                             "proposal_vote_score": r.proposal_vote_scores[i],
                             "proposal_test_score": r.proposal_test_scores[i],
                             "held_vote_score": r.held_vote_scores[i], "held_test_score": r.held_test_scores[i]})
        baseline = {row.get("learner"): row for row in self.extra.get("baseline_alone") or []}
        if baseline:
            for row in rows:
                alone = baseline.get(row["learner"], {})
                row["alone_test_score"] = alone.get("test_score")
                row["alone_pooled_test_score"] = alone.get("pooled_test_score")
        return rows

    def to_csv(self, path: Union[str, Path, None] = None) -> str:
        """CSV text of :meth:`to_rows`; also written to ``path`` when given."""
        rows = self.to_rows()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["round"])
        writer.writeheader()
        writer.writerows(rows)
        if path is not None:
            Path(path).write_text(buffer.getvalue())
        return buffer.getvalue()

    def to_dataframe(self) -> Any:
        """A pandas DataFrame of :meth:`to_rows` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("to_dataframe needs pandas: pip install pandas") from exc
        return pd.DataFrame(self.to_rows())
