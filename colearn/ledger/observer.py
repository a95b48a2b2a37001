"""``colearn watch``: follow an on-chain experiment as an observer and keep its results files up to date.

The observer needs no key: it reads the contract's events and writes, as each round closes, ``rounds.jsonl``
(the round journal, :mod:`colearn.journal`), ``results.json``, ``results.csv``, the plots and ``ledger.json``
(what ``colearn audit`` reads). Proposers, votes, tallies and decisions come from the chain; scores come from
the agents that publish them on their peer service (a learner that does not is recorded with no score).

When the experiment allows late joining, the results have one column per learner it can have (``max_learners``):
a late joiner's column stays empty until the first round that counts it (``LearnerJoined.first_round``), and each
round's abstentions are over that round's learners, as the contract tallied them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional

from colearn.journal import RoundJournal
from colearn.ledger.blobstore import BlobError, BlobStore
from colearn.ledger.chain import Chain, read_events
from colearn.ledger.experiment_file import ExperimentFile
from colearn.ledger.peer_service import PeerDirectory, PeerError
from colearn.results import ExperimentResults, RoundRecord, collect_versions

EXPORT_NAME = "ledger.json"


@dataclass
class _Open:
    proposer: int
    n: int  # the learners of this round (the count it opened with)
    model_hash: Optional[str] = None
    votes: Dict[int, int] = field(default_factory=dict)
    txs: List[Dict[str, Any]] = field(default_factory=list)


class Observer:
    """Builds :class:`ExperimentResults` from the contract's events, one closed round at a time."""

    def __init__(self, chain: Chain, contract: Any, experiment: ExperimentFile, out: Path, *,
                 peers: Optional[PeerDirectory] = None, plots: bool = True, score_wait: float = 2.0):
        self.chain, self.contract, self.experiment, self.out = chain, contract, experiment, Path(out)
        self.peers = peers or PeerDirectory()
        self.plots, self.score_wait = plots, score_wait
        self.n = experiment.capacity  # columns: every learner the experiment can have
        self.members = len(experiment.learners)  # learners admitted so far (the next round's count)
        threshold, quorum = Fraction(*experiment.threshold), Fraction(*experiment.quorum)
        protocol = {"vote_threshold": float(threshold), "selector": experiment.selector, "seed": experiment.seed,
                    "tally_rule": "quorum", "quorum": float(quorum), "evaluate_proposer": True}
        self.results = ExperimentResults(
            n_learners=self.n, backend="ledger-agents", seed=experiment.seed, versions=collect_versions(),
            config={"protocol": protocol, "selector": experiment.selector},
            extra={"ledger": {"chain": "rpc", "chain_id": experiment.chain_id, "contract": experiment.contract,
                              "learners": list(experiment.learners), "max_learners": experiment.max_learners,
                              "joined": [], "rounds": []}})
        self.held_vote: List[Optional[float]] = [None] * self.n
        self.held_test: List[Optional[float]] = [None] * self.n
        self.journal = RoundJournal(self.out, fsync=False)
        self.blobs = BlobStore(self.out / "blobs")
        self._next_block = experiment.deploy_block
        self._open: Dict[int, _Open] = {}
        self._started = False
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / EXPORT_NAME).write_text(_json(experiment.export()))

    @property
    def closed_rounds(self) -> int:
        return len(self.results.rounds)

    def _scores(self, learner: int, round_index: int, wait: float = 0.0) -> Any:
        deadline = time.monotonic() + wait
        while True:
            client = self.peers.client(learner)
            try:
                scores = client.fetch_scores(round_index) if client is not None else None
            except PeerError:
                scores = None
            if scores is not None or time.monotonic() >= deadline:
                return scores or (None, None)
            time.sleep(0.1)

    def _start(self) -> None:
        for i in range(len(self.experiment.learners)):  # the learners named at deployment scored the start
            self.held_vote[i], self.held_test[i] = self._scores(i, -1, self.score_wait)
        self.results.initial_vote_scores, self.results.initial_test_scores = list(self.held_vote), list(self.held_test)
        self.journal.on_experiment_start(SimpleNamespace(results=self.results))
        self._started = True

    def poll(self) -> int:
        """Read the events since the last poll, record every round that closed; returns how many did."""
        latest = self.chain.block_number
        if latest < self._next_block:
            return 0
        events = read_events(self.contract, self._next_block, latest)
        self._next_block = latest + 1
        closed = 0
        for event in events:
            name, args = event["name"], event["args"]
            if name == "Endpoint":
                self.peers.announce(int(args["learner"]), str(args["endpoint"]))
                continue
            if name == "LearnerJoined":
                self.members = int(args["index"]) + 1
                self.results.extra["ledger"]["joined"].append(
                    {"index": int(args["index"]), "learner": str(args["learner"]),
                     "first_round": int(args["first_round"]), "tx": event["tx"], "block": event["block"]})
                continue
            if not self._started and name in ("Finalized", "Skipped"):
                self._start()
            r = args.get("round_index")
            if name == "RoundOpened":
                self._open[r] = _Open(int(args["proposer"]), self.members)
            elif r in self._open:
                current = self._open[r]
                current.txs.append({"kind": name.lower(), "tx": event["tx"], "block": event["block"]})
                if name == "Proposed":
                    current.model_hash = "0x" + bytes(args["model_hash"]).hex()
                elif name == "Voted":
                    current.votes[int(args["voter"])] = int(args["vote"])
                elif name in ("Finalized", "Skipped"):
                    self._record(r, self._open.pop(r), args if name == "Finalized" else None)
                    closed += 1
        if closed:
            self.write()
        return closed

    def _record(self, r: int, current: _Open, finalized: Optional[Dict[str, Any]]) -> None:
        n, proposer = self.n, current.proposer
        record = RoundRecord(round_index=r, proposer=proposer, accepted=bool(finalized and finalized["accepted"]),
                             votes=[{1: True, 2: False}.get(current.votes.get(i, 0)) for i in range(n)],
                             vote_errors=[None] * n, proposal_vote_scores=[None] * n, proposal_test_scores=[None] * n,
                             held_vote_scores=[], held_test_scores=[], accept_errors=[None] * n)
        if finalized is None:
            record.proposer_error = "the proposer passed its turn (or stayed silent past the propose period)"
        else:
            record.approvals, record.rejections = int(finalized["approvals"]), int(finalized["rejections"])
            record.abstentions = int(finalized["abstentions"])
            for i in current.votes:
                record.proposal_vote_scores[i], record.proposal_test_scores[i] = self._scores(i, r)
            if record.accepted:
                self._keep_blob(current.model_hash)
                for i in range(current.n):  # a learner admitted during the round has no score of it
                    if i == proposer:
                        scores = self._scores(i, r, self.score_wait)
                    else:
                        scores = (record.proposal_vote_scores[i], record.proposal_test_scores[i])
                    self.held_vote[i], self.held_test[i] = scores
        record.held_vote_scores, record.held_test_scores = list(self.held_vote), list(self.held_test)
        self.results.rounds.append(record)
        self.results.extra["ledger"]["rounds"].append(
            {"round": r, "proposer": proposer, "model_hash": current.model_hash, "accepted": record.accepted,
             "txs": current.txs})
        self.journal.on_round_end(record)

    def _keep_blob(self, model_hash: Optional[str]) -> None:
        """Fetch an accepted model (hash checked) into OUT/blobs, for the audit; tries every agent once."""
        if model_hash is None or self.blobs.has(model_hash):
            return
        for learner in sorted(self.peers.endpoints):
            client = self.peers.client(learner)
            try:
                if client is not None:
                    self.blobs.put(client.fetch_blob(model_hash))
                    return
            except (PeerError, BlobError):
                continue

    def write(self) -> None:
        """results.json, results.csv and the plots, as of the rounds closed so far."""
        self.results.save(self.out / "results.json")
        self.results.to_csv(self.out / "results.csv")
        if self.plots and self.results.rounds:
            from colearn.plot import save_plots

            save_plots(self.results, self.out)

    def follow(self, stop: Callable[[], bool], *, until_rounds: Optional[int] = None,
               poll_seconds: float = 0.5) -> ExperimentResults:
        """Poll until ``stop()``, the contract halts, or ``until_rounds`` rounds have closed."""
        while not stop():
            self.poll()
            if until_rounds is not None and self.closed_rounds >= until_rounds:
                break
            if self.contract.functions.halted().call():
                self.poll()
                break
            time.sleep(poll_seconds)
        self.journal.close()
        self.peers.close()
        return self.results


def _json(data: Any) -> str:
    import json

    return json.dumps(data, indent=1) + "\n"


__all__ = ["EXPORT_NAME", "Observer"]
