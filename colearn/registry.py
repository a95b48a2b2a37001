"""Named learner factories, so that the CLI, config files and learner servers can build learners by name.

A factory is ``factory(data: LearnerData, *, seed: int, **params) -> MachineLearningInterface``. Entries
name their import path, so listing them imports no framework; building one imports only its package
and answers a missing framework with the install command.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

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
    needs_images: bool = False  # convolutional: the task must say its image shape (digits, MNIST, an image .npz)

    def fits(self, image_shape: Optional[Tuple[int, ...]]) -> bool:
        """Whether this learner can work on a task whose rows are images of ``image_shape`` (None: flat)."""
        return bool(image_shape) or not self.needs_images

    def load(self) -> LearnerFactory:
        module_name, _, attribute = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ImportError(f"learner {self.name!r} needs the '{self.extra}' extra: "
                              f"pip install 'colearn[{self.extra}]' ({exc})") from exc
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
    LearnerSpec("torch-cnn", "colearn_pytorch.factories:make_cnn_learner", "pytorch", "PyTorch small CNN",
                needs_images=True),
    LearnerSpec("keras-mlp", "colearn_keras.factories:make_mlp_learner", "keras", "Keras 3 MLP"),
    LearnerSpec("keras-cnn", "colearn_keras.factories:make_cnn_learner", "keras", "Keras 3 small CNN",
                needs_images=True),
):
    register_learner(_spec)


def make_learner(name: str, data: LearnerData, *, seed: int, **params: Any) -> MachineLearningInterface:
    """Build the learner registered as ``name`` on ``data``.

    Every refusal is a :class:`ValueError` of one line naming the learner and what it refused: a task it
    does not fit (a CNN needs images), a parameter it does not take, a value its factory rejects.
    """
    if name not in LEARNERS:
        raise ValueError(f"unknown learner {name!r}; choose one of {sorted(LEARNERS)}")
    spec = LEARNERS[name]
    if not spec.fits(getattr(data, "image_shape", None)):
        raise ValueError(f"learner {name!r} needs image data (a task with an image shape, such as digits); "
                         f"this task has {data.n_features} flat features")
    factory = spec.load()
    _check_parameters(name, factory, params)
    try:
        return factory(data, seed=seed, **{**spec.defaults, **params})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"learner {name!r}: {_one_line(exc)}") from exc


def _check_parameters(name: str, factory: LearnerFactory, params: Dict[str, Any]) -> None:
    """Refuse keyword parameters the factory does not take, naming them and what it does take."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or C callable: let it judge its own arguments
        return
    accepted = [p.name for p in signature.parameters.values()
                if p.kind is p.KEYWORD_ONLY and p.name != "seed"]
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"learner {name!r} has no parameter {unknown[0]!r} (-p {unknown[0]}=...); "
                         f"it takes {', '.join(accepted) or 'no parameters'}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())
