"""The dashboard's view model and folder source: what the page shows, computed without a browser."""
from __future__ import annotations

import json
import math
import random
import time
from typing import List

import pytest

from colearn import Experiment
from colearn.dashboard.model import build_view, failure_reason, metric_name, vote_code
from colearn.dashboard.source import FolderSource
from colearn.journal import RoundJournal
from colearn.ml_interface import DiffPrivBudget
from colearn.results import ExperimentResults, PhaseTimes, RoundRecord
from tests.learners import FixedVoter, PlusOneLearner


def synthetic_results(n_rounds: int = 12, n_learners: int = 5, seed: int = 0, *, ledger: bool = True,
                      flagged: bool = True, dp: bool = True) -> ExperimentResults:
    """Results with every kind of round: accepted, rejected, no quorum, no proposal; DP, flags and ledger gas."""
    rng = random.Random(seed)
    rounds = []
    for k in range(n_rounds):
        proposer = k % n_learners
        votes = [None if i == proposer else rng.choice([True, True, True, False, None]) for i in range(n_learners)]
        errors = [None if i == proposer or votes[i] is not None else "timed out" for i in range(n_learners)]
        no_proposal = k % 7 == 6
        if no_proposal:
            votes, errors = [None] * n_learners, [None] * n_learners
        approvals, rejections = votes.count(True), votes.count(False)
        abstentions = 0 if no_proposal else n_learners - 1 - approvals - rejections
        accepted = not no_proposal and approvals + rejections >= (n_learners - 1) / 2 and approvals >= rejections
        score = [round(rng.random(), 4) for _ in range(n_learners)]
        rounds.append(RoundRecord(
            round_index=k, proposer=proposer, accepted=accepted, votes=votes, vote_errors=errors,
            proposal_vote_scores=[None if v is None else s for v, s in zip(votes, score)],
            proposal_test_scores=[None if v is None else s / 2 for v, s in zip(votes, score)],
            held_vote_scores=score, held_test_scores=[s / 2 for s in score], approvals=approvals,
            rejections=rejections, abstentions=abstentions, proposal_bytes=None if no_proposal else 1000 + k,
            proposer_error="DP budget exhausted" if no_proposal else None, accept_errors=[None] * n_learners,
            dp_budgets=[DiffPrivBudget(target_epsilon=5.0, target_delta=1e-5, consumed_epsilon=0.1 * (k + 1) + i,
                                       consumed_delta=0.0) if dp and i <= k else None for i in range(n_learners)],
            times=PhaseTimes(propose=0.01, vote=0.02, accept=0.005, total=0.04)))
    extra = {}
    if ledger:
        extra["ledger"] = {"chain": "embedded", "contract": "0xabc", "deployment": {"kind": "deploy", "gas": 900},
                           "rounds": [{"round": k, "gas": 100 + k, "txs": [{"kind": "vote", "gas": 50 + k},
                                                                          {"kind": "propose", "gas": 50}]}
                                      for k in range(n_rounds)]}
    if flagged:
        extra["flagged"] = {"1": [2], "3": [2, 4]}
    return ExperimentResults(n_learners=n_learners, seed=seed, config={
        "task": "digits", "learner": "sgd", "n_rounds": n_rounds,
        "protocol": {"vote_threshold": 0.5, "tally_rule": "quorum", "quorum": 0.5}},
        initial_vote_scores=[0.1] * n_learners, initial_test_scores=[0.1] * n_learners, rounds=rounds, extra=extra)


def test_the_grid_codes_and_counts_follow_the_records():
    results = synthetic_results()
    view = build_view(results, finished=True)
    assert view["rounds_done"] == len(view["rounds"]) == 12 and view["n_learners"] == 5
    expected_codes = {True: "A", False: "R", None: "X"}
    for record, shown in zip(results.rounds, view["rounds"]):
        assert shown["round"] == record.round_index and shown["accepted"] == record.accepted
        for i, code in enumerate(shown["votes"]):
            if record.proposer_error:
                assert code == ("P" if i == record.proposer else "-")
            else:
                assert code == ("P" if i == record.proposer else expected_codes[record.votes[i]])
        assert shown["held_test"] == record.held_test_scores
        assert shown["bytes"] == record.proposal_bytes
    assert view["accepted"] == results.n_accepted
    assert view["acceptance_rate"] == pytest.approx(results.n_accepted / 12)
    proposed = [sum(1 for r in results.rounds if r.proposer == i) for i in range(5)]
    assert [row["proposed"] for row in view["learners"]] == proposed
    json.dumps(view, allow_nan=False)  # plain JSON


def test_optional_information_is_shown_when_present_and_absent_without_failing():
    view = build_view(synthetic_results())
    assert view["rounds"][1]["flagged"] == [2] and view["rounds"][3]["flagged"] == [2, 4]
    assert [row["flagged"] for row in view["learners"]] == [0, 0, 2, 0, 1] and view["has_flags"]
    assert view["ledger"]["rounds"][0] == {"round": 0, "transactions": 2, "gas": 100, "kinds": {"vote": 1, "propose": 1}}
    assert view["ledger"]["total_gas"] == 900 + sum(100 + k for k in range(12))
    assert view["ledger"]["transactions"] == 1 + 2 * 12
    assert view["has_dp"] and view["rounds"][0]["dp_epsilon"][:2] == [pytest.approx(0.1), None]
    assert view["learners"][4]["dp"]["consumed_epsilon"] == pytest.approx(1.2 + 4)

    bare = build_view(synthetic_results(ledger=False, flagged=False, dp=False))
    assert bare["ledger"] is None and not bare["has_flags"] and not bare["has_dp"]
    assert all(r["flagged"] == [] for r in bare["rounds"])
    as_list = synthetic_results(flagged=False)
    as_list.extra["flagged"] = [[], [0, 1]]
    assert build_view(as_list)["rounds"][1]["flagged"] == [0, 1]

    class FlaggingRecord(RoundRecord):  # a record of a protocol that flags learners itself
        flagged: List[int] = []

    on_records = synthetic_results(flagged=False)
    on_records.rounds = [FlaggingRecord(**{**r.model_dump(), "flagged": []}) for r in on_records.rounds]
    assert not build_view(on_records)["has_flags"]  # a protocol that flags, and flagged nobody
    on_records.rounds[2].flagged = [3]
    view = build_view(on_records)
    assert view["has_flags"] and view["rounds"][2]["flagged"] == [3] and view["learners"][3]["flagged"] == 1


def test_failure_reasons_name_what_went_wrong():
    protocol = {"vote_threshold": 0.5, "tally_rule": "quorum", "quorum": 0.5}

    def record(**fields):
        base = dict(round_index=0, proposer=0, accepted=False, votes=[None] * 5, vote_errors=[None] * 5,
                    proposal_vote_scores=[None] * 5, proposal_test_scores=[None] * 5,
                    held_vote_scores=[None] * 5, held_test_scores=[None] * 5)
        return RoundRecord(**{**base, **fields})

    assert failure_reason(record(accepted=True, approvals=4), protocol, 5) is None
    assert failure_reason(record(proposer_error="budget spent"), protocol, 5) == "no proposal: budget spent"
    assert failure_reason(record(abstentions=4), protocol, 5) == "every voter abstained"
    assert failure_reason(record(approvals=1, abstentions=3), protocol, 5).startswith("no quorum: 1 of 4")
    assert failure_reason(record(approvals=1, rejections=3), protocol, 5) == "rejected: 1 of 4 approved (threshold 0.5)"
    assert vote_code(record(proposer=None, proposer_error="x"), 0) == "-"


def test_the_metric_is_named_when_the_results_record_it():
    results = synthetic_results()
    assert metric_name(results) == "score"
    results.config["learner_params"] = {"metric": "accuracy"}
    assert build_view(results)["metric"] == "accuracy"
    results.extra["metric"] = "f1"
    assert metric_name(results) == "f1"


def test_a_folder_is_followed_round_by_round_and_then_read_from_results_json(tmp_path):
    source = FolderSource(tmp_path)
    assert source.view()["rounds_done"] == 0 and "waiting" in source.view()["status"]
    counts = []

    def look(record):
        counts.append((json.loads(source.view_text())["rounds_done"], source.view()["status"]))

    learners = [PlusOneLearner(), PlusOneLearner(), FixedVoter(False)]
    results = Experiment(learners, hooks=[RoundJournal(tmp_path, fsync=False), look]).run(3)
    assert counts == [(1, "running"), (2, "running"), (3, "running")]
    time.sleep(0.01)
    results.extra["ledger"] = {"rounds": [{"round": 0, "gas": 7, "txs": [{"kind": "vote"}]}]}
    results.save(tmp_path / "results.json")
    view = json.loads(source.view_text())
    assert view["status"] == "finished" and view["ledger"]["total_gas"] == 7
    assert [r["votes"] for r in view["rounds"]] == [["P", "A", "R"], ["A", "P", "R"], ["A", "A", "P"]]


def test_files_older_than_the_run_and_broken_files_are_not_shown_as_results(tmp_path):
    synthetic_results().save(tmp_path / "results.json")
    assert FolderSource(tmp_path).view()["rounds_done"] == 12
    assert FolderSource(tmp_path, since_ns=time.time_ns() + 10**9).view()["rounds_done"] == 0
    (tmp_path / "results.json").write_text("{not json")
    assert "not a colearn results file" in FolderSource(tmp_path).view()["status"]


def test_scores_that_are_not_finite_are_sent_as_null(tmp_path):
    results = synthetic_results(n_rounds=2)
    results.rounds[1].held_test_scores[0] = math.nan
    results.save(tmp_path / "results.json")
    view = json.loads(FolderSource(tmp_path).view_text())
    assert view["rounds"][1]["held_test"][0] is None


def test_a_file_named_on_the_command_line_is_read_as_what_it_is(tmp_path):
    Experiment([PlusOneLearner() for _ in range(3)], hooks=[RoundJournal(tmp_path, fsync=False)]).run(2)
    synthetic_results(n_rounds=5).save(tmp_path / "earlier-run.json")
    assert FolderSource(tmp_path / "rounds.jsonl").view()["rounds_done"] == 2
    alone = FolderSource(tmp_path / "earlier-run.json").view()
    assert alone["rounds_done"] == 5 and alone["status"] == "finished"
    assert FolderSource(tmp_path).view()["rounds_done"] == 2
