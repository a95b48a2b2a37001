"""`colearn audit`: passes on an honest run, fails on a tampered blob, a forged results file or journal."""
from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("web3")
pytest.importorskip("eth_tester")

from typer.testing import CliRunner  # noqa: E402

from colearn.cli import app  # noqa: E402
from colearn.cli.ledger import register  # noqa: E402
from colearn.ledger.audit import audit  # noqa: E402
from colearn.ledger.chain import LedgerError  # noqa: E402
from colearn.results import ExperimentResults  # noqa: E402
from colearn.runner import RunConfig, run  # noqa: E402
from tests.test_ledger_learners import register_softmax  # noqa: E402

register(app)
pytestmark = pytest.mark.slow  # every test audits a real (replayed) chain


@pytest.fixture(scope="module")
def honest_run(tmp_path_factory):
    """A 3-learner, 3-round ledger run written as `colearn run --out OUT` would: OUT/results.json, OUT/ledger/."""
    out = tmp_path_factory.mktemp("ledger-run")
    config = RunConfig(learner=register_softmax(), n_learners=3, n_rounds=3, seed=5, vote_threshold=0.5,
                       backend="ledger", backend_options={"workdir": str(out / "ledger")})
    run(config).save(out / "results.json")
    return out


@pytest.fixture
def run_copy(honest_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(honest_run, target)
    return target


def load(out):
    return ExperimentResults.load(out / "results.json")


def test_an_honest_run_passes_and_prints_its_history(run_copy):
    report = audit(run_copy / "ledger" / "ledger.json", results=load(run_copy))
    assert report.ok, report.problems
    assert len(report.accepted) == load(run_copy).n_accepted > 0
    assert len(report.history) == 1 + len(report.rounds)
    result = CliRunner().invoke(app, ["audit", str(run_copy)])
    assert result.exit_code == 0, result.output
    assert "audit passed" in result.output and "round   0: proposer 0" in result.output


def test_a_tampered_blob_fails_the_audit(run_copy):
    report = audit(run_copy / "ledger" / "ledger.json")
    blob = next((run_copy / "ledger" / "blobs").glob(f"??/{report.accepted[0][2:]}"))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    report = audit(run_copy / "ledger" / "ledger.json")
    assert not report.ok and any("tampered" in p for p in report.problems)
    result = CliRunner().invoke(app, ["audit", str(run_copy)])
    assert result.exit_code == 1 and "audit FAILED" in result.output


def test_a_missing_blob_fails_the_audit(run_copy):
    shutil.rmtree(run_copy / "ledger" / "blobs")
    (run_copy / "ledger" / "blobs").mkdir()
    report = audit(run_copy / "ledger" / "ledger.json")
    assert len([p for p in report.problems if "no blob" in p]) == len(report.accepted)


@pytest.mark.parametrize("forgery, found", [
    ("flip_vote", "differ from the chain's"), ("flip_accepted", "the chain says"), ("proposer", "the chain says"),
    ("tx_hash", "emitted no event"), ("model_hash", "not the one on chain"), ("drop_round", "more closed rounds"),
])
def test_a_forged_results_file_fails_the_audit(run_copy, forgery, found):
    data = json.loads((run_copy / "results.json").read_text())
    rounds = data["rounds"]
    if forgery == "flip_vote":
        rounds[0]["votes"][1] = not rounds[0]["votes"][1]
    elif forgery == "flip_accepted":
        rounds[1]["accepted"] = not rounds[1]["accepted"]
    elif forgery == "proposer":
        rounds[2]["proposer"] = (rounds[2]["proposer"] + 1) % 3
    elif forgery == "tx_hash":
        data["extra"]["ledger"]["rounds"][0]["txs"][1]["tx"] = "0x" + "ab" * 32
    elif forgery == "model_hash":
        data["extra"]["ledger"]["rounds"][1]["model_hash"] = "0x" + "cd" * 32
    else:
        rounds.pop()
    (run_copy / "results.json").write_text(json.dumps(data))
    report = audit(run_copy / "ledger" / "ledger.json", results=load(run_copy))
    assert len(report.problems) == 1 and found in report.problems[0]
    result = CliRunner().invoke(app, ["audit", str(run_copy)])
    assert result.exit_code == 1


def test_a_forged_journal_cannot_be_replayed(run_copy):
    path = run_copy / "ledger" / "ledger.json"
    export = json.loads(path.read_text())
    raw = export["journal"][3]["raw"]
    export["journal"][3]["raw"] = raw[:-4] + ("0000" if raw[-4:] != "0000" else "1111")  # break the signature
    path.write_text(json.dumps(export))
    with pytest.raises(LedgerError, match="journal entry 3"):
        audit(path)
    result = CliRunner().invoke(app, ["audit", str(run_copy)])
    assert result.exit_code == 1 and "cannot be replayed" in result.output


def test_an_rpc_run_needs_the_url_and_a_missing_export_is_a_usage_error(run_copy, tmp_path):
    path = run_copy / "ledger" / "ledger.json"
    export = json.loads(path.read_text())
    export["chain"] = "rpc"
    path.write_text(json.dumps(export))
    with pytest.raises(LedgerError, match="rpc-url"):
        audit(path)
    result = CliRunner().invoke(app, ["audit", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "ledger.json" in result.output


def seed_derived_keys(n: int, seed: int) -> list:
    """The keys the embedded chain used to derive from the seed written in results.json (the attack's keys)."""
    import hashlib

    from eth_account import Account

    return [Account.from_key(hashlib.sha256(f"colearn-ledger:{seed}:{i}".encode()).digest()) for i in range(n)]


def test_embedded_keys_are_random_per_run_not_derived_from_the_seed(honest_run):
    from colearn.ledger.chain import throwaway_keys

    learners = load(honest_run).extra["ledger"]["learners"]
    assert learners != [k.address for k in seed_derived_keys(3, 5)]
    first, second = throwaway_keys(2), throwaway_keys(2)
    assert {a.address for a in first}.isdisjoint({a.address for a in second})


@pytest.fixture(scope="module")
def forged_run(tmp_path_factory, monkeypatch_module):
    """The same experiment re-run and re-signed with keys derived from the seed in results.json."""
    from colearn.ledger import backend as backend_module

    out = tmp_path_factory.mktemp("forged-run")
    monkeypatch_module.setattr(backend_module, "throwaway_keys", lambda n: seed_derived_keys(n, 5))
    config = RunConfig(learner=register_softmax(), n_learners=3, n_rounds=3, seed=5, vote_threshold=0.5,
                       backend="ledger", backend_options={"workdir": str(out / "ledger")})
    run(config).save(out / "results.json")
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_a_history_re_signed_with_seed_derived_keys_fails_the_audit(run_copy, forged_run):
    """The attacker replaces the journal and the results but must keep the published learner addresses."""
    honest = json.loads((run_copy / "ledger" / "ledger.json").read_text())
    forged = json.loads((forged_run / "ledger" / "ledger.json").read_text())
    forged_results = json.loads((forged_run / "results.json").read_text())
    forged["learners"] = honest["learners"]
    forged_results["extra"]["ledger"]["learners"] = honest["learners"]
    (run_copy / "ledger" / "ledger.json").write_text(json.dumps(forged))
    (run_copy / "results.json").write_text(json.dumps(forged_results))
    shutil.copytree(forged_run / "ledger" / "blobs", run_copy / "ledger" / "blobs", dirs_exist_ok=True)
    with pytest.raises(LedgerError, match="journal entry 0 cannot be replayed: signed by 0x"):
        audit(run_copy / "ledger" / "ledger.json", results=load(run_copy))
    result = CliRunner().invoke(app, ["audit", str(run_copy)])
    assert result.exit_code == 1 and "not by one of the learners" in result.output


def test_a_forgery_that_renames_the_learners_needs_the_pinned_addresses_and_the_audit_says_so(run_copy, forged_run):
    honest_learners = json.loads((run_copy / "ledger" / "ledger.json").read_text())["learners"]
    shutil.rmtree(run_copy)
    shutil.copytree(forged_run, run_copy)  # everything replaced, addresses too: the files agree with each other
    report = audit(run_copy / "ledger" / "ledger.json", results=load(run_copy))
    assert report.ok and any("cannot prove" in line for line in report.scope)
    pinned = audit(run_copy / "ledger" / "ledger.json", results=load(run_copy), expected_learners=honest_learners)
    assert any("not the expected ones" in p for p in pinned.problems)
    result = CliRunner().invoke(app, ["audit", str(run_copy), "--learners", ",".join(honest_learners)])
    assert result.exit_code == 1 and "not the expected ones" in result.output
    result = CliRunner().invoke(app, ["audit", str(run_copy)])
    assert result.exit_code == 0 and "cannot prove" in result.output


def test_a_results_file_with_a_dissenting_vote_cut_out_is_refused(run_copy):
    data = json.loads((run_copy / "results.json").read_text())
    votes = data["rounds"][2]["votes"]  # round 2: learner 0 voted against; keep only the votes before the dissent
    assert False in votes
    data["rounds"][2]["votes"] = votes[:votes.index(False)]
    with pytest.raises(ValueError, match="round 2: votes has"):  # a vote list shorter than the learners
        ExperimentResults.model_validate(data)
    del data["rounds"][2]["votes"][-1:]
    data["rounds"][2]["votes"] = [vote if vote is not False else True for vote in votes]  # the dissent rewritten
    (run_copy / "results.json").write_text(json.dumps(data))
    report = audit(run_copy / "ledger" / "ledger.json", results=ExperimentResults.model_validate(data))
    assert any("differ from the chain's" in p for p in report.problems), report.problems
    result = CliRunner().invoke(app, ["audit", str(run_copy)])
    assert result.exit_code == 1


@pytest.mark.parametrize("forgery, found", [
    ("n_learners", "learners, the contract has"), ("threshold", "vote threshold"),
])
def test_results_are_bound_to_the_learner_count_and_the_threshold(run_copy, forgery, found):
    data = json.loads((run_copy / "results.json").read_text())
    if forgery == "n_learners":  # learner 2 cut out consistently, so that the file itself loads
        data["n_learners"] = 2
        data["rounds"] = [r for r in data["rounds"] if r["proposer"] != 2]
        for holder in [data, *data["rounds"]]:
            for key, value in holder.items():
                if isinstance(value, list) and len(value) == 3:
                    holder[key] = value[:2]
    else:
        data["config"]["protocol"]["vote_threshold"] = 0.4
    (run_copy / "results.json").write_text(json.dumps(data))
    report = audit(run_copy / "ledger" / "ledger.json", results=ExperimentResults.model_validate(data))
    assert any(found in p for p in report.problems), report.problems


def test_the_audit_binds_results_to_each_rounds_learner_count_when_learners_join():
    """Learner 3 joins during round 0: the audit reads round 0 over 3 learners and round 1 over 4, and refuses a
    results file that records a vote in a round its learner was not part of, or a join that claims another
    first round."""
    from colearn.ledger.audit import AuditReport, check_results, check_tallies, collect_rounds
    from colearn.ledger.chain import read_events
    from colearn.results import RoundRecord
    from tests.test_ledger_contract import HASH, Deployment

    d = Deployment(n=3, max_learners=5)
    d.send(0, d.f.propose(0, HASH))
    d.send(0, d.f.admit(d.keys[3].address))
    d.finalize(1, 0, [d.sign(1, 0, True), d.sign(2, 0, True)])
    d.send(1, d.f.propose(1, HASH))
    d.finalize(1, 1, [d.sign(0, 1, True), d.sign(2, 1, False), d.sign(3, 1, True)])
    events = read_events(d.contract)

    def audited(events, results=None) -> AuditReport:
        report = AuditReport()
        config = collect_rounds(events, report, d.chain.chain_id, d.contract.address)
        check_tallies(config, report)
        if results is not None:
            check_results(results, config, d.contract.address, report)
        return report

    report = audited(events)
    assert report.problems == [] and [r.n_learners for r in report.rounds] == [3, 4, 4]
    assert report.joined == [{"index": 3, "learner": d.keys[3].address, "first_round": 1}]

    def record(r: int, proposer: int, votes: list, approvals: int, rejections: int) -> RoundRecord:
        n = len(votes)
        return RoundRecord(round_index=r, proposer=proposer, accepted=True, votes=votes, vote_errors=[None] * n,
                           proposal_vote_scores=[None] * n, proposal_test_scores=[None] * n,
                           held_vote_scores=[None] * n, held_test_scores=[None] * n, approvals=approvals,
                           rejections=rejections)

    def results(n: int, round0: list, round1: list) -> ExperimentResults:
        protocol = {"vote_threshold": 0.5, "tally_rule": "quorum", "quorum": 0.5}
        return ExperimentResults(n_learners=n, config={"protocol": protocol},
                                 rounds=[record(0, 0, round0, 2, 0), record(1, 1, round1, 2, 1)])

    honest = results(5, [None, True, True, None, None], [True, None, False, True, None])
    assert audited(events, honest).problems == []
    early = results(5, [None, True, True, True, None], [True, None, False, True, None])  # learner 3 in round 0
    assert any("learners [3] were not learners of this round (it had 3)" in p for p in audited(events, early).problems)
    short = results(4, [None, True, True, None], [True, None, False, True])  # not the cap's columns
    assert any("4 learners, the contract has 5" in p for p in audited(events, short).problems)
    moved = [dict(e, args=dict(e["args"], first_round=0)) if e["name"] == "LearnerJoined" else e for e in events]
    assert any("counts from round 0" in p for p in audited(moved).problems)
