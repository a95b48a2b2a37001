"""Learner specs for ``colearn serve``: a named learner on a data loader (task), or a Python entry point.

- Named: a registered learner (``colearn learners``) on an embedded task or local file, as learner
  ``index`` of ``n_learners`` with ``seed`` -- exactly the learner ``colearn run`` would build in
  process (same :class:`~colearn.run_config.RunConfig` and :class:`~colearn.run_config.LearnerFactory`), so a
  remote experiment with the same seed gives the same results.
- Entry point: ``module:function`` called with JSON keyword parameters, returning an MLI.

:func:`catalogue` lists the models, the data loaders and which fit together.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from colearn.ml_interface import MachineLearningInterface

IMAGE_ONLY_SUFFIX = "-cnn"  # convolutional learners need a task with an image shape


def parse_json_params(text: Optional[str], what: str = "params") -> Dict[str, Any]:
    """A JSON object of keyword parameters (``None`` or empty -> {}); errors name ``what``."""
    if not text:
        return {}
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(params, dict):
        raise ValueError(f"{what}: expected a JSON object of keyword parameters, got {type(params).__name__}")
    return params


def load_entry_point(target: str) -> Any:
    """Import ``module:function`` and return the function (errors name the entry point)."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"entry point {target!r} is not module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"entry point {target!r}: cannot import {module_name} ({exc})") from None
    try:
        obj: Any = module
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ValueError(f"entry point {target!r}: {module_name} has no {attribute}") from None
    if not callable(obj):
        raise ValueError(f"entry point {target!r} is not callable")
    return obj


@dataclass
class LearnerSpec:
    """What ``colearn serve`` builds. ``entry_point`` wins when given; else ``run_config`` + ``index``."""

    entry_point: Optional[str] = None
    params: Dict[str, Any] = field(default_factory=dict)
    run_config: Optional[Any] = None  # colearn.run_config.RunConfig
    index: int = 0

    def describe(self) -> str:
        """What the server holds, for ``Info`` and the server's log: parameter names, never their values (a
        parameter may be a password or a private path, and every token holder can call ``Info``)."""
        if self.entry_point:
            return f"{self.entry_point}({', '.join(f'{name}=...' for name in sorted(self.params))})"
        config = self.run_config
        return (f"{config.learner} on {config.task} ({config.partition}), learner {self.index} of "
                f"{config.n_learners}, seed {config.seed}")

    def build(self) -> MachineLearningInterface:
        """Build the learner (loading its data here; nothing crosses the network)."""
        if self.entry_point:
            learner = load_entry_point(self.entry_point)(**self.params)
        else:
            from colearn.run_config import LearnerFactory

            if self.run_config is None:
                raise ValueError("a learner spec needs an entry point or a learner name")
            if not 0 <= self.index < self.run_config.n_learners:
                raise ValueError(f"index must be in 0..{self.run_config.n_learners - 1}, got {self.index}")
            learner = LearnerFactory(self.run_config, self.index)()
        if not isinstance(learner, MachineLearningInterface):
            raise ValueError(f"{self.describe()} built a {type(learner).__name__}, not a MachineLearningInterface")
        return learner


def fits(learner: str, image_shape: Optional[tuple]) -> bool:
    """Whether the named learner can work on a task: the registry's check (convolutional learners need images)."""
    from colearn.registry import LEARNERS

    spec = LEARNERS.get(learner)
    return spec.fits(image_shape) if spec is not None else image_shape is not None or not learner.endswith(
        IMAGE_ONLY_SUFFIX)


def catalogue() -> Dict[str, Any]:
    """Models (registered learners), data loaders (tasks and file loaders) and which fit together."""
    from colearn.data.tasks import TASKS
    from colearn.registry import LEARNERS

    loaders: Dict[str, Optional[tuple]] = {}
    for name, load in TASKS.items():
        loaders[name] = load().image_shape
    models = {name: {"extra": spec.extra, "description": spec.description} for name, spec in LEARNERS.items()}
    file_loaders = {"csv": "a local CSV file (--data-path, --target)", "npz": "a local .npz file with x and y"}
    compatible: Dict[str, List[str]] = {
        model: [task for task, shape in loaders.items() if fits(model, shape)]
        + ([] if model.endswith(IMAGE_ONLY_SUFFIX) else list(file_loaders))
        for model in models}
    return {"models": models, "data_loaders": {**{t: "embedded task" for t in loaders}, **file_loaders},
            "compatible": compatible}
