"""scikit-learn learners: isolation, no aliasing, weight validation, caching, determinism, forests."""
from __future__ import annotations

import numpy as np
import pytest

from colearn.data import load_task, split_learner_data
from colearn.encoding import decode_weights, encode_weights, iter_arrays, weights_digest
from colearn.experiment import Experiment
from colearn.learner_utils import WeightsMismatchError
from colearn.ml_interface import ModelFormat, Weights
from colearn.protocol import ProtocolConfig
from colearn.registry import make_learner
from colearn.baseline import format_comparison, train_alone_baseline
from colearn_other.random_forest import RandomForestLearner, load_skops_forest, make_random_forest_learner
from colearn_other.sklearn_learner import SKLearnLearner, make_mlp_learner, make_sgd_learner


@pytest.fixture(scope="module")
def digits3():
    return split_learner_data(load_task("digits"), 3, seed=0)


def snapshot(learner):
    """Digest of the held weights plus the held scores: what must not change."""
    return weights_digest(learner.mli_get_current_weights().weights), learner.current_scores


def model_arrays(learner):
    """Every numpy array reachable from the learner's held estimator's weight attributes."""
    return list(iter_arrays(learner.state.extract(learner.model))) + [
        value for value in vars(learner.model).values() if isinstance(value, np.ndarray)]


SGD_MAKERS = [pytest.param(lambda d, s: make_sgd_learner(d, seed=s), id="sgd-averaged"),
              pytest.param(lambda d, s: make_sgd_learner(d, seed=s, average=False, features="none"), id="sgd-plain"),
              pytest.param(lambda d, s: make_mlp_learner(d, seed=s, epochs_per_proposal=2), id="mlp")]


# --- isolation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make", SGD_MAKERS)
def test_propose_and_test_leave_the_held_model_unchanged_accept_changes_it(digits3, make):
    learner = make(digits3[0], 0)
    before = snapshot(learner)
    proposal = learner.mli_propose_weights()
    assert snapshot(learner) == before
    assert weights_digest(proposal.weights) != before[0]
    verdict = learner.mli_test_weights(proposal)
    assert snapshot(learner) == before
    assert verdict.vote in (True, False) and 0.0 <= verdict.vote_score <= 1.0
    learner.mli_accept_weights(proposal)
    assert weights_digest(learner.mli_get_current_weights().weights) == weights_digest(proposal.weights)
    assert learner.current_scores == (verdict.vote_score, verdict.test_score)


@pytest.mark.parametrize("make", SGD_MAKERS)
def test_weights_are_copied_never_aliased(digits3, make):
    """colearn 0.2.8 handed out the model's own coef_: accepting one proposal tied every learner's model
    to the same arrays, so later training (or any mutation) changed them all. None of that here."""
    a, b, c = (make(d, i) for i, d in enumerate(digits3))
    proposal = a.mli_propose_weights()
    assert not any(np.shares_memory(w, m) for w in iter_arrays(proposal.weights) for m in model_arrays(a))
    b.mli_accept_weights(proposal)
    c.mli_accept_weights(proposal)  # the same Weights object, as the in-process backend passes it
    held_b, held_c = snapshot(b), snapshot(c)
    assert held_b[0] == held_c[0]
    for array in iter_arrays(proposal.weights):  # the sender (or anyone) scribbles on the proposal
        array[...] = 7
    assert snapshot(b) == held_b and snapshot(c) == held_c
    assert not any(np.shares_memory(x, y) for x in model_arrays(b) for y in model_arrays(c))
    b.mli_accept_weights(b.mli_propose_weights())  # b trains on: c and a must not notice
    assert snapshot(c) == held_c and weights_digest(b.mli_get_current_weights().weights) != held_c[0]
    exported = c.mli_get_current_weights()
    for array in iter_arrays(exported.weights):
        array[...] = -1
    assert snapshot(c) == held_c


def test_no_two_learners_share_arrays_after_an_experiment(digits3):
    learners = [make_sgd_learner(d, seed=i) for i, d in enumerate(digits3)]
    results = Experiment(learners, ProtocolConfig()).run(4)
    assert results.n_accepted >= 1
    for i in range(3):
        for j in range(i + 1, 3):
            assert not any(np.shares_memory(x, y) for x in model_arrays(learners[i]) for y in model_arrays(learners[j]))


def test_callers_estimator_is_never_touched(digits3):
    from sklearn.linear_model import SGDClassifier

    shared = SGDClassifier(loss="log_loss", random_state=0)
    first, second = SKLearnLearner(shared, digits3[0]), SKLearnLearner(shared, digits3[1])
    assert not hasattr(shared, "coef_")  # both learners work on copies
    first.mli_accept_weights(first.mli_propose_weights())
    assert not np.shares_memory(first.model.coef_, second.model.coef_)


# --- validation ----------------------------------------------------------------------------------
def _tamper(weights, how):
    w = {k: ([a.copy() for a in v] if isinstance(v, list) else v.copy()) for k, v in weights.items()}
    key = next(k for k, v in w.items() if not isinstance(v, list) and v.ndim == 2)
    if how == "shape":
        w[key] = w[key][:, :-1]
    elif how == "dtype":
        w[key] = w[key].astype(np.float16)
    elif how == "missing":
        del w[key]
    elif how == "extra":
        w["evil"] = np.zeros(3)
    elif how == "nan":
        w[key][0, 0] = np.nan
    elif how == "list":
        w[key] = [w[key]]
    elif how == "not-a-dict":
        return list(w.values())
    return w


@pytest.mark.parametrize("how, match", [
    ("shape", r"weight \w+: shape \(\d+, \d+\) does not match the model's"),
    ("dtype", r"weight \w+: dtype float16 does not match"),
    ("missing", r"weight names differ .*missing \['\w+'\]"),
    ("extra", r"unexpected \['evil'\]"),
    ("nan", r"weight \w+: contains NaN"),
    ("list", r"weight \w+: expected one array, got a list"),
    ("not-a-dict", r"weights must be a dict"),
])
def test_bad_weights_are_refused_and_state_is_unchanged(digits3, how, match):
    learner = make_sgd_learner(digits3[0], seed=0)
    good = learner.mli_propose_weights().weights
    learner.mli_accept_weights(Weights(weights=good))
    before = snapshot(learner)
    bad = Weights(weights=_tamper(good, how))
    with pytest.raises(WeightsMismatchError, match=match):
        learner.mli_test_weights(bad)
    with pytest.raises(WeightsMismatchError, match=match):
        learner.mli_accept_weights(bad)
    assert snapshot(learner) == before


def test_mlp_layer_lists_are_validated(digits3):
    learner = make_mlp_learner(digits3[0], seed=0, epochs_per_proposal=1)
    weights = learner.mli_propose_weights().weights
    assert isinstance(weights["coefs_"], list) and "adam_m" in weights
    before = snapshot(learner)
    short = dict(weights, coefs_=weights["coefs_"][:1])
    with pytest.raises(WeightsMismatchError, match=r"weight coefs_: expected a list of 2 arrays, got 1"):
        learner.mli_accept_weights(Weights(weights=short))
    wrong = dict(weights, coefs_=[weights["coefs_"][0], weights["coefs_"][1][:5]])
    with pytest.raises(WeightsMismatchError, match=r"weight coefs_\[1\]: shape"):
        learner.mli_test_weights(Weights(weights=wrong))
    assert snapshot(learner) == before


def test_weights_survive_the_typed_wire_encoding(digits3):
    a, b = make_sgd_learner(digits3[0], seed=0), make_sgd_learner(digits3[1], seed=1)
    proposal = a.mli_propose_weights()
    received = Weights(weights=decode_weights(encode_weights(proposal.weights)))
    direct, wired = b.mli_test_weights(proposal), b.mli_test_weights(received)
    assert (direct.vote_score, direct.test_score, direct.vote) == (wired.vote_score, wired.test_score, wired.vote)


# --- scores are computed once -------------------------------------------------------------------
@pytest.mark.parametrize("factory", [make_sgd_learner, make_random_forest_learner])
def test_accept_reuses_the_scores_test_computed(digits3, factory, monkeypatch):
    proposer, voter = factory(digits3[0], seed=0), factory(digits3[1], seed=1)
    proposal = proposer.mli_propose_weights()
    calls = []
    original = voter._score
    monkeypatch.setattr(voter, "_score", lambda model: calls.append(1) or original(model))
    verdict = voter.mli_test_weights(proposal)
    after_test = len(calls)
    assert after_test >= 1  # the proposal (and, the first time, the held model) were scored
    voter.mli_accept_weights(proposal)
    assert len(calls) == after_test  # accept evaluated nothing
    assert voter.current_scores == (verdict.vote_score, verdict.test_score)
    again = voter.mli_test_weights(proposal)  # testing the same weights again is free too
    assert len(calls) == after_test and again.vote is True  # a tie with the held model approves


# --- determinism ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sgd", "sklearn-mlp", "random-forest"])
def test_same_seed_same_run(digits3, name):
    def run(seed):
        learners = [make_learner(name, d, seed=seed + i) for i, d in enumerate(digits3)]
        results = Experiment(learners, ProtocolConfig(seed=seed)).run(3)
        return [(r.proposer, r.votes, r.accepted, r.proposal_vote_scores, r.held_test_scores, r.proposal_bytes)
                for r in results.rounds]

    assert run(0) == run(0)


def test_different_seeds_train_differently(digits3):
    first = make_sgd_learner(digits3[0], seed=0).mli_propose_weights().weights
    same = make_sgd_learner(digits3[0], seed=0).mli_propose_weights().weights
    other = make_sgd_learner(digits3[0], seed=1).mli_propose_weights().weights
    assert weights_digest(first) == weights_digest(same) != weights_digest(other)


# --- other estimators, export, prediction --------------------------------------------------------
def test_any_partial_fit_estimator_with_named_weight_attributes(iris3):
    from sklearn.naive_bayes import GaussianNB

    names = ["theta_", "var_", "class_count_", "class_prior_", "epsilon_"]
    a, b = (SKLearnLearner(GaussianNB(), d, weight_attributes=names, seed=i) for i, d in enumerate(iris3[:2]))
    proposal = a.mli_propose_weights()
    assert list(proposal.weights) == names
    b.mli_accept_weights(proposal)
    assert np.array_equal(b.model.theta_, proposal.weights["theta_"]) and isinstance(b.model.epsilon_, float)
    with pytest.raises(TypeError, match="weight_attributes"):
        SKLearnLearner(GaussianNB(), iris3[0])


def test_current_model_exports_as_skops_with_its_feature_map(digits3):
    import skops.io as sio

    learner = make_sgd_learner(digits3[0], seed=0)
    learner.mli_accept_weights(learner.mli_propose_weights())
    exported = learner.mli_get_current_model()
    assert exported.model_format == ModelFormat.SKOPS
    model = sio.loads(exported.model, trusted=[t for t in sio.get_untrusted_types(data=exported.model)
                                               if t.startswith("sklearn.")])
    x = digits3[0].x_test
    assert np.array_equal(model.predict(x), learner.model.predict(learner.features.transform(x)))


def test_learner_arguments_are_validated(digits3):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import SGDClassifier

    with pytest.raises(TypeError, match="partial_fit"):
        SKLearnLearner(RandomForestClassifier(), digits3[0])
    with pytest.raises(ValueError, match="epochs_per_proposal"):
        SKLearnLearner(SGDClassifier(), digits3[0], epochs_per_proposal=0)
    with pytest.raises(ValueError, match="batch_size"):
        SKLearnLearner(SGDClassifier(), digits3[0], batch_size=0)
    with pytest.raises(ValueError, match="features"):
        make_sgd_learner(digits3[0], seed=0, features="cubic")


def test_minibatches_and_training_amount(digits3):
    learner = make_sgd_learner(digits3[0], seed=0, batch_size=16, epochs_per_proposal=2, features="none",
                               average=False)
    weights = learner.mli_propose_weights().weights
    assert float(weights["t_"]) == 1 + 2 * len(digits3[0].y_train)  # t_ counts samples seen


# --- random forest -------------------------------------------------------------------------------
def test_forest_grows_by_the_proposal_and_round_trips(iris3):
    a, b = RandomForestLearner(iris3[0], seed=0, n_trees_per_proposal=4), RandomForestLearner(iris3[1], seed=1,
                                                                                               n_trees_per_proposal=4)
    before = snapshot(a)
    proposal = a.mli_propose_weights()
    assert snapshot(a) == before and len(proposal.weights["node_count"]) == 8
    wire = Weights(weights=decode_weights(encode_weights(proposal.weights)))
    b.mli_accept_weights(wire)
    assert len(b.model.estimators_) == 8
    x = iris3[1].x_test
    candidate = a._forest_from(proposal.weights)
    assert np.array_equal(b.model.predict_proba(x), candidate.predict_proba(x))
    assert weights_digest(b.mli_get_current_weights().weights) == weights_digest(proposal.weights)


def test_forest_keeps_every_class_when_a_share_lacks_some():
    datas = split_learner_data(load_task("digits"), 5, partition="shards", shards_per_learner=1, seed=0)
    assert len(np.unique(datas[0].y_train)) < 10
    a, b = RandomForestLearner(datas[0], seed=0), RandomForestLearner(datas[1], seed=1)
    assert list(a.model.classes_) == list(range(10))
    b.mli_accept_weights(a.mli_propose_weights())
    assert b.model.predict_proba(datas[1].x_test).shape[1] == 10


@pytest.mark.parametrize("field, value, match", [
    ("left_child", 10**6, "child index outside its tree"),
    ("left_child", 0, "child index outside its tree"),  # a node pointing back at the root: a cycle
    ("feature", 99, "feature outside 0..3"),
    ("value", np.nan, "NaN"),
])
def test_forest_arrays_are_checked_before_any_tree_is_built(iris3, field, value, match):
    learner = RandomForestLearner(iris3[0], seed=0, n_trees_per_proposal=3)
    weights = learner.mli_propose_weights().weights
    before = snapshot(learner)
    bad = {k: v.copy() for k, v in weights.items()}
    internal = int(np.flatnonzero(bad["left_child"] != -1)[0])
    if field == "value":
        bad["value"][0, 0] = value
    else:
        bad[field][internal] = value
    with pytest.raises(WeightsMismatchError, match=match):
        learner.mli_test_weights(Weights(weights=bad))
    with pytest.raises(WeightsMismatchError, match=match):
        learner.mli_accept_weights(Weights(weights=bad))
    assert snapshot(learner) == before


def test_forest_refuses_wrong_layout_and_too_many_trees(iris3):
    learner = RandomForestLearner(iris3[0], seed=0, n_trees_per_proposal=3, max_trees=3)
    weights = learner.mli_get_current_weights().weights
    with pytest.raises(WeightsMismatchError, match="keys"):
        learner.mli_test_weights(Weights(weights={k: v for k, v in weights.items() if k != "value"}))
    with pytest.raises(WeightsMismatchError, match="float64 array, got float32"):
        learner.mli_test_weights(Weights(weights=dict(weights, threshold=weights["threshold"].astype(np.float32))))
    bigger = RandomForestLearner(iris3[1], seed=1, n_trees_per_proposal=3).mli_propose_weights()
    with pytest.raises(WeightsMismatchError, match="1..3 trees"):
        learner.mli_accept_weights(bigger)
    grown = learner.mli_propose_weights()  # over max_trees: the oldest trees are dropped
    assert len(grown.weights["node_count"]) == 3


def test_skops_export_loads_only_allow_listed_types(iris3):
    import os

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    learner = RandomForestLearner(iris3[0], seed=0, n_trees_per_proposal=2)
    exported = learner.mli_get_current_model()
    forest = load_skops_forest(exported.model)
    assert np.array_equal(forest.predict(iris3[0].x_test), learner.model.predict(iris3[0].x_test))
    risky = sio.dumps(FunctionTransformer(os.system))  # loading it would hand over a shell
    with pytest.raises(WeightsMismatchError, match=r"outside the allow-list: \['posix.system'\]"):
        load_skops_forest(risky)


# --- baseline and the acceptance run -------------------------------------------------------------
@pytest.mark.parametrize("name", ["sgd", "random-forest"])
def test_train_alone_baseline_works_for_registry_learners(iris3, name):
    rows = train_alone_baseline(name, iris3, seed=0, n_rounds=2)
    assert [r["learner"] for r in rows] == [0, 1, 2]
    assert all(0.0 <= r["test_score"] <= 1.0 for r in rows)
    assert rows == train_alone_baseline(name, iris3, seed=0, n_rounds=2)
    table = format_comparison([0.9, None, 1.0], rows)
    assert "collective" in table and "n/a" in table and table.count("\n") == 4


def test_pooled_baseline_scores_on_every_learners_test_set():
    datas = split_learner_data(load_task("iris"), 3, partition="shards", shards_per_learner=1, seed=0)
    rows = train_alone_baseline("sgd", datas, seed=0, n_rounds=3, pooled_test=True)
    # each learner saw (mostly) one species: it is right on its own test set and wrong on the others'
    assert all(r["pooled_test_score"] < r["test_score"] for r in rows)
    assert all(r["pooled_test_score"] < 0.7 for r in rows)
    table = format_comparison([1.0, 1.0, 1.0], rows, collective_pooled=0.95)
    assert "alone, all tests" in table and table.endswith("test sets: 0.950")


@pytest.mark.slow
def test_default_sgd_reaches_the_acceptance_accuracy_on_digits():
    """Issue 2's number: digits, 5 IID learners, 20 rounds, default protocol -> mean held test >= 0.95."""
    datas = split_learner_data(load_task("digits"), 5, seed=0)
    learners = [make_learner("sgd", d, seed=i) for i, d in enumerate(datas)]
    results = Experiment(learners, ProtocolConfig()).run(20)
    assert results.final_mean_test_score >= 0.95
    assert results.n_accepted >= 10


def test_prediction_uses_the_held_model_and_its_feature_map(digits3):
    from colearn.ml_interface import PredictionRequest

    learner = make_sgd_learner(digits3[0], seed=0)
    learner.mli_accept_weights(learner.mli_propose_weights())
    x = digits3[0].x_test[:5]
    prediction = learner.mli_make_prediction(PredictionRequest(name="digits", input_data=x.reshape(5, 8, 8)))
    assert prediction.prediction_data == learner.model.predict(learner.features.transform(x)).tolist()
