"""Run a whole experiment from one validated configuration (what `colearn run` and config files use).

The configuration and the learner factories live in :mod:`colearn.run_config` (below the backends); this
module builds the backend the configuration names and runs the protocol on it. Its former names stay
importable from here (``from colearn.runner import RunConfig, learner_seed, ...``).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence

from colearn.backends.base import Backend
from colearn.baseline import add_baseline
from colearn.experiment import Experiment, HookLike
from colearn.ml_interface import MachineLearningInterface
from colearn.results import ExperimentResults
from colearn.run_config import (BACKENDS, PARTITIONS, LearnerFactory, RunConfig, build_learner,
                                check_before_start, learner_seed, load_config_file, load_learner_data)

__all__ = ["BACKENDS", "PARTITIONS", "LearnerFactory", "RunConfig", "add_baseline", "build_learner",
           "check_before_start", "learner_seed", "load_config_file", "load_learner_data", "make_backend", "run"]


def make_backend(config: RunConfig, factories: Sequence[Callable[[], MachineLearningInterface]]) -> Backend:
    """The backend ``config.backend`` names, holding the learners the factories build."""
    if config.backend == "local":
        from colearn.backends.local import LocalBackend

        return LocalBackend([factory() for factory in factories])
    if config.backend == "ledger":
        from colearn.ledger.runner import build_backend

        return build_backend(config, [factory() for factory in factories])
    if config.backend == "processes":
        from colearn.backends.processes import ProcessBackend

        return ProcessBackend(factories, **config.backend_options)
    if config.backend == "grpc":  # learners are already running behind `colearn serve`; factories unused
        from colearn.grpc.backend import GrpcBackend

        return GrpcBackend.from_options(**config.backend_options)
    from colearn.backends.ray_backend import RayBackend

    return RayBackend(factories, **config.backend_options)


def run(config: RunConfig, hooks: Iterable[HookLike] = (),
        prepare: Optional[Callable[[Experiment], Any]] = None) -> ExperimentResults:
    """Run the experiment that ``config`` describes and return its results.

    ``prepare(experiment)`` runs once the learners are built, before any round (e.g. to restore a run that
    was interrupted: then only the rounds still missing are run).
    """
    if config.backend == "ledger":  # the contract picks the proposers: colearn.ledger builds the experiment
        from colearn.ledger.runner import run_ledger

        return run_ledger(config, hooks)
    if config.backend == "local":
        datas = load_learner_data(config)
        learners = [build_learner(config, data, i) for i, data in enumerate(datas)]
        from colearn.backends.local import LocalBackend

        backend: Backend = LocalBackend(learners)
    else:
        datas = check_before_start(config) if config.backend in ("processes", "ray") else None
        backend = make_backend(config, [LearnerFactory(config, i) for i in range(config.n_learners)])
    with backend:
        experiment = Experiment(backend, config.protocol(), hooks=hooks,
                                run_config=config.model_dump(mode="json"))
        if prepare is not None:
            prepare(experiment)
        results = experiment.run(max(0, config.n_rounds - len(experiment.results.rounds)))
        if config.baseline:
            add_baseline(results, config, backend, datas)
    return results
