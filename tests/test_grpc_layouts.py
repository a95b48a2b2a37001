"""Which weights a learner server lets through: the learner's ``mli_check_layout`` decides, from the header."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("grpc")
pytest.importorskip("sklearn")

from colearn.encoding import weights_digest  # noqa: E402
from colearn.grpc.client import RemoteLearner, RemoteLearnerError  # noqa: E402
from colearn.grpc.server import serve  # noqa: E402
from colearn.learner_utils import WeightsMismatchError  # noqa: E402
from colearn.ml_interface import Weights  # noqa: E402
from colearn_other.random_forest import RandomForestLearner, check_forest_arrays  # noqa: E402
from tests.grpc_learners import SoftmaxLearner, learner_datas  # noqa: E402


def test_the_default_layout_is_the_current_weights_one():
    learner = SoftmaxLearner(learner_datas(2, 0)[0], seed=1)
    current = learner.mli_get_current_weights().weights
    learner.mli_check_layout(current)
    with pytest.raises(WeightsMismatchError):
        learner.mli_check_layout({key: np.zeros((1, 1)) for key in current})


def test_a_served_forest_takes_proposals_of_any_size_and_refuses_other_kinds(iris3):
    """A forest grows by each proposal, so its layout is its kind (names, dtypes, classes), not its size."""
    served = RandomForestLearner(iris3[0], seed=0, n_trees_per_proposal=3)
    proposer = RandomForestLearner(iris3[1], seed=1, n_trees_per_proposal=5)
    proposal = proposer.mli_propose_weights()
    assert len(proposal.weights["left_child"]) != len(served.mli_get_current_weights().weights["left_child"])
    local_verdict = served.mli_test_weights(proposal)
    before = weights_digest(served.mli_get_current_weights().weights)
    with serve(served, port=0) as server:
        remote = RemoteLearner(f"127.0.0.1:{server.port}", timeout=30)
        verdict = remote.mli_test_weights(proposal)
        assert (verdict.vote_score, verdict.vote) == (local_verdict.vote_score, local_verdict.vote)
        wrong_classes = dict(proposal.weights, value=np.zeros((len(proposal.weights["left_child"]), 4)))
        short = dict(proposal.weights, feature=proposal.weights["feature"][:-1])
        for bad, match in ((wrong_classes, r"value: shape .* \(3 classes\)"), (short, "feature: shape")):
            with pytest.raises(RemoteLearnerError, match=match) as refused:
                remote.mli_test_weights(Weights(weights=bad))
            assert refused.value.code.name == "INVALID_ARGUMENT"
        remote.mli_accept_weights(proposal)
        assert weights_digest(served.mli_get_current_weights().weights) != before
        remote.close()


def test_forest_node_counts_must_add_up_to_the_nodes(iris3):
    learner = RandomForestLearner(iris3[0], seed=0, n_trees_per_proposal=3)
    weights = dict(learner.mli_propose_weights().weights)
    weights["node_count"] = weights["node_count"] + 1
    with pytest.raises(WeightsMismatchError, match="add up to"):
        check_forest_arrays(weights, learner.n_features, learner.n_classes, learner.max_trees)


class CountingCopies(SoftmaxLearner):
    """Counts how often the server fetches (copies) the current weights."""

    fetched = 0

    def mli_get_current_weights(self):
        self.fetched += 1
        return super().mli_get_current_weights()


def test_the_server_remembers_the_layout_and_asks_again_before_refusing():
    learner = CountingCopies(learner_datas(2, 0)[0], seed=1)
    weights = learner.mli_propose_weights()
    with serve(learner, port=0) as server:
        remote = RemoteLearner(f"127.0.0.1:{server.port}", timeout=30)
        for _ in range(4):
            remote.mli_test_weights(weights)
        assert learner.fetched == 1  # one copy for the first upload, none for the next three
        grown = {**weights.weights, "pad": np.zeros(3, np.float32)}
        with pytest.raises(RemoteLearnerError, match="keys"):
            remote.mli_test_weights(Weights(weights=grown))
        assert learner.fetched == 2  # asked again before refusing
        learner.weights = dict(grown)  # the model's layout changes: the server follows it
        remote.mli_test_weights(Weights(weights=grown))
        with pytest.raises(RemoteLearnerError, match="keys"):
            remote.mli_test_weights(weights)
        remote.close()


def test_layout_of_keeps_what_check_layout_compares_without_the_data():
    from colearn.learner_utils import check_layout, layout_of

    value = {"W": np.ones((300, 400), np.float32), "rest": [np.arange(3), (np.float64(2.0), "s", None)]}
    layout = layout_of(value)
    assert layout["W"].shape == (300, 400) and layout["W"].dtype == np.float32 and layout["W"].strides == (0, 0)
    assert not layout["W"].flags.writeable and isinstance(layout["rest"][1], tuple)
    check_layout(value, layout)
    check_layout(layout, value)
    with pytest.raises(WeightsMismatchError, match="float64"):
        check_layout({**value, "W": np.ones((300, 400))}, layout)
