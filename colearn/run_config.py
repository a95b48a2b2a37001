"""What an experiment is, before anything runs: its configuration and how each learner is built.

:class:`RunConfig` names the task, learner, split and protocol settings; :class:`LearnerFactory` builds
learner ``i`` from the configuration alone (it is picklable and loads its own data), so a backend can
build each learner where it will live without the data ever crossing a process boundary. This module sits
below the backends (it builds no backend; :mod:`colearn.runner` does), so backends, the ledger and the
learner servers can use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from colearn.data.types import LearnerData
from colearn.ml_interface import MachineLearningInterface
from colearn.protocol import ProtocolConfig
from colearn.strategies import ExcludingStrategy, SuspendingStrategy

BACKENDS = ("local", "processes", "ray", "ledger", "grpc")
PARTITIONS = ("iid", "dirichlet", "shards")


class RunConfig(BaseModel):
    """Everything that defines an experiment. Unknown keys and bad values are errors naming the key."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    task: str = Field("digits", description="embedded task (digits, breast_cancer, iris, wine) or 'csv'/'npz'")
    data_path: Optional[str] = Field(None, description="local CSV or .npz file when task is 'csv' or 'npz'")
    target: str = Field("label", description="target column of a CSV file")
    learner: str = Field("sgd", description="registered learner name (see `colearn learners`)")
    learner_params: Dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the learner")
    n_learners: int = Field(5, ge=2, strict=True, description="number of learners (the proposer never votes, so >= 2)")
    n_rounds: int = Field(20, ge=0, strict=True, description="number of rounds")
    vote_threshold: float = Field(0.5, ge=0.0, le=1.0, strict=True, description="approving fraction of voters needed")
    partition: Literal["iid", "dirichlet", "shards"] = "iid"
    alpha: float = Field(0.5, gt=0.0, strict=True, description="Dirichlet concentration (smaller = more skewed)")
    shards_per_learner: int = Field(2, ge=1, strict=True)
    fractions: Tuple[float, float, float] = Field((0.6, 0.2, 0.2), description="train/vote/test split")
    seed: int = Field(0, ge=0, strict=True, description="seeds the split, the learners and the proposer selection")
    selector: Literal["round_robin", "random"] = "round_robin"
    strategy: Literal["threshold", "excluding", "suspending"] = Field(
        "threshold", description="how rounds are decided: the threshold rule, or it with voters (excluding) or "
                                 "proposers (suspending) whose record condemns them set aside; see docs/robustness.md")
    evaluate_proposer: bool = Field(True, strict=True)
    backend: Literal["local", "processes", "ray", "ledger", "grpc"] = "local"
    backend_options: Dict[str, Any] = Field(default_factory=dict, description="e.g. timeout, ray_address")
    baseline: bool = Field(False, strict=True, description="also train each learner alone on its own share and report it")

    @field_validator("vote_threshold", "alpha")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, value: Tuple[float, float, float]) -> Tuple[float, float, float]:
        if any(f <= 0 for f in value) or abs(sum(value) - 1.0) > 1e-9:
            raise ValueError(f"train/vote/test fractions must be positive and sum to 1, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _data_path_for_files(self) -> "RunConfig":
        if self.task in ("csv", "npz") and not self.data_path:
            raise ValueError(f"task {self.task!r} needs data_path (a local file)")
        return self

    @model_validator(mode="after")
    def _backend_options_fit(self) -> "RunConfig":
        from colearn.backends.options import check_backend_options

        check_backend_options(self.backend, self.backend_options)
        return self

    @model_validator(mode="after")
    def _ledger_decides_by_threshold(self) -> "RunConfig":
        if self.backend == "ledger" and self.strategy != "threshold":
            raise ValueError(f"strategy {self.strategy!r} is not available with backend 'ledger': the contract "
                             f"decides every round by the threshold rule (strategy 'threshold')")
        return self

    def protocol(self) -> ProtocolConfig:
        strategy = {"threshold": None, "excluding": ExcludingStrategy,
                    "suspending": SuspendingStrategy}[self.strategy]
        return ProtocolConfig(vote_threshold=self.vote_threshold, selector=self.selector, seed=self.seed,
                              evaluate_proposer=self.evaluate_proposer,
                              strategy=strategy(self.vote_threshold) if strategy else None)


def learner_seed(seed: int, index: int) -> int:
    """An independent, reproducible seed for learner ``index`` of an experiment seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def load_learner_data(config: RunConfig) -> List[LearnerData]:
    """Load the task and split it among the learners, as the configuration says (deterministic)."""
    from colearn.data.loaders import load_csv, load_npz
    from colearn.data.splits import split_learner_data
    from colearn.data.tasks import load_task

    if config.task == "csv":
        task = load_csv(config.data_path, target=config.target)
    elif config.task == "npz":
        task = load_npz(config.data_path)
    else:
        task = load_task(config.task)
    return split_learner_data(task, config.n_learners, partition=config.partition, alpha=config.alpha,
                              shards_per_learner=config.shards_per_learner, seed=config.seed,
                              fractions=config.fractions)


@dataclass(frozen=True)
class LearnerFactory:
    """Builds learner ``index`` of an experiment from its configuration; picklable, loads its own data."""

    config: RunConfig
    index: int

    def __call__(self) -> MachineLearningInterface:
        data = load_learner_data(self.config)[self.index]
        return build_learner(self.config, data, self.index)


def build_learner(config: RunConfig, data: LearnerData, index: int) -> MachineLearningInterface:
    """Learner ``index`` on its share; a learner parameter it does not take is a ``ValueError`` naming it."""
    from colearn.registry import make_learner

    try:
        return make_learner(config.learner, data, seed=learner_seed(config.seed, index), **config.learner_params)
    except (TypeError, ValueError) as exc:
        refused = exc if isinstance(exc, TypeError) else exc.__cause__  # make_learner wraps a TypeError
        unknown = [key for key in config.learner_params if f"'{key}'" in str(refused)] \
            if isinstance(refused, TypeError) else []
        if not unknown:
            raise
        raise ValueError(f"learner_params.{unknown[0]}: not a parameter of learner {config.learner!r} "
                         f"({refused})") from None


def check_before_start(config: RunConfig) -> List[LearnerData]:
    """Everything that can be checked before any worker starts: the data split (every learner gets train,
    vote and test data) and the learner's name and parameters (learner 0 is built once, here, and dropped).
    Returns the learners' data. Raises ``ValueError`` naming what to change."""
    datas = load_learner_data(config)
    build_learner(config, datas[0], 0)
    return datas


def load_config_file(path: Path, overrides: Optional[Dict[str, Any]] = None) -> RunConfig:
    """Read a YAML or TOML file with RunConfig's keys (overrides win) and validate it."""
    text = Path(path).read_text()
    if Path(path).suffix.lower() == ".toml":
        import tomllib

        data = tomllib.loads(text)
    else:
        import yaml

        try:
            data = yaml.safe_load(text) or {}  # safe: a !!python/... tag is an error, never a constructor
        except yaml.YAMLError as exc:
            raise ValueError(f"not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings at the top level")
    data = {str(key).replace("-", "_"): value for key, value in data.items()}
    return RunConfig(**{**data, **(overrides or {})})


def _yaml_problem(exc: Exception) -> str:
    """What is wrong and where (line, column), on one line; ``!!python/...`` tags land here, never executed."""
    problem = getattr(exc, "problem", None) or str(exc)
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())
