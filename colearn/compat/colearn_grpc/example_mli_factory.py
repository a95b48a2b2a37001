"""0.2.x's ``ExampleMliFactory``: the factory over everything registered in :class:`FactoryRegistry`.

Import the task modules you want served first (``import colearn_keras.keras_mnist`` registers ``KERAS_MNIST``).
"""
from __future__ import annotations

import copy
import inspect
import json
from typing import Any, Callable, Dict, Optional, Set

from colearn.ml_interface import DiffPrivConfig, MachineLearningInterface
from colearn_grpc.factory_registry import FactoryRegistry
from colearn_grpc.logging import get_logger
from colearn_grpc.mli_factory_interface import MliFactory

_logger = get_logger(__name__)


def _params(text: str, name: str) -> Dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name}: expected a JSON object, got {type(value).__name__}")
    return value


def _merged(defaults: Dict[str, Any], given: Dict[str, Any], to_call: Callable, what: str) -> Dict[str, Any]:
    """Defaults updated with the given parameters the callable accepts; others are dropped with a warning."""
    parameters = inspect.signature(to_call).parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    config = copy.deepcopy(defaults)
    for key, value in given.items():
        if key in parameters or open_ended:
            config[key] = value
        else:
            _logger.warning(f"Key {key} was included in the {what} params but {what} does not accept it.")
    return config


class ExampleMliFactory(MliFactory):
    """Serves the models and data loaders registered when it is constructed."""

    def __init__(self) -> None:
        self.models = {name: d.default_parameters for name, d in FactoryRegistry.model_architectures.items()}
        self.dataloaders = {name: d.default_parameters for name, d in FactoryRegistry.dataloaders.items()}
        self.compatibilities = {name: set(d.compatibilities) for name, d in FactoryRegistry.model_architectures.items()}

    def get_models(self) -> Dict[str, Dict[str, Any]]:
        return copy.deepcopy(self.models)

    def get_dataloaders(self) -> Dict[str, Dict[str, Any]]:
        return copy.deepcopy(self.dataloaders)

    def get_compatibilities(self) -> Dict[str, Set[str]]:
        return copy.deepcopy(self.compatibilities)

    def get_mli(self, model_name: str, model_params: str, dataloader_name: str, dataset_params: str,
                prediction_dataloader_name: Optional[str] = None,
                prediction_dataset_params: Optional[str] = None) -> MachineLearningInterface:
        """Load the data with the registered data loader, then build the learner on it."""
        if model_name not in self.models:
            raise ValueError(f"model_name {model_name!r} is not a valid model; available: {sorted(self.models)}")
        if dataloader_name not in self.dataloaders:
            raise ValueError(f"dataloader_name {dataloader_name!r} is not a valid dataloader; available: "
                             f"{sorted(self.dataloaders)}")
        if dataloader_name not in self.compatibilities[model_name]:
            raise ValueError(f"dataloader_name {dataloader_name!r} is not compatible with {model_name}; compatible: "
                             f"{sorted(self.compatibilities[model_name])}")
        if prediction_dataloader_name:
            raise ValueError("prediction_dataloader_name: prediction data loaders are not supported")
        prepare_data_loaders = FactoryRegistry.dataloaders[dataloader_name].callable
        data_config = _merged(self.dataloaders[dataloader_name], _params(dataset_params, "dataset_params"),
                              prepare_data_loaders, f"dataloader {dataloader_name}")
        data_loaders = prepare_data_loaders(**data_config)

        prepare_learner = FactoryRegistry.model_architectures[model_name].callable
        model_config = _merged(self.models[model_name], _params(model_params, "model_params"), prepare_learner,
                               f"model {model_name}")
        if isinstance(model_config.get("diff_priv_config"), dict):
            model_config["diff_priv_config"] = DiffPrivConfig(**model_config["diff_priv_config"])
        return prepare_learner(data_loaders=data_loaders, **model_config)

    def get_registry(self) -> type:
        return FactoryRegistry
