"""A learner as an independent agent on the chain: its own key, its own model, its own blob reads.

As the round's proposer it trains, stores the encoded weights in the blob store and proposes their sha256
(or passes its turn, retiring when its DP budget is spent). As a voter it reads the proposed hash from the
contract, fetches the blob, checks the hash before decoding anything, decodes the typed weights, tests them
and signs its vote (EIP-712; a reject when the blob cannot be fetched or decoded or the learner refuses it, no
signature, an abstention, when the learner itself fails, as colearn.protocol counts it). When the contract's
``Finalized`` event says accepted it adopts exactly the weights with the accepted hash. Its decisions follow the contract, never another agent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from eth_account.signers.local import LocalAccount

from colearn.backends.base import Failure, Outcome
from colearn.encoding import WeightsDecodeError, WeightsEncodeError, decode_weights, encode_weights
from colearn.ledger.blobstore import BlobError, BlobStore, normalise_hash
from colearn.ledger.chain import Chain, LedgerError, TxResult
from colearn.ledger.votes import SignedVote, sign_vote
from colearn.ml_interface import MachineLearningInterface, ProposedWeights, Weights
from colearn.protocol import interpret_vote, is_budget_exhausted, proposal_refusal

TxSink = Callable[[int, str, int, TxResult], None]
"""``sink(round_index, kind, learner, result)``: where an agent reports each transaction it sent."""


@dataclass
class _Held:
    round_index: int
    digest: str
    weights: Weights


class LearnerAgent:
    """Learner ``index``: its MLI, its account and its view of the contract and the blob store."""

    def __init__(self, index: int, mli: MachineLearningInterface, account: LocalAccount, chain: Chain,
                 contract: Any, store: BlobStore, sink: Optional[TxSink] = None):
        self.index, self.mli, self.account = index, mli, account
        self.chain, self.contract, self.store = chain, contract, store
        self.sink = sink
        self._held: Optional[_Held] = None  # the weights this agent proposed or fetched this round

    @property
    def address(self) -> str:
        return self.account.address

    def _send(self, round_index: int, kind: str, function: Any) -> TxResult:
        result = self.chain.send(self.account, function)
        if self.sink is not None:
            self.sink(round_index, kind, self.index, result)
        return result

    # ---- proposer ----------------------------------------------------------------------------
    def propose(self, round_index: int) -> Outcome[Weights]:
        """Train and propose for ``round_index``; pass the turn on chain when there is nothing to propose."""
        try:
            weights = self.mli.mli_propose_weights()
        except Exception as exc:  # the learner's fault: pass the turn, report it as data
            self._skip(round_index, retire=False)
            return Failure.from_exception(self.index, exc)
        if proposal_refusal(weights) is not None:
            self._skip(round_index, retire=is_budget_exhausted(weights))
            return weights
        try:
            blob = encode_weights(weights.weights)
        except WeightsEncodeError as exc:
            self._skip(round_index, retire=False)
            return Failure.from_exception(self.index, exc, "invalid")
        digest = self.store.put(blob)
        try:
            self._send(round_index, "propose", self.contract.functions.propose(round_index, bytes.fromhex(digest)))
        except LedgerError as exc:
            self._skip(round_index, retire=False)
            return Failure(self.index, f"the contract refused the proposal: {exc}", "invalid")
        self._held = _Held(round_index, digest, weights)
        return weights

    def _skip(self, round_index: int, retire: bool) -> Optional[TxResult]:
        try:
            return self._send(round_index, "skip", self.contract.functions.skip(round_index, retire))
        except LedgerError:
            return None  # not ours to skip (any learner can skip a silent proposer after the propose period)

    # ---- voter -------------------------------------------------------------------------------
    def fetch(self, digest: str) -> Weights:
        """The weights named ``digest``: hash checked by the store first, then a typed decode."""
        return Weights(weights=decode_weights(self.store.get(digest)))

    def proposed_hash(self) -> str:
        """The hash the contract recorded for its current round's proposal."""
        return normalise_hash(self.contract.functions.round_state().call()[5])

    def vote(self, round_index: int) -> Tuple[Outcome[ProposedWeights], Optional[SignedVote]]:
        """Score the proposal the contract recorded for ``round_index`` and sign the vote as colearn.protocol
        reads the response (:func:`~colearn.protocol.interpret_vote`): approve or reject as the learner says; a
        reject when the proposal is at fault (its blob is missing or tampered with or does not decode, or the
        learner refuses it); no signature (an abstention on chain, as in the driver's record) when the learner
        itself failed. Nothing goes on chain here: whoever finalizes submits the signature."""
        digest = self.proposed_hash()
        try:
            candidate = self.fetch(digest)
            response: Any = self.mli.mli_test_weights(candidate)
        except (BlobError, WeightsDecodeError) as exc:  # the proposal's fault: a refusal
            response = Failure.from_exception(self.index, exc, "refused")
        except Exception as exc:  # the learner's own failure: it abstains
            response = Failure.from_exception(self.index, exc)
        else:
            self._held = _Held(round_index, digest, candidate)
        verdict = interpret_vote(response)
        if verdict.vote is None:
            return response, None
        signed = sign_vote(self.account, self.chain.chain_id, self.contract.address, round_index, self.index,
                           digest, verdict.vote)
        return response, signed

    def finalize(self, round_index: int, votes: Sequence[SignedVote]) -> TxResult:
        """Close ``round_index`` with ``votes`` (sorted by voter; the contract checks every signature)."""
        ordered = sorted(votes, key=lambda v: v.voter)
        return self._send(round_index, "finalize",
                          self.contract.functions.finalize(round_index, [v.as_call_arg() for v in ordered]))

    # ---- adoption ----------------------------------------------------------------------------
    def on_finalized(self, event: Dict[str, Any]) -> Outcome[None]:
        """Adopt the accepted weights named by a ``Finalized`` event (nothing to do when rejected)."""
        if not event["accepted"]:
            return None
        digest = normalise_hash(event["model_hash"])
        try:
            held = self._held
            weights = held.weights if held is not None and held.round_index == event["round_index"] \
                and held.digest == digest else self.fetch(digest)
            self.mli.mli_accept_weights(weights)
        except Exception as exc:
            return Failure.from_exception(self.index, exc)
        finally:
            self._held = None
        return None

    def evaluate(self, weights: Weights) -> Outcome[ProposedWeights]:
        """Score ``weights`` locally (the initial evaluation, the proposer scoring its own proposal)."""
        try:
            return self.mli.mli_test_weights(weights)
        except Exception as exc:
            return Failure.from_exception(self.index, exc)


def voters_of(proposer: int, n_learners: int) -> List[int]:
    return [i for i in range(n_learners) if i != proposer]
