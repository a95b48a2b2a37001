"""The ledger as a :class:`~colearn.backends.Backend`: every round goes through the contract.

The driver still records the round (scores, votes, timings) exactly as for the other backends, but the
decisions are the contract's: its ``current_proposer`` is the proposer (see :meth:`LedgerBackend.selector`),
the agents vote on the hash it recorded, and they adopt weights only when its ``Finalized`` event says
accepted. :meth:`LedgerBackend.accept` only reports what the agents did on that event; if the driver's own
tally ever disagreed with the contract's, the contract wins and the disagreement shows up as accept errors.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD

from colearn.backends.base import Backend, Failure, Outcome
from colearn.ledger.agent import LearnerAgent, voters_of
from colearn.ledger.blobstore import BlobStore
from colearn.ledger.chain import Chain, TxResult, embedded_chain, throwaway_keys
from colearn.ledger.compile import load_artifact
from colearn.ledger.votes import SignedVote
from colearn.ml_interface import ColearnModel, MachineLearningInterface, ProposedWeights, Weights
from colearn.protocol import DEFAULT_QUORUM, exact

SELECTOR_CODES = {"round_robin": 0, "random": 1}
NO_ADMITTER = "0x" + "00" * 20  # the contract's admitter when late joining is off


def threshold_fraction(value: float, name: str = "vote_threshold") -> tuple[int, int]:
    """A threshold or quorum as the exact fraction colearn.protocol uses (0.7 is 7/10)."""
    fraction = exact(value)
    if not 0 <= fraction <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return fraction.numerator, fraction.denominator


class LedgerBackend(Backend):
    """Learners in this process, each acting through its own account on an EVM chain."""

    name = "ledger"

    def __init__(self, learners: Sequence[MachineLearningInterface], *, vote_threshold: float = 0.5,
                 quorum: float = DEFAULT_QUORUM, selector: str = "round_robin", seed: int = 0,
                 chain: Optional[Chain] = None,
                 accounts: Optional[Sequence[LocalAccount]] = None,
                 blob_dir: Union[str, Path, None] = None, vote_period: Optional[int] = None,
                 propose_period: Optional[int] = None):
        n = len(learners)
        if n < 2:
            raise ValueError(f"learners: the ledger needs at least 2 learners, got {n}")
        if selector not in SELECTOR_CODES:
            raise ValueError(f"selector: the contract knows {sorted(SELECTOR_CODES)}, got {selector!r}")
        if accounts is None:
            accounts = throwaway_keys(n)  # random per run: a seed would let anyone re-sign
        if len(accounts) < n:
            raise ValueError(f"accounts: {n} learners need {n} accounts, got {len(accounts)}")
        self.accounts = list(accounts)[:n]
        self.chain = chain if chain is not None else embedded_chain([a.address for a in self.accounts])
        self.vote_period = int(vote_period) if vote_period is not None else 4 * n + 16
        self.propose_period = int(propose_period) if propose_period is not None else 4 * n + 16
        self.threshold = threshold_fraction(vote_threshold)
        self.quorum = threshold_fraction(quorum, "quorum")
        self.selector_name, self.seed = selector, seed
        self.store = BlobStore(blob_dir if blob_dir is not None else tempfile.mkdtemp(prefix="colearn-blobs-"))
        self.rounds: Dict[int, Dict[str, Any]] = {}
        self.contract, deployed = self.chain.deploy(self.accounts[0], [
            [a.address for a in self.accounts], *self.threshold, *self.quorum, self.vote_period, self.propose_period,
            SELECTOR_CODES[selector], seed % 2**256, 0, NO_ADMITTER])  # no late joining in a driven run
        self.deployment = _tx_row("deploy", 0, deployed)
        self.agents = [LearnerAgent(i, mli, self.accounts[i], self.chain, self.contract, self.store, self._note_tx)
                       for i, mli in enumerate(learners)]
        self._voting: Optional[int] = None  # the round whose proposal awaits votes
        self._adopted: Dict[int, Outcome[None]] = {}
        self._last_finalized: Optional[Dict[str, Any]] = None

    # ---- bookkeeping -------------------------------------------------------------------------
    def _round(self, round_index: int) -> Dict[str, Any]:
        return self.rounds.setdefault(round_index, {"round": round_index, "txs": [], "gas": 0})

    def _note_tx(self, round_index: int, kind: str, learner: int, result: TxResult) -> None:
        entry = self._round(round_index)
        entry["txs"].append(_tx_row(kind, learner, result))
        entry["gas"] += result.gas_used

    @property
    def n_learners(self) -> int:
        return len(self.agents)

    def current_round(self) -> int:
        return int(self.contract.functions.current_round().call())

    def selector(self, round_index: int, n_learners: int, eligible: Sequence[int]) -> int:
        """A colearn.protocol selector that asks the contract who proposes its current round."""
        return int(self.contract.functions.current_proposer().call())

    # ---- the Backend seam --------------------------------------------------------------------
    def propose(self, learner: int) -> Outcome[Weights]:
        round_index = self.current_round()
        entry = self._round(round_index)
        entry["proposer"] = learner
        outcome = self.agents[learner].propose(round_index)
        state = self.contract.functions.round_state().call()
        if state[0] == round_index and state[2] == 2:  # proposed: the voters are next
            self._voting = round_index
            entry["model_hash"] = "0x" + bytes(state[5]).hex()
        else:
            entry["skipped"] = True
        return outcome

    def test(self, weights: Weights, learners: Sequence[int]) -> Dict[int, Outcome[ProposedWeights]]:
        round_index = self._voting
        if round_index is None:  # no proposal pending: a local evaluation, nothing goes on chain
            return {i: self.agents[i].evaluate(weights) for i in learners}
        self._voting = None
        proposer = int(self.contract.functions.current_proposer().call())
        responses: Dict[int, Outcome[ProposedWeights]] = {}
        votes = []
        for i in learners:
            if i == proposer:
                responses[i] = self.agents[i].evaluate(weights)
                continue
            outcome = self.agents[i].vote(round_index)
            if isinstance(outcome, tuple):
                responses[i], signed = outcome
                if signed is not None:  # None: the voter's own failure, an abstention on chain as in the record
                    votes.append(signed)
            else:  # the agent is down: no signed vote (the deadline closes the round)
                responses[i] = outcome
        self._settle(round_index, proposer, votes)
        return responses

    def _settle(self, round_index: int, proposer: int, votes: Sequence[SignedVote]) -> None:
        """Finalize the round with the signed votes (after its deadline if some voter stayed silent) and let
        every agent react to the contract's decision."""
        if len(votes) < len(voters_of(proposer, self.n_learners)):
            self.chain.advance_to(int(self.contract.functions.round_state().call()[4]) + 1)
        receipt = self.agents[proposer].finalize(round_index, votes).receipt
        events = self.contract.events.Finalized().process_receipt(receipt, errors=DISCARD)
        event = dict(events[0]["args"])
        self._last_finalized = event
        self._round(round_index).update(accepted=bool(event["accepted"]), approvals=int(event["approvals"]),
                                        rejections=int(event["rejections"]), abstentions=int(event["abstentions"]))
        self._adopted = {agent.index: agent.on_finalized(event) for agent in self.agents}

    def accept(self, weights: Weights, learners: Sequence[int]) -> Dict[int, Outcome[None]]:
        event = self._last_finalized
        if event is None or not event["accepted"]:
            why = "no round was finalized" if event is None else f"the contract rejected round {event['round_index']}"
            return {i: Failure(i, f"{why}: nothing to adopt", "invalid") for i in learners}
        return {i: self._adopted.get(i) for i in learners}

    def current_weights(self, learner: int) -> Outcome[Weights]:
        try:
            return self.agents[learner].mli.mli_get_current_weights()
        except Exception as exc:
            return Failure.from_exception(learner, exc)

    def current_model(self, learner: int) -> Outcome[ColearnModel]:
        try:
            return self.agents[learner].mli.mli_get_current_model()
        except Exception as exc:
            return Failure.from_exception(learner, exc)

    # ---- what the run leaves behind ----------------------------------------------------------
    def summary(self) -> Dict[str, Any]:
        """Chain, contract, deployment and per-round transactions with gas (for results.extra['ledger'])."""
        artifact = load_artifact()
        return {"chain": self.chain.kind, "chain_id": self.chain.chain_id, "contract": self.contract.address,
                "compiler": artifact["compiler"], "evm_version": artifact["evm_version"],
                "threshold": list(self.threshold), "quorum": list(self.quorum), "selector": self.selector_name,
                "seed": self.seed,
                "vote_period": self.vote_period, "propose_period": self.propose_period,
                "learners": [a.address for a in self.accounts], "blob_dir": str(self.store.root),
                "deployment": self.deployment, "rounds": [self.rounds[r] for r in sorted(self.rounds)]}

    def export(self) -> Dict[str, Any]:
        """What ``colearn audit`` needs to find (rpc) or rebuild (embedded) the chain: no key, no URL."""
        data = {"format": 1, "chain": self.chain.kind, "chain_id": self.chain.chain_id,
                "contract": self.contract.address, "deploy_block": self.deployment["block"],
                "learners": [a.address for a in self.accounts]}
        if self.chain.kind == "embedded":
            data["journal"] = list(self.chain.journal)
        return data


def _tx_row(kind: str, learner: int, result: TxResult) -> Dict[str, Any]:
    return {"kind": kind, "learner": learner, "tx": result.tx_hash, "gas": result.gas_used,
            "block": result.block_number}


__all__ = ["LedgerBackend", "threshold_fraction"]
