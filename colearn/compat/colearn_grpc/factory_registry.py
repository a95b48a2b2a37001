"""0.2.x's ``FactoryRegistry``: decorators that register model architectures and data loaders by name.

A task module registers ``prepare_data_loaders`` with ``@FactoryRegistry.register_dataloader("NAME")`` and
``prepare_learner`` with ``@FactoryRegistry.register_model_architecture("NAME", ["LOADER", ...])``; the
defaults of their keyword parameters are what ``get_models`` / ``get_dataloaders`` report.
"""
from __future__ import annotations

import warnings
from inspect import signature
from typing import Any, Callable, Dict, List, NamedTuple


def _get_defaults(to_call: Callable) -> Dict[str, Any]:
    return {p.name: p.default for p in signature(to_call).parameters.values() if p.default is not p.empty}


class FactoryRegistry:
    """Class-level registry (one per process), as in 0.2.x."""

    class DataloaderDef(NamedTuple):
        callable: Callable
        default_parameters: Dict[str, Any]

    class ModelArchitectureDef(NamedTuple):
        callable: Callable
        default_parameters: Dict[str, Any]
        compatibilities: List[str]

        @property
        def data_compatibilities(self) -> List[str]:  # the later 0.2.x sources' name
            return self.compatibilities

    dataloaders: Dict[str, DataloaderDef] = {}
    model_architectures: Dict[str, ModelArchitectureDef] = {}

    @classmethod
    def register_dataloader(cls, name: str) -> Callable[[Callable], Callable]:
        """Register ``prepare_data_loaders(location, **params)`` as data loader ``name``."""
        def wrap(dataloader: Callable) -> Callable:
            if name in cls.dataloaders and cls.dataloaders[name].callable is not dataloader:
                warnings.warn(f"{name} already registered; replacing it with {dataloader.__name__}", stacklevel=2)
            cls.dataloaders[name] = cls.DataloaderDef(callable=dataloader, default_parameters=_get_defaults(dataloader))
            return dataloader
        return wrap

    @classmethod
    def register_model_architecture(cls, name: str, compatibilities: List[str]) -> Callable[[Callable], Callable]:
        """Register ``prepare_learner(data_loaders, **params)`` as model ``name``, buildable on ``compatibilities``."""
        if isinstance(compatibilities, str):
            raise TypeError(f"compatibilities must be a list of data loader names, got the string {compatibilities!r}")

        def wrap(model_arch_creator: Callable) -> Callable:
            known = cls.model_architectures.get(name)
            if known is not None and known.callable is not model_arch_creator:
                warnings.warn(f"{name} already registered; replacing it with {model_arch_creator.__name__}",
                              stacklevel=2)
            cls.model_architectures[name] = cls.ModelArchitectureDef(
                callable=model_arch_creator, default_parameters=_get_defaults(model_arch_creator),
                compatibilities=list(compatibilities))
            return model_arch_creator
        return wrap
