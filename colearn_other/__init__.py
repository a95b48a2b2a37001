"""scikit-learn learners for colearn: ``partial_fit`` estimators (SGD, MLP, ...) and a warm-start random forest.

Import the learners from their modules (``colearn_other.sklearn_learner``, ``colearn_other.random_forest``)
or build them by name with :func:`colearn.registry.make_learner` (``sgd``, ``sklearn-mlp``, ``random-forest``).
colearn 0.2.x's ``fraud_dataset`` task and ``demo_utils`` helpers are here too (see docs/migrating.md).
"""
__all__ = ["sklearn_learner", "sklearn_state", "random_forest", "baseline", "fraud_dataset", "demo_utils"]
