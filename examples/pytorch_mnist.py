"""MNIST training example using PyTorch, written as for colearn 0.2.x.

The only change from colearn 0.2.x's example: the data come from local MNIST-format files instead of
``torchvision.datasets.MNIST(..., download=True)``. Point it at a directory with the four IDX files
(``train-images-idx3-ubyte[.gz]`` ...) or at an ``mnist.npz``:

    python examples/pytorch_mnist.py --data /path/to/mnist
    COLEARN_MNIST=/path/to/mnist.npz python examples/pytorch_mnist.py --rounds 5

What the script does:
- loads MNIST from local files and randomly splits it between 5 learners
- makes a 0.2.x ``PytorchLearner`` with a CNN for each, with equal initial weights
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
# (0.2.x downloaded them; nothing here downloads.)
try:
    mnist = load_mnist(args.data)
except (OSError, ValueError) as exc:
    sys.exit(f"error: {exc}: put the MNIST files there (train-images-idx3-ubyte[.gz] and the three others, "
             f"or an mnist.npz), or pass --data PATH / set COLEARN_MNIST")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as nn_func  # noqa: E402
import torch.utils.data  # noqa: E402
from colearn.training import initial_result, collective_learning_round, set_equal_weights  # noqa: E402
from colearn.utils.plot import ColearnPlot  # noqa: E402
from colearn.utils.results import Results, print_results  # noqa: E402
from colearn_pytorch.utils import categorical_accuracy, prepare_data_split_list  # noqa: E402
from colearn_pytorch.pytorch_learner import PytorchLearner  # noqa: E402


# define some constants
n_learners = 5
batch_size = 64
n_rounds = args.rounds
vote_threshold = 0.5
vote_fraction = 0.5
learning_rate = 0.001
height = 28
width = 28
n_classes = 10
vote_batches = 2
score_name = "categorical accuracy"

no_cuda = False
cuda = not no_cuda and torch.cuda.is_available()
device = torch.device("cuda" if cuda else "cpu")
kwargs = {'num_workers': 1, 'pin_memory': True} if cuda else {}

# Load the data from local files and split for each learner.
train_data = torch.utils.data.TensorDataset(torch.tensor(mnist.x_train, dtype=torch.float32).unsqueeze(1) / 255.0,
                                            torch.tensor(mnist.y_train, dtype=torch.int64))
test_data = torch.utils.data.TensorDataset(torch.tensor(mnist.x_test, dtype=torch.float32).unsqueeze(1) / 255.0,
                                           torch.tensor(mnist.y_test, dtype=torch.int64))
generator = torch.Generator().manual_seed(0)

data_split = prepare_data_split_list(train_data, n_learners)
learner_train_data = torch.utils.data.random_split(train_data, data_split, generator=generator)
learner_train_dataloaders = [torch.utils.data.DataLoader(
    ds,
    batch_size=batch_size, shuffle=True, generator=generator, **kwargs) for ds in learner_train_data]

data_split = prepare_data_split_list(test_data, n_learners)
learner_test_data = torch.utils.data.random_split(test_data, data_split, generator=generator)
learner_vote_data, learner_test_data = zip(*[torch.utils.data.random_split(
    ds, prepare_data_split_list(ds, 2), generator=generator) for ds in learner_test_data])
learner_vote_dataloaders = [torch.utils.data.DataLoader(
    ds,
    batch_size=batch_size, shuffle=False, **kwargs) for ds in learner_vote_data]
learner_test_dataloaders = [torch.utils.data.DataLoader(
    ds,
    batch_size=batch_size, shuffle=False, **kwargs) for ds in learner_test_data]


# Define the model
class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 20, 5, 1)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.fc2 = nn.Linear(500, n_classes)

    def forward(self, x):
        x = nn_func.relu(self.conv1(x.view(-1, 1, height, width)))
        x = nn_func.max_pool2d(x, 2, 2)
        x = nn_func.relu(self.conv2(x))
        x = nn_func.max_pool2d(x, 2, 2)
        x = x.view(-1, 4 * 4 * 50)
        x = nn_func.relu(self.fc1(x))
        x = self.fc2(x)
        return nn_func.log_softmax(x, dim=1)


# Make n instances of PytorchLearner with model and torch dataloaders
torch.manual_seed(0)
all_learner_models = []
for i in range(n_learners):
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    learner = PytorchLearner(
        model=model,
        train_loader=learner_train_dataloaders[i],
        vote_loader=learner_vote_dataloaders[i],
        test_loader=learner_test_dataloaders[i],
        device=device,
        optimizer=opt,
        criterion=torch.nn.NLLLoss(),
        num_test_batches=vote_batches,
        vote_criterion=categorical_accuracy,
        minimise_criterion=False
    )

    all_learner_models.append(learner)

# Ensure all learners starts with exactly same weights
set_equal_weights(all_learner_models)

# Train the model using Collective Learning
results = Results()
results.data.append(initial_result(all_learner_models))

plot = ColearnPlot(score_name=score_name)

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
