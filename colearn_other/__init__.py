"""scikit-learn learners for colearn: ``partial_fit`` estimators (SGD, MLP, ...) and a warm-start random forest.

Import the learners from their modules (``colearn_other.sklearn_learner``, ``colearn_other.random_forest``)
or build them by name with :func:`colearn.registry.make_learner` (``sgd``, ``sklearn-mlp``, ``random-forest``).
"""
__all__ = ["sklearn_learner", "sklearn_state", "random_forest", "baseline"]
