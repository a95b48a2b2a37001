"""``PytorchLearner``: any ``torch.nn.Module`` plus data loaders as a collective learner.

The constructor and public helpers (``vote``, ``test``, ``train``, ``set_weights``, ``reset_optimizer``,
``get_training_summary``) are colearn 0.2.x's, so 0.2.x code and subclasses keep working. Differences
from 0.2.8, each a bug fix:

* a vote/test loader with exactly one batch works (0.2.8 raised "No batches in loader");
* the mean loss is a true per-sample mean (0.2.8 divided summed batch means by a sample count that
  included a batch it skipped);
* the state dict is read once per snapshot (0.2.8 rebuilt it once per key);
* votes use the learner's :mod:`colearn.vote_rules` rule (default ``"robust"``), like every colearn learner.

Weights leave the learner as 0.2.8 handed them out: an ordered dict name -> tensor (state-dict order, detached
copies, so no learner shares memory with another). Where they cross a process or machine boundary the codec
(:mod:`colearn.encoding`) sends them as typed arrays; the learner accepts tensors or arrays and validates them
on the way in. ``num_train_batches`` larger than the train loader re-iterates it.
"""
from __future__ import annotations

import contextlib
import warnings
from collections import defaultdict
from typing import Any, Callable, Iterator, Optional, Tuple, Union

import numpy as np
import torch
import torch.utils.data

from colearn.encoding import WeightsEncodeError
from colearn.learner_utils import ScoreCache, check_layout
from colearn.ml_interface import (ColearnModel, DiffPrivBudget, DiffPrivConfig, ErrorCodes,  # noqa: F401 (0.2.x)
                                  MachineLearningInterface, ModelFormat, OnnxUnavailableError, Prediction,
                                  PredictionRequest, ProposedWeights, TrainingSummary, Weights,
                                  convert_model_to_onnx)
from colearn.vote_rules import Evaluation, Voter, VoteRuleLike, output_layer_steps
from colearn_pytorch.export import ModelExport
from colearn_pytorch.privacy import PrivateTraining, quiet_opacus, unwrap
from colearn_pytorch.weights import (as_arrays, model_spec, snapshot, state_dict_to_arrays,
                                     validated_state_dict)

_DEFAULT_DEVICE = torch.device("cpu")
_Predictions = Tuple[Optional[np.ndarray], Optional[np.ndarray]]
DataLoader = torch.utils.data.DataLoader


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """``device`` as a ``torch.device``; CUDA falls back to CPU (with a warning) when it is not available."""
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn("device: CUDA was asked for but is not available; using the CPU", RuntimeWarning, stacklevel=3)
        return torch.device("cpu")
    return device


class PytorchLearner(ModelExport, MachineLearningInterface):
    """PyTorch implementation of the machine learning interface (colearn 0.2.x constructor).

    :param model: the model to train; it is moved to ``device``
    :param optimizer: optimizer over the model's parameters
    :param train_loader: batches for proposals
    :param vote_loader: batches that score proposals for voting
    :param test_loader: batches for the reported test score (0.0 when absent, as in 0.2.x)
    :param need_reset_optimizer: clear optimizer state (momentum etc.) before and after each proposal
    :param device: ``"cpu"``/``"cuda"``; CUDA falls back to CPU when unavailable
    :param criterion: training loss (e.g. ``torch.nn.CrossEntropyLoss()``); also the score without a vote criterion
    :param minimise_criterion: lower scores are better (False for accuracy-like vote criteria)
    :param vote_criterion: ``f(outputs, labels) -> float`` over the whole loader (e.g. ``categorical_accuracy``)
    :param num_train_batches: batches per proposal (default: one pass over ``train_loader``)
    :param num_test_batches: cap on batches per evaluation (default: all)
    :param diff_priv_config: train with DP-SGD (opacus) and stop proposing when the budget would be exceeded
    :param seed: (colearn 0.3) makes every proposal reproducible: seeds torch's RNG per proposal, in a fork
    :param model_export: (colearn 0.3) ``"auto"`` (ONNX, else state dict), ``"onnx"`` (or raise), ``"state_dict"``
    :param vote_rule: (colearn 0.3) how this learner votes: a :mod:`colearn.vote_rules` name or rule. Built
        directly, as in 0.2.x, it keeps 0.2.x's ``"strict"`` rule (a tie rejects); colearn's factories
        (``torch-mlp``, ``torch-cnn``) use ``"chance"``. Class predictions (argmax of the outputs) on the vote
        set, and how far the proposal moves each unit of the output layer, are the rule's evidence.
    :param train_criterion: (colearn 0.3) the training loss, when it differs from ``criterion`` (colearn's
        factories train with :class:`~colearn_pytorch.losses.RestrictedSoftmaxLoss` and score with plain
        cross-entropy)
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_loader: DataLoader,
                 vote_loader: DataLoader, test_loader: Optional[DataLoader] = None, need_reset_optimizer: bool = True,
                 device: Union[str, torch.device] = _DEFAULT_DEVICE, criterion: Optional[Callable[..., Any]] = None,
                 minimise_criterion: bool = True,
                 vote_criterion: Optional[Callable[[torch.Tensor, torch.Tensor], float]] = None,
                 num_train_batches: Optional[int] = None, num_test_batches: Optional[int] = None,
                 diff_priv_config: Optional[DiffPrivConfig] = None, *, seed: Optional[int] = None,
                 model_export: str = "auto", vote_rule: VoteRuleLike = "strict",
                 train_criterion: Optional[Callable[..., Any]] = None):
        for name, value in (("num_train_batches", num_train_batches), ("num_test_batches", num_test_batches)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if model_export not in ("auto", "onnx", "state_dict"):
            raise ValueError(f"model_export must be 'auto', 'onnx' or 'state_dict', got {model_export!r}")
        self.device = resolve_device(device)
        self.model: torch.nn.Module = model.to(self.device)
        self.optimizer = optimizer
        self.criterion = criterion
        self.train_criterion = train_criterion
        self.train_loader = train_loader
        self.vote_loader = vote_loader
        self.test_loader = test_loader
        self.need_reset_optimizer = need_reset_optimizer
        self.num_train_batches = num_train_batches or len(train_loader)
        self.num_test_batches = num_test_batches
        self.minimise_criterion = minimise_criterion
        self.vote_criterion = vote_criterion
        self.seed = seed
        self.model_export = model_export
        self.dp_config = diff_priv_config
        self.dp: Optional[PrivateTraining] = None
        if diff_priv_config is not None:
            self.dp, self.model, self.optimizer, self.train_loader = PrivateTraining.make(
                diff_priv_config, self.model, self.optimizer, self.train_loader)
        self.score_cache = ScoreCache()
        self.voter = Voter(vote_rule, minimise_criterion)
        # (predicted classes, labels) on the vote set: of recent weights by digest, of the last run, of the held model
        self._vote_predictions: "dict[Optional[str], _Predictions]" = {}
        self._last_vote_outputs: _Predictions = (None, None)
        self._held_predictions: _Predictions = (None, None)
        self._proposal_predictions: _Predictions = (None, None)
        self._proposal_steps: Optional[Tuple[np.ndarray, ...]] = None  # the output layer's steps (vote evidence)
        self._vote_score: Optional[float] = None  # score of the held model on the vote set; computed when needed
        self._held_key: Optional[str] = None
        self._dp_exhausted = False
        self.n_proposals = 0

    # -- the held model -------------------------------------------------------------------------------
    @property
    def plain_model(self) -> torch.nn.Module:
        """The user's module (``self.model`` may be opacus' wrapper, whose state-dict names differ)."""
        return unwrap(self.model)

    @property
    def dp_privacy_engine(self) -> Any:
        """opacus' ``PrivacyEngine`` (None without differential privacy)."""
        return self.dp.engine if self.dp is not None else None

    @property
    def criterion_name(self) -> str:
        """Name of the score: the vote criterion's function name, else the criterion's class name."""
        if self.vote_criterion is not None:
            return getattr(self.vote_criterion, "__name__", type(self.vote_criterion).__name__)
        return type(self.criterion).__name__

    @property
    def vote_score(self) -> float:
        """The held model's score on the vote set (evaluated on first use after it changed)."""
        if self._vote_score is None:
            self._vote_score = self.test(self.vote_loader)
            self._held_predictions = self._last_vote_outputs
        return self._vote_score

    @vote_score.setter
    def vote_score(self, value: Optional[float]) -> None:
        self._vote_score = value

    def _current_arrays(self) -> "dict[str, np.ndarray]":
        return state_dict_to_arrays(self.plain_model.state_dict())

    def _current_tensors(self) -> "dict[str, torch.Tensor]":
        return snapshot(self.plain_model.state_dict())

    def mli_get_current_weights(self) -> Weights:
        """The held model's weights as 0.2.8 returned them: ordered dict name -> tensor (detached copies), so
        ``model.load_state_dict(learner.mli_get_current_weights().weights)`` works."""
        return Weights(weights=self._current_tensors(), training_summary=self.get_training_summary())

    def mli_check_layout(self, weights: Any) -> None:
        """Refuse weights (tensors or typed arrays, possibly placeholders) whose names, dtypes or shapes differ
        from the model's state dict."""
        check_layout(as_arrays(weights), model_spec(self.plain_model.state_dict()))

    def set_weights(self, weights: Union[Weights, Any]) -> None:
        """Load weights (a :class:`Weights` or a name -> array/tensor mapping) into the model.

        Raises :class:`~colearn.learner_utils.WeightsMismatchError` if names, shapes or dtypes differ;
        the model is then unchanged.
        """
        received = weights.weights if isinstance(weights, Weights) else weights
        model = self.plain_model
        model.load_state_dict(validated_state_dict(received, model.state_dict()))
        self._held_key = None

    def _restore(self, saved: "dict[str, torch.Tensor]") -> None:
        self.plain_model.load_state_dict(saved)

    @staticmethod
    def _key(weights: Weights) -> Optional[str]:
        try:
            return ScoreCache.key(weights.weights)
        except WeightsEncodeError:  # e.g. 0.2.x-style tensors: not cached
            return None

    def _held_digest(self) -> str:
        if self._held_key is None:
            self._held_key = ScoreCache.key(self._current_arrays())
        return self._held_key

    # -- training ---------------------------------------------------------------------------------------
    def reset_optimizer(self) -> None:
        """Clear optimizer state (momentum, step counts) so that outdated history is not reused."""
        self.optimizer.state = defaultdict(dict)

    def _require_criterion(self, action: str) -> Callable[..., Any]:
        if self.criterion is None:
            raise ValueError(f"criterion is unspecified, so the learner cannot {action}; "
                             f"pass e.g. criterion=torch.nn.CrossEntropyLoss()")
        return self.criterion

    def _train_batches(self) -> Iterator[Any]:
        """``num_train_batches`` batches, re-iterating the train loader if it is shorter."""
        given = 0
        while given < self.num_train_batches:
            before = given
            for batch in self.train_loader:
                if given == self.num_train_batches:
                    return
                given += 1
                yield batch
            if given == before:
                raise ValueError("train_loader has no batches")

    def train(self) -> None:
        """Train the model on ``num_train_batches`` batches of the training data (changes the model)."""
        criterion = self.train_criterion if self.train_criterion is not None else self._require_criterion("train")
        if self.need_reset_optimizer:
            self.reset_optimizer()
        self.model.train()
        for data, labels in self._train_batches():
            self.optimizer.zero_grad()
            output = self.model(data.to(self.device))
            loss = criterion(output, labels.to(self.device))
            loss.backward()
            self.optimizer.step()

    def _rng_scope(self) -> contextlib.AbstractContextManager:
        if self.seed is None:
            return contextlib.nullcontext()
        devices = [self.device] if self.device.type == "cuda" else []
        return _seeded_fork((int(self.seed) * 1_000_003 + self.n_proposals) % 2**63, devices)

    def _planned_steps(self) -> int:
        return self.num_train_batches

    def mli_propose_weights(self) -> Weights:
        """Train from the held model and return the new weights; the held model does not change.

        With differential privacy, once one more proposal would take the spent epsilon past the target,
        return the held weights with ``error_code=DP_BUDGET_EXCEEDED`` instead (and keep doing so).
        """
        if self.dp is not None and (self._dp_exhausted or self.dp.would_exceed(self._planned_steps())):
            self._dp_exhausted = True
            return self.mli_get_current_weights()
        saved = snapshot(self.plain_model.state_dict())
        try:
            with self._rng_scope(), (quiet_opacus() if self.dp is not None else contextlib.nullcontext()):
                self.train()
            proposal = self._current_tensors()
        finally:
            self._restore(saved)
            if self.need_reset_optimizer:
                self.reset_optimizer()
            self.n_proposals += 1
        return Weights(weights=proposal, training_summary=self.get_training_summary())

    def get_training_summary(self) -> Optional[TrainingSummary]:
        """The DP budget (target and spent so far) and, once proposing stopped, ``DP_BUDGET_EXCEEDED``."""
        if self.dp is None:
            return None
        return TrainingSummary(dp_budget=self.dp.budget(),
                               error_code=ErrorCodes.DP_BUDGET_EXCEEDED if self._dp_exhausted else None)

    # -- scoring and voting -----------------------------------------------------------------------------
    def _loader_name(self, loader: Any) -> str:
        for name in ("vote_loader", "test_loader", "train_loader"):
            if loader is getattr(self, name, None):
                return name
        return "loader"

    def _summed_loss(self, output: torch.Tensor, labels: torch.Tensor) -> float:
        loss = self._require_criterion("score without a vote_criterion")(output, labels)
        reduction = getattr(self.criterion, "reduction", "mean")
        if reduction == "sum":
            return float(loss.item())
        if reduction == "none":
            return float(loss.sum().item())
        return float(loss.item()) * int(labels.shape[0])

    def test(self, loader: DataLoader) -> float:
        """Score the model on ``loader`` (at most ``num_test_batches`` batches; does not change the model).

        With a vote criterion: ``vote_criterion(all outputs, all labels)``; otherwise the criterion's mean
        over samples.
        """
        self.model.eval()
        n_samples, total = 0, 0.0
        outputs, all_labels = [], []
        predicted: "list[np.ndarray]" = []
        truth: "list[np.ndarray]" = []
        with torch.no_grad():
            for batch_idx, (data, labels) in enumerate(loader):
                if self.num_test_batches and batch_idx == self.num_test_batches:
                    break
                labels = labels.to(self.device)
                output = self.model(data.to(self.device))
                if loader is self.vote_loader and output.dim() == 2:
                    predicted.append(output.argmax(dim=1).cpu().numpy())
                    truth.append(labels.cpu().numpy())
                if self.vote_criterion is not None:
                    outputs.append(output)
                    all_labels.append(labels)
                else:
                    total += self._summed_loss(output, labels)
                n_samples += int(labels.shape[0])
        if n_samples == 0:
            raise ValueError(f"{self._loader_name(loader)} has no batches (or only empty ones) to score on")
        if loader is self.vote_loader:  # class predictions and labels, for the per-class vote checks
            self._last_vote_outputs = ((np.concatenate(predicted), np.concatenate(truth)) if predicted
                                       else (None, None))
        if self.vote_criterion is not None:
            return float(self.vote_criterion(torch.cat(outputs, dim=0), torch.cat(all_labels, dim=0)))
        return total / n_samples

    def vote(self, new_score: float) -> bool:
        """Vote on a proposal that scored ``new_score`` with this learner's vote rule, against the held model
        (0.2.x's signature; :meth:`mli_test_weights` adds the proposal's vote-set predictions for the rule)."""
        predictions, self._proposal_predictions = self._proposal_predictions, (None, None)
        steps, self._proposal_steps = self._proposal_steps, None
        held_score = self.vote_score
        self.voter.minimise = self.minimise_criterion  # 0.2.x code may set it after construction
        return self.voter.vote(Evaluation(float(new_score), *predictions, steps=steps),
                               Evaluation(float(held_score), *self._held_predictions))

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        """Score ``weights`` on the vote and test sets and vote; the held model does not change."""
        key = self._key(weights)
        cached = self.score_cache.get(None, key) if key is not None else None
        if cached is not None:
            vote_score, test_score = cached
        else:
            saved, held_key = snapshot(self.plain_model.state_dict()), self._held_key
            self.set_weights(weights)  # validates first: a mismatch raises with the model unchanged
            try:
                vote_score = self.test(self.vote_loader)
                self._remember_predictions(key, self._last_vote_outputs)
                test_score = self.test(self.test_loader) if self.test_loader is not None else 0.0
            finally:
                self._restore(saved)
                self._held_key = held_key
            if key is not None:
                self.score_cache.put(None, vote_score, test_score, key=key)
        predictions = self._vote_predictions.get(key, (None, None))
        if self._vote_score is None and key is not None and key == self._held_digest():
            self._vote_score = vote_score  # these are the held weights: no second evaluation
            self._held_predictions = predictions
        self._proposal_predictions = predictions
        self._proposal_steps = output_layer_steps(as_arrays(weights.weights), self._current_arrays())
        return ProposedWeights(weights=weights, vote_score=vote_score, test_score=test_score,
                               vote=self.vote(vote_score), criterion=self.criterion_name)

    def _remember_predictions(self, key: Optional[str], predictions: "_Predictions") -> None:
        if key is None:
            return
        self._vote_predictions[key] = predictions
        while len(self._vote_predictions) > 8:
            del self._vote_predictions[next(iter(self._vote_predictions))]

    def mli_accept_weights(self, weights: Weights) -> None:
        """Adopt ``weights``; their vote score comes from what :meth:`mli_test_weights` computed."""
        key = self._key(weights)
        self.set_weights(weights)
        self._held_key = key
        cached = self.score_cache.get(None, key) if key is not None else None
        self._vote_score = cached[0] if cached is not None else None  # else evaluated when next needed
        self._held_predictions = self._vote_predictions.get(key, (None, None)) if cached is not None else (None, None)
        if self._vote_score is not None:
            self.voter.adopted(Evaluation(self._vote_score))


@contextlib.contextmanager
def _seeded_fork(seed: int, devices: list) -> Iterator[None]:
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
