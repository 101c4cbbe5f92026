"""Model factories for the ``module:factory`` spec tests in ``test_learners.py``."""

from __future__ import annotations

from river import base, linear_model, preprocessing

NOT_CALLABLE = 42


def scaled_logreg():
    """A valid binary classifier."""
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(l2=0.001)


def linear_regressor():
    """A valid regressor (the wrong kind for classification tasks)."""
    return linear_model.LinearRegression()


def not_a_model():
    return "a string, not a River estimator"


def broken():
    raise RuntimeError("factory exploded\nwith a second line")


def needs_arguments(alpha):
    return linear_model.LogisticRegression(l2=alpha)


class CautiousClassifier(base.Classifier):
    """Overrides ``predict_one``: predicts ``True`` only when sure, so it is not the argmax."""

    def __init__(self, threshold: float = 0.7):
        self.threshold = threshold
        self.inner = linear_model.LogisticRegression()

    def learn_one(self, x, y):
        self.inner.learn_one(x, y)

    def predict_proba_one(self, x):
        return self.inner.predict_proba_one(x)

    def predict_one(self, x, **kwargs):
        return self.predict_proba_one(x)[True] >= self.threshold


def cautious():
    return preprocessing.StandardScaler() | CautiousClassifier()
