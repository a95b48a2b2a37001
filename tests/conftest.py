"""Fixtures shared by several test modules."""
import pytest

from colearn.data import load_task, split_learner_data


@pytest.fixture(scope="module")
def iris3():
    """Iris split among three learners (seed 0)."""
    return split_learner_data(load_task("iris"), 3, seed=0)
