"""What the page shows, as plain JSON: :func:`build_view` turns an experiment's results into the view.

Pure (no I/O, no clock), so the page's numbers are tested without a browser. Lists are indexed by learner; rounds
are numbered from 0, as everywhere in colearn (the initial evaluation sits at -1 in the charts). Optional information is read when a
run carries it and left out (``None`` / empty) when it does not: the metric's name, DP budgets, the ledger's
transactions and gas (``results.extra['ledger']``), and the learners a robust protocol flagged (a ``flagged`` list
on a round record, or ``results.extra['flagged']``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from colearn.results import ExperimentResults, RoundRecord, mean_known

VIEW_FORMAT = 1
PROPOSER, APPROVE, REJECT, ABSTAIN, NONE = "P", "A", "R", "X", "-"
"""Vote codes of the grid: proposer, approve, reject, abstain (no valid vote), not asked (no proposal)."""


def metric_name(results: ExperimentResults) -> str:
    """The name of the score learners report (``results.metric``, else from ``extra`` or ``config``);
    ``"score"`` when unknown."""
    if results.metric:
        return results.metric
    for source in (results.extra, results.config, results.config.get("learner_params") or {}):
        for key in ("metric", "metric_name", "score_name"):
            value = source.get(key) if isinstance(source, dict) else None
            if isinstance(value, str) and value:
                return value
    return "score"


def vote_code(record: RoundRecord, learner: int) -> str:
    """The grid code of ``learner``'s part in ``record``."""
    if record.proposer == learner:
        return PROPOSER
    if record.proposer is None or record.proposer_error is not None:
        return NONE
    vote = record.votes[learner] if learner < len(record.votes) else None
    return APPROVE if vote is True else REJECT if vote is False else ABSTAIN


def failure_reason(record: RoundRecord, protocol: Dict[str, Any], n_learners: int) -> Optional[str]:
    """Why a round was not accepted, in words (None for an accepted round)."""
    if record.accepted:
        return None
    if record.proposer_error:
        return f"no proposal: {record.proposer_error}"
    voted = record.approvals + record.rejections
    possible = max(n_learners - 1, 0)
    if voted == 0:
        return "every voter abstained"
    if protocol.get("tally_rule", "quorum") == "quorum":
        quorum = float(protocol.get("quorum", 0.5))
        if voted < quorum * possible:
            return f"no quorum: {voted} of {possible} voters cast a valid vote (quorum {quorum:g})"
    threshold = protocol.get("vote_threshold")
    limit = f" (threshold {float(threshold):g})" if threshold is not None else ""
    return f"rejected: {record.approvals} of {voted} approved{limit}"


def _flagged_by_round(results: ExperimentResults) -> Dict[int, List[int]]:
    """Round index -> learners a robust protocol flagged (rounds with none left out), from the records or
    ``extra['flagged']``."""
    flagged: Dict[int, List[int]] = {}
    extra = results.extra.get("flagged")
    if isinstance(extra, dict):
        for key, learners in extra.items():
            if str(key).lstrip("-").isdigit() and isinstance(learners, list):
                flagged[int(key)] = [int(i) for i in learners]
    elif isinstance(extra, list):
        for index, learners in enumerate(extra):
            if isinstance(learners, list):
                flagged[index] = [int(i) for i in learners]
    for record in results.rounds:
        own = getattr(record, "flagged", None)
        if isinstance(own, (list, tuple)) and own:
            flagged[record.round_index] = [int(i) for i in own]
    return {index: learners for index, learners in flagged.items() if learners}


def _ledger(results: ExperimentResults) -> Optional[Dict[str, Any]]:
    """Per-round transactions and gas of a ledger run (None for other backends)."""
    ledger = results.extra.get("ledger")
    if not isinstance(ledger, dict):
        return None
    rounds = []
    for entry in ledger.get("rounds") or []:
        if isinstance(entry, dict) and isinstance(entry.get("round"), int):
            txs = entry.get("txs") or []
            kinds: Dict[str, int] = {}
            for tx in txs:
                kinds[str(tx.get("kind"))] = kinds.get(str(tx.get("kind")), 0) + 1
            rounds.append({"round": entry["round"], "transactions": len(txs), "gas": entry.get("gas"),
                           "kinds": kinds})
    deployment = ledger.get("deployment") if isinstance(ledger.get("deployment"), dict) else {}
    return {"chain": ledger.get("chain"), "contract": ledger.get("contract"), "rounds": rounds,
            "deploy_gas": deployment.get("gas"),
            "total_gas": sum(r["gas"] or 0 for r in rounds) + (deployment.get("gas") or 0),
            "transactions": sum(r["transactions"] for r in rounds) + (1 if deployment else 0)}


def _round_view(record: RoundRecord, n: int, protocol: Dict[str, Any], flagged: List[int]) -> Dict[str, Any]:
    def padded(values: List[Any]) -> List[Any]:
        return list(values[:n]) + [None] * (n - len(values[:n]))

    budgets = padded(record.dp_budgets)
    return {
        "round": record.round_index, "proposer": record.proposer, "accepted": record.accepted,
        "reason": failure_reason(record, protocol, n), "votes": [vote_code(record, i) for i in range(n)],
        "approvals": record.approvals, "rejections": record.rejections, "abstentions": record.abstentions,
        "vote_errors": padded(record.vote_errors), "accept_errors": padded(record.accept_errors),
        "proposal_vote": padded(record.proposal_vote_scores), "proposal_test": padded(record.proposal_test_scores),
        "held_vote": padded(record.held_vote_scores), "held_test": padded(record.held_test_scores),
        "mean_test": record.mean_held_test_score, "bytes": record.proposal_bytes,
        "times": record.times.model_dump(), "flagged": sorted(set(flagged)),
        "dp_epsilon": [None if b is None else b.consumed_epsilon for b in budgets],
    }


def _learner_rows(results: ExperimentResults, rounds: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    last = results.rounds[-1] if results.rounds else None
    rows = []
    for i in range(results.n_learners):
        proposed = [r for r in rounds if r["proposer"] == i]
        budget = last.dp_budgets[i] if last is not None and i < len(last.dp_budgets) else None
        rows.append({
            "learner": i, "proposed": len(proposed), "accepted": sum(1 for r in proposed if r["accepted"]),
            "final_test": results.final_test_scores[i] if i < len(results.final_test_scores) else None,
            "final_vote": results.final_vote_scores[i] if i < len(results.final_vote_scores) else None,
            "flagged": sum(1 for r in rounds if i in r["flagged"]),
            "dp": None if budget is None else budget.model_dump(),
        })
    return rows


def build_view(results: ExperimentResults, *, finished: bool = False, source: str = "") -> Dict[str, Any]:
    """The JSON the page renders: a summary, one entry per round, one row per learner, ledger costs if any."""
    n = results.n_learners
    protocol = results.config.get("protocol") if isinstance(results.config.get("protocol"), dict) else {}
    flagged = _flagged_by_round(results)
    rounds = [_round_view(r, n, protocol, flagged.get(r.round_index, [])) for r in results.rounds]
    accepted = sum(1 for r in rounds if r["accepted"])
    planned = results.config.get("n_rounds")
    config = results.config
    title = " ".join(str(part) for part in (
        f"{n} x {config.get('learner')}" if config.get("learner") else f"{n} learners",
        f"on {config['task']}" if config.get("task") else "", f"({results.backend} backend)") if part)
    return {
        "format": VIEW_FORMAT, "title": title, "source": source, "metric": metric_name(results),
        "n_learners": n, "rounds_done": len(rounds), "rounds_planned": planned if isinstance(planned, int) else None,
        "finished": finished, "seed": results.seed, "backend": results.backend,
        "vote_threshold": protocol.get("vote_threshold"),
        "accepted": accepted, "acceptance_rate": accepted / len(rounds) if rounds else None,
        "initial_test": list(results.initial_test_scores), "initial_vote": list(results.initial_vote_scores),
        "mean_test": mean_known(results.final_test_scores),
        "has_dp": any(b is not None for r in results.rounds for b in r.dp_budgets),
        "has_flags": bool(flagged), "rounds": rounds, "learners": _learner_rows(results, rounds),
        "ledger": _ledger(results),
    }


def empty_view(message: str, *, source: str = "") -> Dict[str, Any]:
    """The view while there is nothing to show yet (no journal) or the folder cannot be read."""
    return {"format": VIEW_FORMAT, "title": "colearn", "source": source, "status": message, "rounds": [],
            "learners": [], "n_learners": 0, "rounds_done": 0, "finished": False, "metric": "score"}


__all__ = ["build_view", "empty_view", "failure_reason", "metric_name", "vote_code", "VIEW_FORMAT"]
