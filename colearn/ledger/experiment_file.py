"""An experiment on chain: ``colearn deploy`` creates it and writes the small file agents and observers read.

The file names the chain (by id, never by URL), the contract, the block it was deployed in and the settings it was
deployed with, late joining included (``max_learners``: 0, or the cap on the learners; ``admitter``: who admits
late joiners). ``learners`` are the ones named at deployment; late joiners are on chain only (``LearnerJoined``
events), where agents and observers read them. Anyone who opens it checks the contract against the chain: the code
must be the committed contract configured exactly as the file says (see :func:`open_experiment`), so a file that
points elsewhere, or at a contract with other learners or another threshold, is refused.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Literal, Optional, Tuple, Union

from eth_account.signers.local import LocalAccount
from pydantic import BaseModel, ConfigDict, Field
from web3 import Web3

from colearn.ledger.backend import NO_ADMITTER, SELECTOR_CODES, threshold_fraction
from colearn.ledger.chain import Chain, LedgerError
from colearn.ledger.compile import load_artifact


class ExperimentFile(BaseModel):
    """What ``experiment.json`` holds (no key, no URL)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    chain_id: int
    contract: str
    deploy_block: int = Field(ge=0)
    learners: List[str] = Field(min_length=2)
    threshold: Tuple[int, int]
    quorum: Tuple[int, int]
    vote_period: int = Field(gt=0, description="blocks")
    propose_period: int = Field(gt=0, description="blocks")
    selector: Literal["round_robin", "random"] = "round_robin"
    seed: int = 0
    max_learners: int = Field(0, ge=0, description="0: no late joining; else the cap on the learners")
    admitter: Optional[str] = Field(None, description="who admits late joiners (with max_learners > 0)")
    compiler: str = ""

    @property
    def late_joining(self) -> bool:
        """Whether learners may join after deployment (admitted by ``admitter``, up to ``max_learners``)."""
        return self.max_learners > 0

    @property
    def capacity(self) -> int:
        """How many learners the experiment can have: the cap, or the learners named at deployment."""
        return max(self.max_learners, len(self.learners))

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ExperimentFile":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"experiment: no such file {path}")
        return cls.model_validate(json.loads(path.read_text()))

    def export(self) -> dict:
        """The ``ledger.json`` that ``colearn audit`` reads for this experiment (an RPC chain)."""
        return {"format": 1, "chain": "rpc", "chain_id": self.chain_id, "contract": self.contract,
                "deploy_block": self.deploy_block, "learners": list(self.learners)}


MAX_LEARNERS = 128  # the contract's bound on the learner set


def deploy_experiment(chain: Chain, account: LocalAccount, learners: List[str], *, vote_threshold: float = 0.5,
                      quorum: float = 0.5, vote_period: int = 20, propose_period: int = 20,
                      selector: str = "round_robin", seed: int = 0, max_learners: int = 0,
                      admitter: Optional[str] = None) -> ExperimentFile:
    """Deploy the contract for ``learners`` (addresses) from ``account`` and describe it.

    ``max_learners`` > 0 allows late joining up to that many learners in all, each admitted by ``admitter``
    (default: the deployer, ``account``); 0 keeps the learner set fixed."""
    if selector not in SELECTOR_CODES:
        raise ValueError(f"selector: the contract knows {sorted(SELECTOR_CODES)}, got {selector!r}")
    addresses = [_address(address, f"learners: entry {number}") for number, address in enumerate(learners)]
    if max_learners:
        if not len(addresses) < max_learners <= MAX_LEARNERS:
            raise ValueError(f"max_learners must exceed the {len(addresses)} learners named and be at most "
                             f"{MAX_LEARNERS}, got {max_learners}")
        admitter = _address(admitter, "admitter") if admitter else account.address
    elif admitter:
        raise ValueError("admitter: only an experiment that allows late joining (max_learners > 0) has one")
    threshold, quorum_fraction = threshold_fraction(vote_threshold), threshold_fraction(quorum, "quorum")
    contract, result = chain.deploy(account, [addresses, *threshold, *quorum_fraction, int(vote_period),
                                              int(propose_period), SELECTOR_CODES[selector], seed % 2**256,
                                              int(max_learners), admitter or NO_ADMITTER])
    return ExperimentFile(chain_id=chain.chain_id, contract=contract.address, deploy_block=result.block_number,
                          learners=addresses, threshold=threshold, quorum=quorum_fraction, vote_period=vote_period,
                          propose_period=propose_period, selector=selector, seed=seed, max_learners=max_learners,
                          admitter=admitter, compiler=load_artifact()["compiler"])


def _address(value: Any, name: str) -> str:
    if not isinstance(value, str) or not Web3.is_address(value):
        raise ValueError(f"{name} ({value!r}) is not an Ethereum address")
    return Web3.to_checksum_address(value)


def experiment_at(chain: Chain, address: str) -> ExperimentFile:
    """The experiment of the contract at ``address``, read from its own ``Configured`` and ``LearnerAdded``
    events (for agents and observers given a contract address instead of a file); checked by
    :func:`open_experiment` like a file."""
    from colearn.ledger.chain import read_events

    if not Web3.is_address(address):
        raise ValueError(f"experiment: {address!r} is neither an experiment file nor a contract address")
    events = read_events(chain.contract(address), 0)
    configured = next((e for e in events if e["name"] == "Configured"), None)
    if configured is None:
        raise LedgerError(f"experiment: no Colearn experiment was deployed at {address}")
    args = configured["args"]
    added = sorted((e["args"]["index"], e["args"]["learner"]) for e in events if e["name"] == "LearnerAdded")
    selectors = {code: name for name, code in SELECTOR_CODES.items()}
    return ExperimentFile(chain_id=chain.chain_id, contract=Web3.to_checksum_address(address),
                          deploy_block=configured["block"], learners=[learner for _, learner in added],
                          threshold=(args["threshold_num"], args["threshold_den"]),
                          quorum=(args["quorum_num"], args["quorum_den"]), vote_period=args["vote_period"],
                          propose_period=args["propose_period"], selector=selectors.get(args["selector"], "random"),
                          seed=args["seed"], max_learners=args["max_learners"],
                          admitter=args["admitter"] if args["max_learners"] else None,
                          compiler=load_artifact()["compiler"])


def open_experiment(chain: Chain, experiment: ExperimentFile) -> Any:
    """The contract the file names, after checking that it is the committed contract configured as the file says."""
    from colearn.ledger.audit import expected_code

    if chain.chain_id != experiment.chain_id:
        raise LedgerError(f"rpc_url serves chain id {chain.chain_id}, the experiment is on chain {experiment.chain_id}")
    contract = chain.contract(experiment.contract)
    config = {"threshold_num": experiment.threshold[0], "threshold_den": experiment.threshold[1],
              "quorum_num": experiment.quorum[0], "quorum_den": experiment.quorum[1],
              "vote_period": experiment.vote_period, "propose_period": experiment.propose_period,
              "selector": SELECTOR_CODES[experiment.selector], "seed": experiment.seed % 2**256,
              "max_learners": experiment.max_learners, "admitter": experiment.admitter or NO_ADMITTER}
    code = bytes(chain.w3.eth.get_code(contract.address))
    if code != expected_code(config, chain.chain_id, contract.address):
        raise LedgerError(f"experiment: the code at {contract.address} is not the committed Colearn contract with "
                          "the settings the file names")
    from colearn.ledger.chain import read_events

    deployed = read_events(contract, experiment.deploy_block, experiment.deploy_block)
    named = [e["args"]["learner"] for e in sorted((e for e in deployed if e["name"] == "LearnerAdded"),
                                                  key=lambda e: e["args"]["index"])]
    if not any(e["name"] == "Configured" for e in deployed):
        raise LedgerError(f"experiment: the contract was not deployed in block {experiment.deploy_block}")
    if named != list(experiment.learners):  # the deployment's own record, so no prefix or reordering passes
        raise LedgerError("experiment: the contract's learners differ from the ones the file names")
    return contract


__all__ = ["ExperimentFile", "deploy_experiment", "experiment_at", "open_experiment"]
