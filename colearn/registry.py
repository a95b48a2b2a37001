"""Named learner factories, so that the CLI, config files and learner servers can build learners by name.

A factory is ``factory(data: LearnerData, *, seed: int, **params) -> MachineLearningInterface``. Entries
name their import path, so listing them imports no framework; building one imports only its package
and answers a missing framework with the install command.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict

from colearn.data.types import LearnerData
from colearn.ml_interface import MachineLearningInterface

LearnerFactory = Callable[..., MachineLearningInterface]


@dataclass(frozen=True)
class LearnerSpec:
    name: str
    target: str  # "module:function"
    extra: str  # the pip extra that provides it
    description: str
    defaults: Dict[str, Any] = field(default_factory=dict)

    def load(self) -> LearnerFactory:
        module_name, _, attribute = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ImportError(f"learner {self.name!r} needs the '{self.extra}' extra "
                              f"(pip install 'colearn[{self.extra}]'): {exc}") from exc
        return getattr(module, attribute)


LEARNERS: Dict[str, LearnerSpec] = {}


def register_learner(spec: LearnerSpec) -> LearnerSpec:
    """Add (or replace) a named learner factory."""
    LEARNERS[spec.name] = spec
    return spec


for _spec in (
    LearnerSpec("sgd", "colearn_other.sklearn_learner:make_sgd_learner", "other",
                "scikit-learn SGDClassifier (logistic regression on fixed degree-2 features), partial_fit"),
    LearnerSpec("sklearn-mlp", "colearn_other.sklearn_learner:make_mlp_learner", "other",
                "scikit-learn MLPClassifier trained with partial_fit"),
    LearnerSpec("random-forest", "colearn_other.random_forest:make_random_forest_learner", "other",
                "scikit-learn random forest that grows trees with warm_start"),
    LearnerSpec("torch-mlp", "colearn_pytorch.factories:make_mlp_learner", "pytorch", "PyTorch MLP"),
    LearnerSpec("torch-cnn", "colearn_pytorch.factories:make_cnn_learner", "pytorch", "PyTorch small CNN"),
    LearnerSpec("keras-mlp", "colearn_keras.factories:make_mlp_learner", "keras", "Keras 3 MLP"),
    LearnerSpec("keras-cnn", "colearn_keras.factories:make_cnn_learner", "keras", "Keras 3 small CNN"),
):
    register_learner(_spec)


def make_learner(name: str, data: LearnerData, *, seed: int, **params: Any) -> MachineLearningInterface:
    """Build the learner registered as ``name`` on ``data``."""
    if name not in LEARNERS:
        raise ValueError(f"unknown learner {name!r}; choose one of {sorted(LEARNERS)}")
    spec = LEARNERS[name]
    return spec.load()(data, seed=seed, **{**spec.defaults, **params})
