"""MNIST training example using Keras, written as for colearn 0.2.x.

The only change from colearn 0.2.x's example: the data come from local MNIST-format files instead of
``tensorflow_datasets.load('mnist')`` (which downloads). Point it at a directory with the four IDX files
(``train-images-idx3-ubyte[.gz]`` ...) or at an ``mnist.npz`` (Keras' layout):

    python examples/keras_mnist.py --data /path/to/mnist
    COLEARN_MNIST=/path/to/mnist.npz python examples/keras_mnist.py --rounds 5

What the script does:
- loads MNIST from local files and splits it evenly between 5 learners
- makes a 0.2.x ``KerasLearner`` with a small CNN for each, with equal initial weights
- runs collective-learning rounds and plots scores and votes (saved to --plot under a headless backend)
"""
import argparse
import os
import sys

from colearn.data.mnist import load_mnist  # reads local MNIST files with numpy only

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data", default=os.environ.get("COLEARN_MNIST", "/tmp/mnist"),
                    help="directory of MNIST IDX files, or an .npz (default: $COLEARN_MNIST or /tmp/mnist)")
parser.add_argument("--rounds", type=int, default=20)
parser.add_argument("--plot", default=None, help="where ColearnPlot saves its figure when no window can open")
args = parser.parse_args()

# Load the data before importing the framework, so that --help and a missing file answer at once.
# (0.2.x: tfds.load('mnist', split=tfds.even_splits('train', n=n_learners), ...) downloaded them.)
try:
    mnist = load_mnist(args.data)
except (OSError, ValueError) as exc:
    sys.exit(f"error: {exc}: put the MNIST files there (train-images-idx3-ubyte[.gz] and the three others, "
             f"or an mnist.npz), or pass --data PATH / set COLEARN_MNIST")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from colearn.training import initial_result, collective_learning_round, set_equal_weights  # noqa: E402
from colearn.utils.plot import ColearnPlot  # noqa: E402
from colearn.utils.results import Results, print_results  # noqa: E402
from colearn_keras.keras_learner import KerasLearner  # noqa: E402
from colearn_keras.utils import normalize_img  # noqa: E402


n_learners = 5
vote_threshold = 0.5
vote_batches = 2

n_rounds = args.rounds
width = 28
height = 28
n_classes = 10
l_rate = 0.001
batch_size = 64


def even_splits(images, labels, n):
    return [tf.data.Dataset.from_tensor_slices((x[..., np.newaxis], y))
            for x, y in zip(np.array_split(images, n), np.array_split(labels.astype(np.int64), n))]


train_datasets = even_splits(mnist.x_train, mnist.y_train, n_learners)
n_datapoints = len(mnist.x_train)
test_datasets = even_splits(mnist.x_test, mnist.y_test, n_learners)
vote_datasets = []

for i in range(n_learners):
    ds_train = train_datasets[i].map(normalize_img, num_parallel_calls=tf.data.experimental.AUTOTUNE)
    ds_train = ds_train.shuffle(n_datapoints // n_learners)
    ds_train = ds_train.batch(batch_size)
    train_datasets[i] = ds_train.prefetch(tf.data.experimental.AUTOTUNE)

    # half of each learner's test share is its vote set
    n_test = len(mnist.x_test) // n_learners
    ds_test = test_datasets[i].map(normalize_img, num_parallel_calls=tf.data.experimental.AUTOTUNE)
    ds_vote = ds_test.take(n_test // 2).batch(batch_size).cache()
    ds_test = ds_test.skip(n_test // 2).batch(batch_size).cache()
    vote_datasets.append(ds_vote.prefetch(tf.data.experimental.AUTOTUNE))
    test_datasets[i] = ds_test.prefetch(tf.data.experimental.AUTOTUNE)


def get_model():
    input_img = tf.keras.Input(shape=(width, height, 1), name="Input")
    x = tf.keras.layers.Conv2D(32, (3, 3), activation="relu", padding="same", name="Conv1_1")(input_img)
    x = tf.keras.layers.BatchNormalization(name="bn1")(x)
    x = tf.keras.layers.MaxPooling2D((2, 2), name="pool1")(x)
    x = tf.keras.layers.Conv2D(64, (3, 3), activation="relu", padding="same", name="Conv2_1")(x)
    x = tf.keras.layers.BatchNormalization(name="bn4")(x)
    x = tf.keras.layers.MaxPooling2D((2, 2), name="pool2")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = tf.keras.layers.Dense(n_classes, activation="softmax", name="fc1")(x)
    model = tf.keras.Model(inputs=input_img, outputs=x)

    opt = tf.keras.optimizers.Adam(learning_rate=l_rate)
    model.compile(
        loss="sparse_categorical_crossentropy",
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
        optimizer=opt)
    return model


all_learner_models = []
for i in range(n_learners):
    all_learner_models.append(KerasLearner(
        model=get_model(),
        train_loader=train_datasets[i],
        vote_loader=vote_datasets[i],
        test_loader=test_datasets[i],
        criterion="sparse_categorical_accuracy",
        minimise_criterion=False,
        model_evaluate_kwargs={"steps": vote_batches},
    ))

set_equal_weights(all_learner_models)

results = Results()
# Get initial score
results.data.append(initial_result(all_learner_models))

plot = ColearnPlot(score_name=all_learner_models[0].criterion)

for round_index in range(n_rounds):
    results.data.append(
        collective_learning_round(all_learner_models,
                                  vote_threshold, round_index)
    )

    print_results(results)
    plot.plot_results_and_votes(results)

if args.plot:
    plot.save(args.plot)
plot.block()

print("Colearn Example Finished!")
