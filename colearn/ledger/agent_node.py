"""One learner as an autonomous agent of an on-chain experiment (``colearn agent``): no driver, no shared folder.

The agent holds one learner, one key and a connection to a node. It watches the contract and acts on what it
reads there: it proposes on its turn (training, storing the encoded weights under their sha256 and proposing the
hash); when a proposal is recorded it fetches the blob by that hash from the proposer, or from any agent that
holds it, checks the sha256 before decoding, scores it and signs its vote (EIP-712; a reject when it cannot
fetch, decode or score it within its patience); the proposer finalizes as soon as every vote is in (collected
from the voters' peer services and checked), anyone after the deadline; any agent skips a proposer that stayed
silent past the propose period; and when the contract's current model changes, every agent adopts exactly the
weights with that hash. A restarted agent does the same from the chain: it fetches the latest accepted model
from its peers and rejoins holding it; so does a late joiner (admitted on chain, see :mod:`colearn.ledger.joining`),
which then waits for the first round that counts it (each round keeps the learner count it opened with). It never
needs another learner's key or data.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from eth_account.signers.local import LocalAccount
from web3 import Web3

from colearn.encoding import decode_weights, encode_weights
from colearn.ledger.blobstore import BlobError, BlobStore, normalise_hash
from colearn.ledger.chain import Chain, LedgerError
from colearn.ledger.peer_service import PeerDirectory, PeerError, PeerServer, VoteBook, serve_peer
from colearn.ledger.votes import SignedVote, sign_vote, signer_of
from colearn.ml_interface import MachineLearningInterface, Weights
from colearn.protocol import interpret_vote, is_budget_exhausted, proposal_refusal

ZERO_HASH = "00" * 32
STATUS_OPEN, STATUS_PROPOSED, STATUS_HALTED = 1, 2, 3


@dataclass
class AgentStats:
    """What the agent did (for logs and benchmarks)."""

    proposed: int = 0
    voted: int = 0
    finalized: int = 0
    skipped: int = 0
    adopted: int = 0
    refused_blobs: int = 0
    gas: int = 0
    events: List[str] = field(default_factory=list)


class ChainAgent:
    """Learner ``index`` of the experiment at ``contract``, acting through ``account`` only."""

    def __init__(self, mli: MachineLearningInterface, account: LocalAccount, chain: Chain, contract: Any,
                 workdir: Path, *, deploy_block: int = 0, peers: Optional[PeerDirectory] = None,
                 serve: Optional[Dict[str, Any]] = None, advertise: Optional[str] = None,
                 fetch_patience: float = 10.0, publish_scores: bool = True,
                 log: Callable[[str], None] = lambda line: None):
        self.mli, self.account, self.chain, self.contract = mli, account, chain, contract
        self.f = contract.functions
        try:
            self.index = int(self.f.index_of(account.address).call())
        except Exception:
            raise LedgerError(f"key: {account.address} is not one of the experiment's learners") from None
        self.learners: List[str] = []
        self._sync_learners(int(self.f.n_learners().call()))
        self.n = int(self.f.round_learners().call())  # the current round's learners (0..n-1)
        self._taking_part = False
        self.propose_period = int(self.f.propose_period().call())
        workdir = Path(workdir) / contract.address  # one experiment's votes never mix with another's
        self.store, self.book = BlobStore(workdir / "blobs"), VoteBook(workdir / "votes")
        self.peers = peers or PeerDirectory()
        self.server: PeerServer = serve_peer(self.store, self.book, **(serve or {}))
        self.advertise = advertise or self.server.address
        self.fetch_patience, self.publish_scores, self.log = fetch_patience, publish_scores, log
        self.stats = AgentStats()
        self.held = ZERO_HASH  # the accepted model this agent holds (zero: the one it was built with)
        self._weights: Dict[str, Weights] = {}  # decoded proposals of recent rounds, by hash
        self._my_proposals: Dict[str, int] = {}  # hash -> round
        self._proposed_round = -1
        self._fetch_started: Dict[int, float] = {}
        self._collected: Dict[int, Dict[int, SignedVote]] = {}
        self._endpoint_block = deploy_block
        self._endpoint_topic = Web3.keccak(text="Endpoint(uint256,string)")

    # ---- plumbing ----------------------------------------------------------------------------
    def _send(self, what: str, function: Any) -> bool:
        try:
            self.stats.gas += self.chain.send(self.account, function).gas_used
            return True
        except LedgerError as exc:  # another agent got there first, or the round moved on
            self.log(f"{what}: {exc}")
            return False

    def _sync_learners(self, count: int) -> None:
        """Read the addresses of learners admitted since the last look (late joiners), up to ``count``."""
        while len(self.learners) < count:
            self.learners.append(self.f.learners(len(self.learners)).call())

    def refresh_endpoints(self) -> None:
        """Learn the peer endpoints announced on chain since the last look."""
        latest = self.chain.block_number
        if latest < self._endpoint_block:
            return
        logs = self.chain.w3.eth.get_logs({"address": self.contract.address, "fromBlock": self._endpoint_block,
                                           "toBlock": latest, "topics": [self._endpoint_topic]})
        for entry in logs:
            args = self.contract.events.Endpoint().process_log(entry)["args"]
            if args["learner"] != self.index:
                self.peers.announce(int(args["learner"]), str(args["endpoint"]))
        self._endpoint_block = latest + 1

    def fetch(self, digest: str, prefer: Optional[int] = None) -> Optional[bytes]:
        """The blob named ``digest`` from this agent's store or a peer (``prefer`` first); None if nobody served
        the right bytes. Bytes that do not hash to ``digest`` are refused before anything decodes them."""
        if self.store.has(digest):
            try:
                return self.store.get(digest)
            except BlobError:
                pass
        announced = sorted(self.peers.endpoints)  # every learner that announced one, late joiners included
        order = ([prefer] if prefer is not None else []) + [i for i in announced if i not in (prefer, self.index)]
        for learner in order:
            client = self.peers.client(learner)
            if client is None:
                continue
            try:
                data = client.fetch_blob(digest)
            except BlobError as exc:
                self.stats.refused_blobs += 1
                self.log(f"refused a blob from learner {learner}: {exc}")
                continue
            except PeerError:
                continue
            self.store.put(data)  # now this agent serves it too
            return data
        return None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Announce the endpoint, publish the initial scores once, and adopt the chain's current model."""
        self._send("set_endpoint", self.f.set_endpoint(self.advertise))
        self.refresh_endpoints()
        if self.book.scores(-1) is None:
            self._publish_scores(-1, self.mli.mli_get_current_weights())
        self.catch_up()

    def close(self) -> None:
        self.server.stop()
        self.peers.close()

    def catch_up(self, current_model: Optional[bytes] = None) -> bool:
        """Adopt the contract's current model (as of ``current_model``, read with the round it belongs to) if it
        is not the one held. False when it could not be fetched or adopted."""
        current = normalise_hash(self.f.current_model().call() if current_model is None else current_model)
        if current == self.held or current == ZERO_HASH:
            return True
        weights = self._weights.get(current)
        try:
            if weights is None:
                data = self.fetch(current)
                if data is None:
                    return False
                weights = Weights(weights=decode_weights(data))
            self.mli.mli_accept_weights(weights)
        except Exception as exc:  # keeps what it holds; tries again on the next step
            self.log(f"cannot adopt model {current[:12]}: {exc}")
            return False
        self.held = current
        self.stats.adopted += 1
        self.log(f"adopted model {current[:12]}")
        if current in self._my_proposals:  # the proposer scores its own accepted proposal, as colearn.protocol does
            self._publish_scores(self._my_proposals[current], weights)
        self._weights = {current: weights}
        return True

    def _publish_scores(self, round_index: int, weights: Weights) -> None:
        if not self.publish_scores:
            return
        try:
            verdict = interpret_vote(self.mli.mli_test_weights(weights))
        except Exception as exc:  # nothing to publish
            self.log(f"scoring for round {round_index} failed: {exc}")
            return
        self.book.put_scores(round_index, verdict.vote_score, verdict.test_score)

    def step(self) -> bool:
        """Read the contract once and do what is due; False once the experiment has halted."""
        self.refresh_endpoints()
        block = self.chain.block_number  # one block for every read: the round and the model it follows agree
        r, proposer, status, opened, deadline, model_hash, n = self.f.round_state().call(block_identifier=block)
        if not self.catch_up(self.f.current_model().call(block_identifier=block)):
            return True  # never train or score on a model the contract has moved past
        if status == STATUS_HALTED:
            return False
        self.n = n
        self._sync_learners(n)
        if self.index >= n:  # admitted during round r: a learner from the next round on, holding the model now
            return True
        if not self._taking_part:
            self._taking_part = True
            self.log(f"round {r}: taking part as learner {self.index} of {n}, holding model {self.held}")
        if status == STATUS_OPEN:
            if proposer == self.index and self._proposed_round < r:
                self.propose(r)
            elif proposer != self.index and block > opened + self.propose_period:
                if self._send(f"skip round {r}", self.f.skip(r, False)):
                    self.stats.skipped += 1
                    self.log(f"round {r}: skipped silent proposer {proposer}")
        elif status == STATUS_PROPOSED:
            digest = normalise_hash(model_hash)
            if proposer != self.index and self.book.vote(r) is None:
                self.vote(r, proposer, digest, block > deadline)
            stagger = (self.index - proposer - 1) % self.n  # after the deadline, one agent after the other
            if proposer == self.index or block > deadline + 1 + stagger:
                self.finalize(r, proposer, digest, block > deadline)
        return True

    def finished(self, rounds: int) -> bool:
        """Whether ``rounds`` rounds have closed and this agent holds the model the contract accepted last."""
        return int(self.f.current_round().call()) >= rounds and self.catch_up() and \
            normalise_hash(self.f.current_model().call()) in (self.held, ZERO_HASH)

    def run(self, stop: Callable[[], bool], poll_seconds: float = 0.2) -> None:
        """Step until ``stop()`` says so or the experiment halts."""
        self.start()
        while not stop():
            try:
                if not self.step():
                    break
            except Exception as exc:  # a node or peer hiccup must not end the agent: it retries on the next step
                self.log(f"step failed, retrying: {type(exc).__name__}: {exc}")
            time.sleep(poll_seconds)

    # ---- the protocol's moves ----------------------------------------------------------------
    def propose(self, r: int) -> None:
        self._proposed_round = r
        try:
            weights = self.mli.mli_propose_weights()
            refusal = proposal_refusal(weights)
            blob = encode_weights(weights.weights) if refusal is None else None
        except Exception as exc:  # the learner's fault (or weights that cannot be encoded): pass the turn
            self.log(f"round {r}: cannot propose ({exc}); passing")
            self._send(f"skip round {r}", self.f.skip(r, False))
            return
        if blob is None:
            self._send(f"skip round {r}", self.f.skip(r, is_budget_exhausted(weights)))
            return
        digest = self.store.put(blob)
        self._weights[digest], self._my_proposals[digest] = weights, r
        if self._send(f"propose round {r}", self.f.propose(r, bytes.fromhex(digest))):
            self.stats.proposed += 1
            self.log(f"round {r}: proposed {digest[:12]}")

    def vote(self, r: int, proposer: int, digest: str, past_deadline: bool) -> None:
        """Score the proposal and sign the vote; keep trying to fetch it for ``fetch_patience`` seconds."""
        weights = self._weights.get(digest)
        approve, response = False, None
        if weights is None:
            data = self.fetch(digest, prefer=proposer)
            if data is None:
                started = self._fetch_started.setdefault(r, time.monotonic())
                if time.monotonic() - started < self.fetch_patience and not past_deadline:
                    return  # try again on the next step
                self.log(f"round {r}: nobody served blob {digest[:12]}; rejecting")
            else:
                try:
                    weights = Weights(weights=decode_weights(data))
                except Exception as exc:
                    self.log(f"round {r}: blob {digest[:12]} does not decode ({exc}); rejecting")
        if weights is not None:
            try:
                response = self.mli.mli_test_weights(weights)
                verdict = interpret_vote(response)
                approve = verdict.vote is True
                self._weights[digest] = weights
                if self.publish_scores:
                    self.book.put_scores(r, verdict.vote_score, verdict.test_score)
            except Exception as exc:  # it cannot vouch for what it cannot score
                self.log(f"round {r}: scoring failed ({exc}); rejecting")
        vote = sign_vote(self.account, self.chain.chain_id, self.contract.address, r, self.index, digest, approve)
        self.book.put_vote(vote)
        self.stats.voted += 1
        self.log(f"round {r}: voted {'for' if approve else 'against'} {digest[:12]}")

    def finalize(self, r: int, proposer: int, digest: str, past_deadline: bool) -> None:
        """Collect the signed votes (checking each) and finalize once all are in, or with those in after the
        deadline."""
        collected = self._collected.setdefault(r, {})
        for voter in range(self.n):
            if voter == proposer or voter in collected:
                continue
            if voter == self.index:
                vote = self.book.vote(r)
            else:
                client = self.peers.client(voter)
                try:
                    vote = client.fetch_vote(r, voter) if client is not None else None
                except PeerError:
                    vote = None
            if vote is not None and self._valid(vote, r, voter, digest):
                collected[voter] = vote
        if len(collected) + 1 < self.n and not past_deadline:
            return
        ordered = [collected[v] for v in sorted(collected)]
        if self._send(f"finalize round {r}", self.f.finalize(r, [v.as_call_arg() for v in ordered])):
            self.stats.finalized += 1
            self.log(f"round {r}: finalized with {len(ordered)} of {self.n - 1} votes")
        self._collected = {k: v for k, v in self._collected.items() if k > r}

    def _valid(self, vote: SignedVote, r: int, voter: int, digest: str) -> bool:
        if vote.round_index != r or vote.model_hash.hex() != digest:
            return False
        try:
            return signer_of(vote, self.chain.chain_id, self.contract.address) == self.learners[voter]
        except Exception:
            return False


__all__ = ["AgentStats", "ChainAgent"]
