"""0.2.x's ``MliFactory``: what a factory implements to be served by :class:`colearn_grpc.grpc_server.GRPCServer`."""
from __future__ import annotations

import abc
from typing import Any, Dict, Optional, Set

from colearn.ml_interface import MachineLearningInterface


class MliFactory(abc.ABC):
    """Builds learners by name: models and data loaders, which fit together, and the learner for a pair.

    Parameters travel as JSON strings, as in 0.2.x.
    """

    def get_version(self) -> str:
        """The version of this library."""
        from importlib import metadata

        try:
            return metadata.version("colearn")
        except metadata.PackageNotFoundError:  # pragma: no cover - a source checkout without install
            return "unknown"

    @abc.abstractmethod
    def get_models(self) -> Dict[str, Dict[str, Any]]:
        """Model name -> its default parameters."""

    @abc.abstractmethod
    def get_dataloaders(self) -> Dict[str, Dict[str, Any]]:
        """Data loader name -> its default parameters."""

    @abc.abstractmethod
    def get_compatibilities(self) -> Dict[str, Set[str]]:
        """Model name -> the data loaders it can be built on."""

    @abc.abstractmethod
    def get_mli(self, model_name: str, model_params: str, dataloader_name: str,
                dataset_params: str) -> MachineLearningInterface:
        """Build the learner: ``model_name`` with ``model_params`` (JSON) on ``dataloader_name`` with
        ``dataset_params`` (JSON)."""

    # later 0.2.x sources' names for the compatibilities (prediction data loaders are not provided here)
    def get_data_compatibilities(self) -> Dict[str, Set[str]]:
        return self.get_compatibilities()

    def get_prediction_dataloaders(self) -> Dict[str, Dict[str, Any]]:
        return {}

    def get_pred_compatibilities(self) -> Dict[str, Optional[Set[str]]]:
        return {}
