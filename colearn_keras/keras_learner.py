"""KerasLearner: collective learning with any compiled Keras 3 model (TensorFlow backend), optionally with DP-SGD.

The constructor is colearn 0.2.x's. The contract is every colearn learner's: proposing and testing leave the
held model unchanged; accepting adopts the weights and reuses the scores testing computed; weights leave as
a list of numpy arrays (copies) and are checked against the model's shapes and dtypes on the way in.
"""
from __future__ import annotations

import collections
import collections.abc
import warnings
from typing import Any, Dict, List, Optional, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

from colearn.learner_utils import ScoreCache, check_arrays_match
from colearn.vote_rules import Evaluation, Voter, VoteRuleLike, output_layer_steps
from colearn.ml_interface import (ColearnModel, DiffPrivBudget, DiffPrivConfig, ErrorCodes,
                                  MachineLearningInterface, ModelFormat, OnnxUnavailableError, Prediction,
                                  PredictionRequest, ProposedWeights, TrainingSummary, Weights)
from colearn_keras.dp import DPSGDTrainer
from colearn_keras.export import keras_model_to_bytes, keras_model_to_onnx
from colearn_keras.utils import (DEFAULT_BATCH_SIZE, Loader, OptimizerReset, check_call_kwargs, check_loader,
                                 dataset_batch_size, is_array_pair, iter_batches, materialize, to_dataset)

DP_FIT_KWARGS = frozenset({"epochs", "steps_per_epoch", "batch_size", "verbose", "shuffle"})
Predictions = Tuple[Optional[np.ndarray], Optional[np.ndarray]]  # (predicted classes, labels) on the vote set
NO_PREDICTIONS: Predictions = (None, None)


def output_units_first(arrays: List[np.ndarray]) -> Dict[str, np.ndarray]:
    """Keras weights (``model.weights`` order) keyed ``"0000"``, ``"0001"``, ... with every array of two or more
    dimensions moved to (units, ...): a Dense kernel is (inputs, units) and a Conv kernel (..., filters), whereas
    :func:`~colearn.vote_rules.output_layer_steps` reads one output unit per row."""
    return {f"{index:04d}": np.moveaxis(array, -1, 0) if np.ndim(array) >= 2 else array
            for index, array in enumerate(arrays)}


class KerasLearner(MachineLearningInterface):
    """A collective learner around a compiled Keras 3 model.

    :param model: a compiled ``keras.Model`` (optimizer, loss and the metric named by ``criterion``).
    :param train_loader: data to train proposals on: a batched ``tf.data.Dataset`` of ``(x, y)``, an
        ``(x, y)`` pair of numpy arrays (batched with ``model_fit_kwargs["batch_size"]``, default 32), or, as in
        0.2.x, anything else ``model.fit`` takes (a ``keras.utils.PyDataset``/``Sequence``, an
        ``ImageDataGenerator`` iterator, a torch ``DataLoader``, a generator), passed to it unchanged.
    :param vote_loader: data to score proposals on before voting (same forms; a generator is used up after one
        evaluation, so give something that can be iterated again).
    :param test_loader: optional data for the reported test score (0 when absent, as in 0.2.x).
    :param need_reset_optimizer: reset the optimizer's state (moments, step count) before each proposal.
    :param minimise_criterion: True when a lower ``criterion`` is better (e.g. ``"loss"``).
    :param criterion: the ``model.evaluate`` result to vote on: ``"loss"`` or a compiled metric's name.
    :param model_fit_kwargs: extra arguments for ``model.fit`` (e.g. ``epochs``, ``steps_per_epoch``).
    :param model_evaluate_kwargs: extra arguments for ``model.evaluate`` (e.g. ``steps``).
    :param diff_priv_config: train with DP-SGD (Poisson sampling, per-example clipping, Gaussian noise)
        within this budget; see :mod:`colearn_keras.dp`.
    :param seed: seeds shuffling of array loaders and DP sampling and noise (None: fresh entropy).
    :param model_export: what :meth:`mli_get_current_model` returns: ``"auto"``, ``"onnx"`` or ``"keras"``.
    :param vote_rule: how the learner votes (:mod:`colearn.vote_rules`). Built directly, as in 0.2.x, it keeps
        0.2.x's ``"strict"`` rule (a tie rejects); colearn's factories (``keras-mlp``, ``keras-cnn``) use
        ``"chance"``. The rule sees, besides the scores, the class predictions (argmax of the outputs) and labels
        on the vote set, for models with one output of shape (batch, classes), and how far a proposal moves
        each unit of the model's output layer (:func:`~colearn.vote_rules.output_layer_steps`).
    """

    def __init__(self, model: keras.Model, train_loader: Loader, vote_loader: Loader,
                 test_loader: Optional[Loader] = None, need_reset_optimizer: bool = True,
                 minimise_criterion: bool = True, criterion: str = "loss",
                 model_fit_kwargs: Optional[dict] = None, model_evaluate_kwargs: Optional[dict] = None,
                 diff_priv_config: Optional[DiffPrivConfig] = None, *, seed: Optional[int] = None,
                 model_export: str = "auto", vote_rule: VoteRuleLike = "strict"):
        if not isinstance(model, keras.Model):
            raise TypeError(f"model must be a keras.Model (Keras 3), got {type(model).__module__}."
                            f"{type(model).__qualname__}")
        if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
            raise ValueError("model: compile it (optimizer, loss, metrics) before giving it to KerasLearner")
        if model_export not in ("auto", "onnx", "keras"):
            raise ValueError(f"model_export must be 'auto', 'onnx' or 'keras', got {model_export!r}")
        check_loader(train_loader, "train_loader")
        check_loader(vote_loader, "vote_loader")
        check_loader(test_loader, "test_loader", optional=True)
        self.model: keras.Model = model
        self.train_loader, self.vote_loader, self.test_loader = train_loader, vote_loader, test_loader
        self.need_reset_optimizer = bool(need_reset_optimizer)
        self.minimise_criterion = bool(minimise_criterion)
        self.voter = Voter(vote_rule, self.minimise_criterion)
        self.criterion = criterion
        self.model_fit_kwargs = check_call_kwargs(model.fit, model_fit_kwargs, "model_fit_kwargs", {"x", "y"})
        self.model_evaluate_kwargs = check_call_kwargs(model.evaluate, model_evaluate_kwargs,
                                                       "model_evaluate_kwargs", {"x", "y", "return_dict"})
        if isinstance(diff_priv_config, dict):
            diff_priv_config = DiffPrivConfig(**diff_priv_config)
        self.diff_priv_config = diff_priv_config
        self.seed = seed
        self.model_export = model_export

        fit_kwargs = dict(self.model_fit_kwargs)
        eval_kwargs = dict(self.model_evaluate_kwargs)
        self._train_batch_size = int(fit_kwargs.pop("batch_size", DEFAULT_BATCH_SIZE))
        eval_batch_size = int(eval_kwargs.pop("batch_size", DEFAULT_BATCH_SIZE))
        shuffle = bool(fit_kwargs.pop("shuffle", True))
        if is_array_pair(train_loader) or not shuffle:
            fit_kwargs["shuffle"] = False  # arrays are shuffled by the learner's dataset; Keras warns otherwise
        else:
            # a PyDataset's batches come in a new order every epoch, as model.fit's default did in 0.2.x; a dataset
            # shuffles itself (Keras ignores the flag for it, with a warning)
            fit_kwargs["shuffle"] = isinstance(train_loader, keras.utils.PyDataset)
        fit_kwargs.setdefault("verbose", 0)
        eval_kwargs.setdefault("verbose", 0)
        self._fit_kwargs, self._eval_kwargs = fit_kwargs, eval_kwargs
        self._train_data = to_dataset(train_loader, batch_size=self._train_batch_size,
                                      shuffle=shuffle, seed=seed,
                                      repeat=self.model_fit_kwargs.get("steps_per_epoch") is not None)
        self._datasets: Dict[int, tf.data.Dataset] = {
            id(loader): to_dataset(loader, batch_size=eval_batch_size)
            for loader in (vote_loader, test_loader) if loader is not None}
        self._eval_batch_size = eval_batch_size

        self._optimizer_reset = OptimizerReset(model)
        self._expected = [np.broadcast_to(np.zeros((), w.dtype), w.shape) for w in model.get_weights()]
        self._names = [v.path for v in model.weights]
        self._scores = ScoreCache()
        # (predicted classes, labels) on the vote set: of recent weights by digest, of the last run, of the held model
        self._vote_predictions: "collections.OrderedDict[str, Predictions]" = collections.OrderedDict()
        self._last_vote_outputs: Predictions = NO_PREDICTIONS
        self._held_predictions: Predictions = NO_PREDICTIONS
        self._proposal_predictions: Predictions = NO_PREDICTIONS
        self._proposal_steps: Optional[Tuple[np.ndarray, ...]] = None  # the output layer's steps (vote evidence)
        self._dp: Optional[DPSGDTrainer] = None
        self.cumulative_epochs = 0  # 0.2.x: epochs trained in proposals so far
        self.epochs_per_proposal = int(self.model_fit_kwargs.get("epochs", 1))  # 0.2.x: epochs per proposal
        if diff_priv_config is not None:
            self._dp = self._make_dp_trainer(diff_priv_config)

        results = self._evaluate(self._dataset(vote_loader))
        if criterion not in results:
            raise ValueError(f"criterion {criterion!r} is not computed by the compiled model; "
                             f"choose one of {sorted(results)}")
        self._vote_score: Optional[float] = float(results[criterion])
        self._held_key: Optional[str] = ScoreCache.key(model.get_weights())
        self._held_predictions = self._predict_vote_set()
        self._remember_predictions(self._held_key, self._held_predictions)

    # -- construction helpers -------------------------------------------------------------------------
    def _make_dp_trainer(self, config: DiffPrivConfig) -> DPSGDTrainer:
        unsupported = sorted(set(self.model_fit_kwargs) - DP_FIT_KWARGS)
        if unsupported:
            raise ValueError(f"model_fit_kwargs {unsupported} are not supported with diff_priv_config "
                             f"(DP-SGD runs its own loop); use only {sorted(DP_FIT_KWARGS)}")
        x, y = materialize(self.train_loader)
        batch_size = self.get_train_batch_size()
        trainer = DPSGDTrainer(self.model, x, y, config, batch_size, seed=self.seed)
        epochs = int(self.model_fit_kwargs.get("epochs", 1))
        steps_per_epoch = self.model_fit_kwargs.get("steps_per_epoch") or trainer.steps_per_epoch
        self.dp_steps_per_proposal = epochs * int(steps_per_epoch)
        return trainer

    def _dataset(self, loader: Loader) -> tf.data.Dataset:
        known = self._datasets.get(id(loader))
        if known is not None:
            return known
        check_loader(loader, "loader")
        return to_dataset(loader, batch_size=self._eval_batch_size)

    # -- weights ----------------------------------------------------------------------------------------
    def _check(self, weights: Union[Weights, List[np.ndarray]]) -> List[np.ndarray]:
        arrays = weights.weights if isinstance(weights, Weights) else weights
        return check_arrays_match(arrays, self._expected, self._names)

    def _current_arrays(self) -> List[np.ndarray]:
        return [np.array(w, copy=True) for w in self.model.get_weights()]

    def mli_get_current_weights(self) -> Weights:
        """The held model's weights: a list of numpy arrays (copies), in ``model.weights`` order."""
        return Weights(weights=self._current_arrays())

    def set_weights(self, weights: Union[Weights, List[np.ndarray]]) -> None:
        """Make ``weights`` the held model (checked first: a mismatch raises and changes nothing)."""
        arrays = self._check(weights)
        key = ScoreCache.key(arrays)
        self.model.set_weights(arrays)
        self._held_key = key
        cached = self._scores.get(arrays, key=key)
        self._vote_score = cached[0] if cached is not None else None  # unknown until needed
        self._held_predictions = self._vote_predictions.get(key, NO_PREDICTIONS) if cached is not None \
            else NO_PREDICTIONS

    # -- the MLI ----------------------------------------------------------------------------------------
    def mli_propose_weights(self) -> Weights:
        """Train on the train set and return the new weights; the held model is restored afterwards.

        With DP, a proposal whose steps would take epsilon past the target is refused: the current
        weights come back with ``error_code=DP_BUDGET_EXCEEDED`` and the budget spent so far.
        """
        if self._dp is not None and self._dp.ledger.would_exceed(self.dp_steps_per_proposal):
            summary = TrainingSummary(dp_budget=self._dp.ledger.budget(), error_code=ErrorCodes.DP_BUDGET_EXCEEDED)
            return Weights(weights=self._current_arrays(), training_summary=summary)
        held = self.model.get_weights()
        try:
            self.train()
            proposal = self._current_arrays()
        finally:
            self.model.set_weights(held)
        self.cumulative_epochs += self.epochs_per_proposal
        summary = TrainingSummary(dp_budget=self.privacy_budget()) if self._dp is not None else None
        return Weights(weights=proposal, training_summary=summary)

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        """Score ``weights`` on the vote and test sets and vote; the held model is unchanged."""
        arrays = self._check(weights)
        key = ScoreCache.key(arrays)
        cached = self._scores.get(arrays, key=key)
        if cached is not None:
            vote_score, test_score = cached
        else:
            held = self.model.get_weights()
            try:
                self.model.set_weights(arrays)
                vote_score = self.test(self.vote_loader)
                self._remember_predictions(key, self._last_vote_outputs)
                test_score = self.test(self.test_loader) if self.test_loader is not None else 0.0
            finally:
                self.model.set_weights(held)
            self._scores.put(arrays, vote_score, test_score, key=key)
        predictions = self._vote_predictions.get(key, NO_PREDICTIONS)
        if key == self._held_key and self._vote_score is None:
            self._vote_score = vote_score  # these are the held weights: no second evaluation
            self._held_predictions = predictions
        self._proposal_predictions = predictions
        # only after _check: the arrays have the model's shapes and finite values
        self._proposal_steps = output_layer_steps(output_units_first(arrays),
                                                  output_units_first(self.model.get_weights()))
        return ProposedWeights(weights=weights, vote_score=vote_score, test_score=test_score,
                               vote=self.vote(vote_score), criterion=self.criterion)

    def _remember_predictions(self, key: Optional[str], predictions: Predictions) -> None:
        if key is None:
            return
        self._vote_predictions[key] = predictions
        self._vote_predictions.move_to_end(key)
        while len(self._vote_predictions) > 8:
            self._vote_predictions.popitem(last=False)

    def mli_accept_weights(self, weights: Weights) -> None:
        """Adopt ``weights``; the vote score comes from :meth:`mli_test_weights` when it scored them."""
        self.set_weights(weights)
        if self._vote_score is not None:
            self.voter.adopted(Evaluation(self._vote_score, *self._held_predictions))

    def mli_get_current_model(self) -> ColearnModel:
        """Export the held model: ONNX when tf2onnx can convert it, else native ``.keras`` bytes.

        With ``model_export="auto"`` (default) a failed ONNX export falls back to
        ``ColearnModel(model_format=KERAS, model=<.keras bytes>)`` with a ``RuntimeWarning`` giving the reason;
        ``"onnx"`` raises :class:`~colearn.ml_interface.OnnxUnavailableError` instead; ``"keras"`` skips ONNX.
        """
        if self.model_export != "keras":
            try:
                return ColearnModel(model_format=ModelFormat.ONNX, model_file="",
                                    model=keras_model_to_onnx(self.model))
            except OnnxUnavailableError as exc:
                if self.model_export == "onnx":
                    raise
                warnings.warn(f"ONNX export not possible ({exc}); exporting the native .keras format (KERAS) "
                              "instead", RuntimeWarning, stacklevel=2)
        return ColearnModel(model_format=ModelFormat.KERAS, model=keras_model_to_bytes(self.model))

    def mli_make_prediction(self, request: PredictionRequest) -> Prediction:
        """Model outputs for ``request.input_data`` (array-like of inputs), as a numpy array."""
        outputs = self.model.predict_on_batch(np.asarray(request.input_data))
        return Prediction(name=request.name, prediction_data=np.asarray(outputs))

    # -- 0.2.x helpers ----------------------------------------------------------------------------------
    @property
    def vote_score(self) -> float:
        """The held model's score on the vote set (evaluated only when not already known)."""
        if self._vote_score is None:
            self._vote_score = self.test(self.vote_loader)
            self._held_predictions = self._last_vote_outputs
        return self._vote_score

    @vote_score.setter
    def vote_score(self, value: float) -> None:
        self._vote_score = float(value)

    def vote(self, new_score: float) -> bool:
        """Vote on a proposal scoring ``new_score`` against the held model, by this learner's vote rule (0.2.x's
        signature; :meth:`mli_test_weights` adds the proposal's vote-set predictions and output-layer steps)."""
        predictions, self._proposal_predictions = self._proposal_predictions, NO_PREDICTIONS
        steps, self._proposal_steps = self._proposal_steps, None
        held_score = self.vote_score
        self.voter.minimise = self.minimise_criterion  # 0.2.x code may set it after construction
        return self.voter.vote(Evaluation(float(new_score), *predictions, steps=steps),
                               Evaluation(float(held_score), *self._held_predictions))

    def test(self, loader: Loader) -> float:
        """The held model's ``criterion`` on ``loader`` (on the vote set, also its class predictions, kept for
        the vote)."""
        score = float(self._evaluate(self._dataset(loader))[self.criterion])
        if loader is self.vote_loader:
            self._last_vote_outputs = self._predict_vote_set()
        return score

    def _predict_vote_set(self) -> Predictions:
        """Predicted classes (argmax of the outputs) and labels on the vote set, over the batches ``evaluate``
        scores (``model_evaluate_kwargs["steps"]``, if given); (None, None) where the model does not give one
        (batch, classes) output, the labels are not one class per sample (integer or one-hot) or the loader
        cannot be read again (a generator)."""
        predicted: List[np.ndarray] = []
        truth: List[np.ndarray] = []
        dataset = self._dataset(self.vote_loader)
        batches = iter(dataset) if isinstance(dataset, tf.data.Dataset) else iter_batches(dataset)
        limit = self._eval_kwargs.get("steps")
        for index, batch in enumerate(batches):
            if limit is not None and index >= int(limit):
                break
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                return NO_PREDICTIONS
            inputs = batch[0]
            if not isinstance(inputs, (tf.Tensor, np.ndarray, dict, list, tuple)):
                inputs = np.asarray(inputs)  # e.g. a torch DataLoader's tensors
            try:
                outputs = self.model.predict_on_batch(inputs)
            except (TypeError, ValueError):  # inputs this model's predict does not take as they are: no evidence
                return NO_PREDICTIONS
            if not isinstance(outputs, (np.ndarray, tf.Tensor)) or np.ndim(outputs) != 2:
                return NO_PREDICTIONS
            outputs, labels = np.asarray(outputs), np.asarray(batch[1])
            if labels.ndim == 2 and labels.shape == outputs.shape and outputs.shape[1] > 1:
                labels = labels.argmax(axis=1)  # one-hot labels
            labels = labels.reshape(-1) if labels.size == len(outputs) else None
            if labels is None:
                return NO_PREDICTIONS
            predicted.append(outputs.argmax(axis=1))
            truth.append(labels)
        if not predicted:
            return NO_PREDICTIONS
        return np.concatenate(predicted), np.concatenate(truth)

    def _evaluate(self, dataset: tf.data.Dataset) -> Dict[str, Any]:
        return self.model.evaluate(dataset, return_dict=True, **self._eval_kwargs)

    def train(self) -> None:
        """Train the held model in place (``mli_propose_weights`` restores it afterwards)."""
        if self.need_reset_optimizer:
            self.reset_optimizer()
        if self._dp is not None:
            self._dp.run(self.dp_steps_per_proposal)
        else:
            self.model.fit(self._train_data, **self._fit_kwargs)

    def reset_optimizer(self) -> None:
        """Return the optimizer to its freshly built state (no recompiling, no retracing)."""
        self._optimizer_reset.reset()

    def get_train_batch_size(self) -> int:
        """The training batch size (expected batch size under DP's Poisson sampling)."""
        generator = isinstance(self.train_loader, collections.abc.Iterator) and not isinstance(
            self.train_loader, keras.utils.PyDataset)  # reading a batch would use it up: ask model_fit_kwargs
        if is_array_pair(self.train_loader) or (generator and "batch_size" in self.model_fit_kwargs):
            return self._train_batch_size
        return dataset_batch_size(self.train_loader)

    def privacy_budget(self) -> Optional[DiffPrivBudget]:
        """Target and consumed (epsilon, delta) so far; None without ``diff_priv_config``."""
        return self._dp.ledger.budget() if self._dp is not None else None

    @property
    def diff_priv_budget(self) -> Optional[DiffPrivBudget]:
        """0.2.x's attribute: the budget (target and consumed so far), as :meth:`privacy_budget` returns it."""
        return self.privacy_budget()

    def get_privacy_budget(self) -> Optional[float]:
        """0.2.x's meaning: the epsilon that will have been spent after ONE MORE proposal (what the learner
        checks against ``target_epsilon`` before training); None without ``diff_priv_config``.
        The budget spent so far is :meth:`privacy_budget` / :attr:`diff_priv_budget`."""
        if self._dp is None:
            return None
        return self._dp.ledger.epsilon(self._dp.ledger.steps + self.dp_steps_per_proposal)
