"""Embedded tasks, local-file loaders and seeded splits."""
from __future__ import annotations

import numpy as np
import pytest

from colearn.data import (DataFileError, LearnerData, TASKS, class_histogram, load_csv, load_npz, load_task,
                          partition_indices, split_learner_data)
from colearn.data.tasks import Task


# --- tasks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TASKS))
def test_embedded_tasks_are_scaled_and_encoded(name):
    task = load_task(name)
    assert task.name == name
    assert task.x.dtype == np.float32 and task.y.dtype == np.int64
    assert task.x.min() >= 0.0 and task.x.max() <= 1.0
    assert set(np.unique(task.y)) == set(range(task.n_classes))
    assert len(task.x) == len(task.y) == task.n_samples


def test_digits_is_the_default_and_keeps_its_image_shape():
    task = load_task()
    assert task.name == "digits" and task.image_shape == (8, 8) and task.n_features == 64
    assert task.n_classes == 10
    assert load_task("iris").image_shape is None


def test_unknown_task_names_the_task_and_the_choices():
    with pytest.raises(ValueError, match=r"'mnist'.*breast_cancer.*digits.*iris.*wine"):
        load_task("mnist")


# --- partition_indices -------------------------------------------------------------------------
def _labels(n_per_class=100, n_classes=10):
    return np.repeat(np.arange(n_classes), n_per_class)


@pytest.mark.parametrize("partition", ["iid", "dirichlet", "shards"])
def test_partitions_are_disjoint_and_cover_everything(partition):
    y = _labels()
    shares = partition_indices(y, 7, partition=partition, alpha=0.5, seed=3)
    assert len(shares) == 7
    joined = np.concatenate(shares)
    assert len(joined) == len(y) and set(joined.tolist()) == set(range(len(y)))


def test_iid_sizes_and_class_mix_are_balanced():
    y = _labels(101, 10)
    shares = partition_indices(y, 6, partition="iid", seed=0)
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1
    counts = np.array([np.bincount(y[s], minlength=10) for s in shares])
    assert counts.max() - counts.min() <= 1


def _skew(shares, y, n_classes=10):
    """Mean over learners of the largest class fraction (1/n_classes for perfectly mixed shares)."""
    return float(np.mean([np.bincount(y[s], minlength=n_classes).max() / max(len(s), 1) for s in shares]))


def test_dirichlet_skew_grows_as_alpha_shrinks():
    y = _labels(200, 10)
    skews = [np.mean([_skew(partition_indices(y, 5, partition="dirichlet", alpha=a, seed=s), y) for s in range(5)])
             for a in (100.0, 1.0, 0.05)]
    assert skews[0] < skews[1] < skews[2]
    assert skews[0] < 0.2 and skews[2] > 0.4  # mixed: ~0.1; a few classes per learner: much more


def test_shards_give_each_learner_few_classes():
    y = _labels(100, 10)
    shares = partition_indices(y, 5, partition="shards", shards_per_learner=2, seed=1)
    assert all(len(np.unique(y[s])) <= 3 for s in shares)  # 2 shards; a shard may straddle a class boundary
    assert all(len(s) == 200 for s in shares)


def test_partitions_are_seeded():
    y = _labels()
    for partition in ("iid", "dirichlet", "shards"):
        a = partition_indices(y, 4, partition=partition, seed=11)
        b = partition_indices(y, 4, partition=partition, seed=11)
        c = partition_indices(y, 4, partition=partition, seed=12)
        assert all(np.array_equal(p, q) for p, q in zip(a, b))
        assert not all(np.array_equal(p, q) for p, q in zip(a, c))


@pytest.mark.parametrize("kwargs, match", [
    ({"n_learners": 0}, "n_learners"),
    ({"n_learners": 2.5}, "n_learners"),
    ({"n_learners": 3, "partition": "random"}, "partition"),
    ({"n_learners": 3, "partition": "dirichlet", "alpha": 0}, "alpha"),
    ({"n_learners": 3, "partition": "dirichlet", "alpha": float("nan")}, "alpha"),
    ({"n_learners": 3, "partition": "shards", "shards_per_learner": 0}, "shards_per_learner"),
    ({"n_learners": 600, "partition": "shards", "shards_per_learner": 2}, "shards"),
    ({"n_learners": 2000}, "n_learners"),
])
def test_partition_arguments_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        partition_indices(_labels(), **kwargs)


# --- split_learner_data ------------------------------------------------------------------------
def test_split_learner_data_fractions_and_stratification():
    task = load_task("digits")
    datas = split_learner_data(task, 5, seed=0, fractions=(0.6, 0.2, 0.2))
    assert len(datas) == 5 and all(isinstance(d, LearnerData) for d in datas)
    assert sum(len(d.y_train) + len(d.y_vote) + len(d.y_test) for d in datas) == task.n_samples
    for d in datas:
        total = len(d.y_train) + len(d.y_vote) + len(d.y_test)
        assert abs(len(d.y_train) - 0.6 * total) <= 1 and abs(len(d.y_vote) - 0.2 * total) <= 1
        assert d.n_classes == 10 and d.image_shape == (8, 8) and d.x_train.dtype == np.float32
        # stratified: every class appears in the vote set in proportion (about 7 per class here)
        assert np.bincount(d.y_vote, minlength=10).min() >= 5
    # disjoint across subsets and learners: no row appears twice
    rows = np.concatenate([np.concatenate([d.x_train, d.x_vote, d.x_test]) for d in datas])
    assert len(np.unique(rows, axis=0)) == len(np.unique(task.x, axis=0))


def test_split_learner_data_is_seeded():
    task = load_task("wine")
    a = split_learner_data(task, 3, partition="dirichlet", alpha=1.0, seed=5)
    b = split_learner_data(task, 3, partition="dirichlet", alpha=1.0, seed=5)
    c = split_learner_data(task, 3, partition="dirichlet", alpha=1.0, seed=6)
    assert all(np.array_equal(p.y_train, q.y_train) and np.array_equal(p.x_vote, q.x_vote) for p, q in zip(a, b))
    assert not all(np.array_equal(p.y_train, q.y_train) for p, q in zip(a, c))


def test_a_split_that_starves_a_learner_is_refused_naming_it():
    task = load_task("iris")
    with pytest.raises(ValueError) as info:
        split_learner_data(task, 40, partition="dirichlet", alpha=0.05, seed=0)
    message = str(info.value)
    assert message.startswith("learner ") and "dirichlet alpha=0.05" in message
    assert "raise alpha or lower n_learners" in message
    learner = int(message.split()[1])
    assert 0 <= learner < 40
    # the named learner really is the one that is short of data
    shares = partition_indices(task.y, 40, partition="dirichlet", alpha=0.05, seed=0)
    assert f"gets {len(shares[learner])} sample" in message


def test_iid_refusal_says_lower_n_learners():
    with pytest.raises(ValueError,
                       match=r"learner \d+ gets 2 samples under iid; its (vote|test) set .*lower n_learners"):
        split_learner_data(load_task("iris"), 75, seed=0)


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.6, 0.3, 0.3), (0.8, 0.2, 0.0), (1.2, -0.1, -0.1)])
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(ValueError, match="fractions"):
        split_learner_data(load_task("iris"), 2, fractions=fractions)


def test_class_histogram_counts_each_learners_classes():
    datas = split_learner_data(load_task("iris"), 3, seed=0)
    hist = class_histogram(datas, "all")
    assert hist.shape == (3, 3) and hist.sum() == 150
    assert np.array_equal(class_histogram(datas, "train")[0], np.bincount(datas[0].y_train, minlength=3))


# --- loaders -----------------------------------------------------------------------------------
def test_load_csv_with_named_string_target(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text("a,species,b\n1,setosa,10\n3,virginica,30\n2,setosa,20\n5,versicolor,50\n")
    task = load_csv(path, target="species")
    assert isinstance(task, Task) and task.name == "flowers"
    assert task.class_names == ("setosa", "versicolor", "virginica")
    assert task.y.tolist() == [0, 2, 0, 1] and task.y.dtype == np.int64
    assert task.x.dtype == np.float32 and task.x.shape == (4, 2)
    assert np.allclose(task.x[:, 0], [0, 0.5, 0.25, 1.0]) and task.x.max() <= 1.0


def test_load_csv_by_index_without_header_and_numeric_labels(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("0.1;0.2;7\n0.3;0.4;3\n\n0.5;0.6;7\n")
    task = load_csv(path, target=-1, header=False, delimiter=";", scale="none")
    assert task.class_names == ("3", "7") and task.y.tolist() == [1, 0, 1]
    assert np.allclose(task.x, [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])


def test_load_csv_errors_name_file_line_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("x1,x2,label\n1,2,a\n1,oops,b\n")
    with pytest.raises(DataFileError, match=r"bad\.csv, line 3, column 'x2': 'oops' is not a number"):
        load_csv(path)
    with pytest.raises(DataFileError, match=r"bad\.csv: no target column 'target'; columns are"):
        load_csv(path, target="target")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("x,label\n1,a\n2\n")
    with pytest.raises(DataFileError, match=r"ragged\.csv, line 3: 1 fields, expected 2"):
        load_csv(ragged)
    one_class = tmp_path / "one.csv"
    one_class.write_text("x,label\n1,a\n2,a\n")
    with pytest.raises(DataFileError, match=r"one\.csv, column 'label'.*at least 2 classes"):
        load_csv(one_class)
    with pytest.raises(DataFileError, match="no such file"):
        load_csv(tmp_path / "missing.csv")


def test_load_npz_flattens_images_and_scales(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(12, 4, 4)).astype(np.uint8)
    y = np.array(["cat", "dog", "cat"] * 4)
    path = tmp_path / "images.npz"
    np.savez(path, x=x, y=y)
    task = load_npz(path)
    assert task.image_shape == (4, 4) and task.x.shape == (12, 16) and task.x.dtype == np.float32
    assert task.x.min() == 0.0 and task.x.max() == 1.0
    assert task.class_names == ("cat", "dog") and task.y.tolist() == [0, 1, 0] * 4
    datas = split_learner_data(task, 2, seed=0, fractions=(0.5, 0.25, 0.25))
    assert datas[0].image_shape == (4, 4)


def test_load_npz_refuses_pickles_and_names_missing_keys(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([{"a": 1}, {"b": 2}], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DataFileError, match="objects.npz: cannot read arrays without unpickling"):
        load_npz(path)
    good = tmp_path / "good.npz"
    np.savez(good, features=np.zeros((4, 2)), labels=np.array([0, 1, 0, 1]))
    with pytest.raises(DataFileError, match=r"good\.npz: no array named 'x'; the file holds"):
        load_npz(good)
    task = load_npz(good, x_key="features", y_key="labels")
    assert task.n_classes == 2 and task.x.shape == (4, 2)
    mismatched = tmp_path / "mismatch.npz"
    np.savez(mismatched, x=np.zeros((4, 2)), y=np.array([0, 1, 0]))
    with pytest.raises(DataFileError, match=r"array 'y' has shape \(3,\); need \(4,\)"):
        load_npz(mismatched)
