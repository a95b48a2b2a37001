"""Run a :class:`~colearn.run_config.RunConfig` experiment through the ledger (``backend: ledger``).

``backend_options`` for the ledger (all optional):

- ``rpc_url``: a JSON-RPC endpoint (else ``$COLEARN_LEDGER_RPC_URL``, else the embedded py-evm chain);
- ``keys_file`` / ``keys_env``: where the learners' private keys are for an RPC chain (default env
  ``COLEARN_LEDGER_KEYS``); learner ``i`` uses key ``i``, learner 0 deploys the contract;
- ``workdir``: where the blob store (``blobs/``) and ``ledger.json`` (what ``colearn audit`` reads) go;
- ``vote_period`` / ``propose_period``: deadlines in blocks (default ``4 * n_learners + 16``).

The URL and the keys never reach the results file or ``ledger.json``.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Sequence

from colearn.experiment import Experiment, HookLike
from colearn.ledger import CLI_OPTIONS
from colearn.ledger.backend import LedgerBackend
from colearn.ledger.chain import KEYS_ENV, load_keys, rpc_chain
from colearn.ml_interface import MachineLearningInterface
from colearn.results import ExperimentResults

RPC_ENV = "COLEARN_LEDGER_RPC_URL"
OPTIONS = ("rpc_url", "keys_file", "keys_env", "workdir", "vote_period", "propose_period")
SECRET_OPTIONS = ("rpc_url", "keys_file", "keys_env")
EXPORT_NAME = "ledger.json"


def check_options(options: Dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"backend_options: {unknown} are not ledger options; known: {list(OPTIONS)}")


def build_backend(config: Any, learners: Sequence[MachineLearningInterface]) -> LedgerBackend:
    """A :class:`LedgerBackend` for ``config`` (a RunConfig) holding ``learners``."""
    check_options(dict(config.backend_options))
    options = {**CLI_OPTIONS.get(), **config.backend_options}
    workdir = Path(options.get("workdir") or tempfile.mkdtemp(prefix="colearn-ledger-"))
    rpc_url = options.get("rpc_url") or os.environ.get(RPC_ENV)
    chain = accounts = None
    if rpc_url:
        accounts = load_keys(len(learners), options.get("keys_file"), options.get("keys_env") or KEYS_ENV)
        chain = rpc_chain(rpc_url)
    return LedgerBackend(learners, vote_threshold=config.vote_threshold, quorum=config.protocol().quorum,
                         selector=config.selector,
                         seed=config.seed, chain=chain, accounts=accounts, blob_dir=workdir / "blobs",
                         vote_period=options.get("vote_period"), propose_period=options.get("propose_period"))


def recorded_config(config: Any) -> Dict[str, Any]:
    """The run configuration as the results file records it: without the URL or where the keys are."""
    data = config.model_dump(mode="json")
    data["backend_options"] = {k: v for k, v in data.get("backend_options", {}).items() if k not in SECRET_OPTIONS}
    return data


def run_ledger(config: Any, hooks: Iterable[HookLike] = ()) -> ExperimentResults:
    """Run ``config`` through the contract; results as for any backend plus ``extra['ledger']``."""
    from colearn.baseline import add_baseline
    from colearn.run_config import build_learner, load_learner_data

    if config.backend != "ledger":
        raise ValueError(f"backend: run_ledger runs backend 'ledger', got {config.backend!r}")
    datas = load_learner_data(config)
    learners = [build_learner(config, data, i) for i, data in enumerate(datas)]
    backend = build_backend(config, learners)
    with backend:
        protocol = config.protocol().model_copy(update={"selector": backend.selector})  # the contract picks
        experiment = Experiment(backend, protocol, hooks=hooks, run_config=recorded_config(config))
        results = experiment.run(config.n_rounds)
        if config.baseline:
            add_baseline(results, config, backend, datas)
    results.config["selector"] = config.selector
    results.extra["ledger"] = backend.summary()
    export_path = write_export(backend, Path(backend.store.root).parent)
    results.extra["ledger"]["export"] = str(export_path)
    return results


def write_export(backend: LedgerBackend, workdir: Path) -> Path:
    """Write ``ledger.json`` (chain, contract, and on the embedded chain its transaction journal)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / EXPORT_NAME
    path.write_text(json.dumps(backend.export(), indent=1) + "\n")
    return path
