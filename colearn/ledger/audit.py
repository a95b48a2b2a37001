"""``colearn audit``: check a ledger run against the contract's own events and the blob store.

The events come from the chain itself: from the node for an RPC chain, or, for the embedded chain, from a fresh
py-evm chain that re-executes the run's signed transactions (``ledger.json`` journals them), so an edited event
cannot survive. The audit checks that the deployed code is the committed contract; that each round's proposer is
the one the selector rule names; that each vote came once, from a learner other than the proposer, signed by that
learner's own key (EIP-712, re-checked here), and that a round finalized before its deadline had every vote; that
each learner who joined late was admitted while the cap allowed and counts from the round after its admission (each
round keeps the learner count it opened with); that each tally (colearn.protocol's QUORUM rule) matches the votes,
the threshold and the quorum; that the accepted models, in order, match the contract's final state; that every
accepted hash has a blob with that hash that decodes as typed weights; and, given a results file, that it is about
this experiment (learners, their count, threshold, quorum) and tells the same story, vote by vote, with nothing
recorded for a learner in a round it was not yet part of.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from eth_abi import encode as abi_encode
from web3 import Web3

from colearn.encoding import WeightsDecodeError, decode_weights
from colearn.ledger.blobstore import BlobError, BlobStore
from colearn.ledger.chain import Chain, LedgerError, read_events, replay_embedded, rpc_chain
from colearn.ledger.compile import load_artifact
from colearn.ledger.votes import SignedVote, domain_separator, signer_of
from colearn.protocol import TallyRule, exact, tally
from colearn.results import ExperimentResults

VOTE_NAMES = {1: "for", 2: "against"}
VOTE_VALUES = {1: True, 2: False}


@dataclass
class ChainRound:
    index: int
    proposer: int
    opened_block: int
    n_learners: int = 0  # the learners of this round (the count it opened with)
    model_hash: Optional[str] = None
    deadline: Optional[int] = None
    votes: Dict[int, int] = field(default_factory=dict)
    finalized: Optional[Dict[str, Any]] = None
    skipped: Optional[Dict[str, Any]] = None
    txs: List[str] = field(default_factory=list)


@dataclass
class AuditReport:
    """The history (one line per round) and every inconsistency found; ``ok`` when there is none."""

    history: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    accepted: List[str] = field(default_factory=list)
    rounds: List[ChainRound] = field(default_factory=list)
    scope: List[str] = field(default_factory=list)  # what this kind of audit can and cannot prove
    joined: List[Dict[str, Any]] = field(default_factory=list)  # LearnerJoined events: index, learner, first_round

    @property
    def ok(self) -> bool:
        return not self.problems


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()


def connect(export: Dict[str, Any], rpc_url: Optional[str]) -> Chain:
    """The chain the export describes: the node at ``rpc_url``, or the embedded chain rebuilt by replay."""
    if export.get("chain") == "embedded":
        return replay_embedded(export["learners"], export.get("journal", []))
    if not rpc_url:
        raise LedgerError("this run used an RPC chain: give --rpc-url (or COLEARN_LEDGER_RPC_URL) to audit it")
    chain = rpc_chain(rpc_url)
    if chain.chain_id != int(export["chain_id"]):
        raise LedgerError(f"rpc_url serves chain id {chain.chain_id}, the run used {export['chain_id']}")
    return chain


IMMUTABLES = ("threshold_num", "threshold_den", "quorum_num", "quorum_den", "vote_period", "propose_period",
              "selector", "seed", "max_learners", "admitter")


def _word(value: Any) -> bytes:
    """An immutable as the contract stores it: one 32-byte word (an address is its 20 bytes, left-padded)."""
    if isinstance(value, str) and Web3.is_address(value):
        return bytes.fromhex(value[2:]).rjust(32, b"\0")
    return int(value).to_bytes(32, "big")


def is_colearn_code(code: bytes) -> bool:
    """Whether ``code`` (deployed bytecode) is the committed contract's runtime code plus its settings."""
    runtime = bytes.fromhex(load_artifact()["bytecode_runtime"].removeprefix("0x"))
    return code.startswith(runtime) and len(code) == len(runtime) + 32 * (len(IMMUTABLES) + 1)


def expected_code(config: Dict[str, Any], chain_id: int, address: str) -> bytes:
    """The deployed code of the committed contract configured as ``config`` (a Configured event) at ``address``:
    the runtime code followed by its immutables, in declaration order."""
    runtime = bytes.fromhex(load_artifact()["bytecode_runtime"].removeprefix("0x"))
    words = [_word(config[name]) for name in IMMUTABLES]
    return runtime + b"".join(words) + domain_separator(chain_id, address)


def _selected(config: Dict[str, Any], retired: set, round_index: int, n: Optional[int] = None) -> Optional[int]:
    """The proposer the contract's selector names for ``round_index`` among ``n`` learners (default: the
    initial count) that are not ``retired``."""
    n = config["n_learners"] if n is None else n
    start = round_index % n
    if config["selector"] == 1:
        start = int.from_bytes(Web3.keccak(abi_encode(["uint256", "uint256"], [config["seed"], round_index])),
                               "big") % n
    return next(((start + step) % n for step in range(n) if (start + step) % n not in retired), None)


def _signed_by_learner(args: Dict[str, Any], r: ChainRound, config: Dict[str, Any], learners: Dict[int, str]) -> bool:
    """Re-check a ``Voted`` event's EIP-712 signature off chain: it must recover to the voter's address."""
    vote = SignedVote(r.index, args["voter"], args["vote"], bytes.fromhex(str(r.model_hash)[2:]), args["v"],
                      bytes(args["r"]), bytes(args["s"]))
    try:
        return signer_of(vote, config["chain_id"], config["contract"]) == learners.get(args["voter"])
    except ValueError:
        return False


def collect_rounds(events: List[Dict[str, Any]], report: AuditReport, chain_id: int,
                   contract_address: str) -> Dict[str, Any]:
    """Group the events by round, checking each step as the contract's rules say; returns the config (with
    ``learners``, the ones named at deployment, and ``all_learners``, late joiners included)."""
    config: Dict[str, Any] = {}
    learners: Dict[int, str] = {}
    initial: List[str] = []
    rounds: Dict[int, ChainRound] = {}
    retired: set = set()
    last_opened = -1
    for event in events:
        name, args = event["name"], event["args"]
        if name == "LearnerAdded":
            learners[args["index"]] = args["learner"]
            initial.append(args["learner"])
            continue
        if name == "Configured":
            config = dict(args, chain_id=chain_id, contract=contract_address)
            continue
        if name == "Endpoint":
            continue
        if name == "LearnerJoined":
            index, first = args["index"], args["first_round"]
            report.joined.append(dict(args))
            if index != len(learners) or not config.get("max_learners") or index >= config["max_learners"]:
                report.problems.append(f"learner {index} joined beyond the cap or the order of admission")
            if first != last_opened + 1:
                report.problems.append(f"learner {index} joined while round {last_opened} was open but counts from "
                                       f"round {first}")
            learners[index] = args["learner"]
            continue
        r = args.get("round_index")
        where = f"round {r}"
        if name == "RoundOpened":
            n_round = len(learners)  # everyone admitted before the round opened, never anyone after
            expected = _selected(config, retired, r, n_round) if config else None
            if expected != args["proposer"]:
                report.problems.append(f"{where}: opened with proposer {args['proposer']}, the selector rule "
                                       f"names {expected}")
            if r in rounds:
                report.problems.append(f"{where}: opened twice")
            rounds[r] = ChainRound(r, args["proposer"], event["block"], n_round)
            last_opened = r
            continue
        current = rounds.get(r)
        if current is None:
            report.problems.append(f"{where}: {name} event for a round that was never opened")
            continue
        current.txs.append(event["tx"])
        if name == "Proposed":
            if current.model_hash is not None:
                report.problems.append(f"{where}: a second proposal")
            if args["proposer"] != current.proposer:
                report.problems.append(f"{where}: proposed by {args['proposer']}, not by proposer {current.proposer}")
            current.model_hash, current.deadline = _hex(args["model_hash"]), args["deadline"]
        elif name == "Voted":
            voter = args["voter"]
            if current.model_hash is None:
                report.problems.append(f"{where}: learner {voter} voted before any proposal")
            elif not _signed_by_learner(args, current, config, learners):
                report.problems.append(f"{where}: the vote of learner {voter} is not signed by its key")
            if voter == current.proposer or voter in current.votes or voter >= current.n_learners:
                report.problems.append(f"{where}: learner {voter} may not vote (proposer, second vote or not a "
                                       "learner of this round)")
            current.votes[voter] = args["vote"]
        elif name == "Finalized":
            current.finalized = dict(args, model_hash=_hex(args["model_hash"]), block=event["block"])
            if event["block"] <= (current.deadline or 0) and len(current.votes) + 1 != current.n_learners:
                report.problems.append(f"{where}: finalized before its deadline without every vote")
        elif name == "Skipped":
            current.skipped = dict(args)
            if args["retired"]:
                retired.add(args["proposer"])
    config["learners"] = initial
    config["all_learners"] = [learners[i] for i in sorted(learners)]
    report.rounds = [rounds[r] for r in sorted(rounds)]
    return config


def capacity(config: Dict[str, Any]) -> int:
    """How many learners the results of this experiment have columns for: the cap when late joining is allowed,
    else the learners named at deployment."""
    return max(int(config.get("max_learners") or 0), int(config["n_learners"]))


def check_tallies(config: Dict[str, Any], report: AuditReport) -> None:
    """Every finalized round's tally must follow from its votes and the threshold."""
    num, den = config["threshold_num"], config["threshold_den"]
    quorum = Fraction(config["quorum_num"], config["quorum_den"])
    for r in report.rounds:
        n = r.n_learners
        if r.finalized is None:
            if r.model_hash is not None and r is not report.rounds[-1]:
                report.problems.append(f"round {r.index}: proposed but never finalized")
            continue
        if r.model_hash is None:
            report.problems.append(f"round {r.index}: finalized without a proposal")
            continue
        fin = r.finalized
        decision = tally([VOTE_VALUES.get(r.votes.get(i, 0)) for i in range(n) if i != r.proposer],
                         Fraction(num, den), TallyRule.QUORUM, quorum=quorum)  # type: ignore[arg-type]
        approvals, rejections, voters = decision.approvals, decision.rejections, decision.voters
        should_accept = decision.accepted
        if (fin["approvals"], fin["rejections"], fin["abstentions"]) != (approvals, rejections, n - 1 - voters):
            report.problems.append(f"round {r.index}: tally {fin['approvals']}/{fin['rejections']}/"
                                   f"{fin['abstentions']} does not match the votes {approvals}/{rejections}")
        if fin["accepted"] != should_accept:
            report.problems.append(f"round {r.index}: {'accepted' if fin['accepted'] else 'rejected'} against the "
                                   f"threshold {num}/{den} and quorum {quorum} with {approvals} of {voters} voters "
                                   "approving")
        if fin["model_hash"] != r.model_hash:
            report.problems.append(f"round {r.index}: finalized hash differs from the proposed one")
        if fin["accepted"]:
            report.accepted.append(r.model_hash)


def check_blobs(store: BlobStore, report: AuditReport) -> None:
    """Every accepted hash must name a stored blob with that hash that decodes as typed weights."""
    for digest in report.accepted:
        try:
            decode_weights(store.get(digest))
        except (BlobError, WeightsDecodeError, ValueError) as exc:
            report.problems.append(f"accepted model {digest[:18]}…: {exc}")


def check_binding(results: ExperimentResults, config: Dict[str, Any], report: AuditReport) -> None:
    """The results must be about this contract's experiment: its learners, their count (one column per learner
    the contract can have: the cap when late joining is allowed), threshold and quorum."""
    n = capacity(config)
    if results.n_learners != n:
        report.problems.append(f"results: {results.n_learners} learners, the contract has {n}" +
                               (" (its cap on late joiners included)" if config.get("max_learners") else ""))
    protocol = results.config.get("protocol", {})
    threshold = protocol.get("vote_threshold")
    if threshold is None or exact(threshold) != Fraction(config["threshold_num"], config["threshold_den"]):
        report.problems.append(f"results: vote threshold {threshold}, the contract's is "
                               f"{config['threshold_num']}/{config['threshold_den']}")
    quorum, rule = protocol.get("quorum"), protocol.get("tally_rule")
    if rule != "quorum" or quorum is None or exact(quorum) != Fraction(config["quorum_num"], config["quorum_den"]):
        report.problems.append(f"results: tally rule {rule} with quorum {quorum}, the contract tallies with "
                               f"quorum {config['quorum_num']}/{config['quorum_den']}")
    named = results.extra.get("ledger", {}).get("learners")
    if named is not None and named != config["learners"]:
        report.problems.append("results: name other learner addresses than the contract's")


def check_results(results: ExperimentResults, config: Dict[str, Any], contract_address: str,
                  report: AuditReport) -> None:
    """The results file must tell the chain's story: proposers, every vote, tallies, decisions, transactions."""
    ledger = results.extra.get("ledger", {})
    if ledger.get("contract") not in (None, contract_address):
        report.problems.append(f"results: name contract {ledger.get('contract')}, the run used {contract_address}")
    check_binding(results, config, report)
    n = results.n_learners
    if n != capacity(config):
        return  # bound to another experiment: comparing vote by vote would only repeat it
    chain_rounds = iter(report.rounds)
    for rec in results.rounds:
        if rec.proposer is None:
            continue
        r = next(chain_rounds, None)
        where = f"results round {rec.round_index}"
        if r is None:
            report.problems.append(f"{where}: no such round on chain")
            continue
        if r.proposer != rec.proposer:
            report.problems.append(f"{where}: proposer {rec.proposer}, the chain says {r.proposer}")
        accepted = bool(r.finalized and r.finalized["accepted"])
        if rec.accepted != accepted:
            report.problems.append(f"{where}: {'accepted' if rec.accepted else 'rejected'}, the chain says "
                                   f"{'accepted' if accepted else 'rejected'}")
        if r.finalized is None:
            continue
        votes = [VOTE_VALUES.get(r.votes.get(i, 0)) for i in range(n)]  # every learner's, never a prefix
        outsiders = [i for i in range(r.n_learners, n) if rec.proposal_vote_scores[i] is not None
                     or rec.proposal_test_scores[i] is not None or rec.votes[i] is not None]
        if outsiders:
            report.problems.append(f"{where}: learners {outsiders} were not learners of this round (it had "
                                   f"{r.n_learners}) but the results record something for them")
        if list(rec.votes) != votes:
            report.problems.append(f"{where}: votes {rec.votes} differ from the chain's {votes}")
        if (rec.approvals, rec.rejections) != (r.finalized["approvals"], r.finalized["rejections"]):
            report.problems.append(f"{where}: tally {rec.approvals}/{rec.rejections} differs from the chain's")
    if any(r.finalized or r.skipped for r in chain_rounds):  # what the results did not consume
        report.problems.append("results: the chain has more closed rounds than the results file")
    known = {tx for r in report.rounds for tx in r.txs}
    for entry in ledger.get("rounds", []):
        chain_round = next((r for r in report.rounds if r.index == entry.get("round")), None)
        if entry.get("model_hash") and (chain_round is None or chain_round.model_hash != entry["model_hash"]):
            report.problems.append(f"results: round {entry.get('round')} names model {entry['model_hash'][:18]}…, "
                                   "not the one on chain")
        for tx in entry.get("txs", []):
            if tx["kind"] != "deploy" and tx["tx"] not in known:
                report.problems.append(f"results: transaction {tx['tx'][:18]}… of round {entry.get('round')} "
                                       "emitted no event of the contract")


def describe(r: ChainRound) -> str:
    if r.skipped is not None:
        return f"round {r.index:>3}: proposer {r.proposer} passed" + (" and retired" if r.skipped["retired"] else "")
    if r.model_hash is None:
        return f"round {r.index:>3}: proposer {r.proposer}, open (no proposal yet)"
    counts = {name: sum(1 for v in r.votes.values() if v == code) for code, name in VOTE_NAMES.items()}
    outcome = "open" if r.finalized is None else ("ACCEPTED" if r.finalized["accepted"] else "rejected")
    return (f"round {r.index:>3}: proposer {r.proposer} of {r.n_learners}, model {r.model_hash[2:14]}…, "
            f"votes {counts['for']} for "
            f"{counts['against']} against -> {outcome}")


EMBEDDED_SCOPE = (
    "embedded chain: the audit re-executed the journaled transactions, so the events, tallies and results follow "
    "from transactions signed by the learner addresses above. Their keys were random for this run and never "
    "written anywhere, so nobody can re-sign another history for these addresses afterwards.",
    "embedded chain: it cannot prove that the learners acted independently (one process held every key during "
    "the run, so its operator could have signed anything then), nor that these are the addresses the run really "
    "used (ledger.json names them): pin them with --learners ADDR,... from a record published before the run, "
    "or run on a shared node where each organisation keeps its own key.")


def audit(export_path: Union[str, Path], *, blob_dir: Union[str, Path, None] = None,
          results: Optional[ExperimentResults] = None, rpc_url: Optional[str] = None,
          expected_learners: Optional[List[str]] = None) -> AuditReport:
    """Audit the run described by ``export_path`` (a ``ledger.json``); see the module docstring.

    ``expected_learners``: the learners' addresses as known from outside the files being audited; the contract's
    must be exactly these."""
    export_path = Path(export_path)
    export = json.loads(export_path.read_text())
    chain = connect(export, rpc_url)
    contract = chain.contract(export["contract"])
    report = AuditReport()
    code = bytes(chain.w3.eth.get_code(contract.address))
    if not is_colearn_code(code):
        report.problems.append(f"the code at {contract.address} is not the committed Colearn contract")
        return report
    events = read_events(contract, int(export.get("deploy_block", 0)))
    config = collect_rounds(events, report, chain.chain_id, contract.address)
    if not config or code != expected_code(config, chain.chain_id, contract.address):
        report.problems.append("the contract's settings (immutables) differ from its Configured event")
    if config.get("learners") != export["learners"]:
        report.problems.append("the contract's learners differ from the ones ledger.json names")
    if expected_learners is not None and [Web3.to_checksum_address(a) for a in expected_learners] != \
            config.get("learners"):
        report.problems.append("the contract's learners are not the expected ones (--learners)")
    check_tallies(config, report)
    final_model = _hex(contract.functions.current_model().call())
    expected = report.accepted[-1] if report.accepted else "0x" + "00" * 32
    if final_model != expected or contract.functions.n_accepted().call() != len(report.accepted):
        report.problems.append(f"the contract's current model {final_model[:18]}… / count of accepted models does "
                               "not match the sequence of Finalized events")
    check_blobs(BlobStore(blob_dir or export_path.parent / "blobs"), report)
    if results is not None:
        check_results(results, config, contract.address, report)
    joined = f" (+{len(report.joined)} joined, cap {config['max_learners']})" if config.get("max_learners") else ""
    report.history = [f"contract {contract.address} on {export['chain']} chain {chain.chain_id}: "
                      f"{config['n_learners']} learners{joined}, threshold {config['threshold_num']}/"
                      f"{config['threshold_den']}, quorum {config['quorum_num']}/{config['quorum_den']}, "
                      f"vote period {config['vote_period']} blocks"]
    report.history += [f"learner {j['index']} ({j['learner']}) joined, a learner from round {j['first_round']}"
                       for j in report.joined]
    report.history += [describe(r) for r in report.rounds]
    report.scope = list(EMBEDDED_SCOPE) if export.get("chain") == "embedded" else []
    return report
