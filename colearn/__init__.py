"""colearn: decentralized collective learning.

Learners train one shared model without pooling their data: each round a proposer trains on its own
data, every other learner scores the proposal on its private vote set and votes, and the proposal is
adopted by all when enough approve. See :class:`colearn.experiment.Experiment`.
"""
from importlib import metadata as _metadata

from colearn.backends import Backend, Failure, LocalBackend
from colearn.experiment import Experiment, run_experiment
from colearn.hooks import Callback
from colearn.ml_interface import (ColearnModel, DiffPrivBudget, DiffPrivConfig, ErrorCodes,
                                  MachineLearningInterface, ModelFormat, ProposedWeights, TrainingSummary,
                                  Weights)
from colearn.protocol import ProtocolConfig, TallyRule
from colearn.results import ExperimentResults, RoundRecord

try:
    __version__ = _metadata.version("colearn")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = [
    "Backend", "Callback", "ColearnModel", "DiffPrivBudget", "DiffPrivConfig", "ErrorCodes", "Experiment",
    "ExperimentResults", "Failure", "LocalBackend", "MachineLearningInterface", "ModelFormat", "ProposedWeights",
    "ProtocolConfig", "RoundRecord", "TallyRule", "TrainingSummary", "Weights", "run_experiment",
]
