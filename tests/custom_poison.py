"""A model and a transform that fail on purpose, for the poison-model proofs (``tests/test_poison_models.py``).

Configs name them as ``[model] preset = "tests.custom_poison:fragile_logreg"`` and
``[features] transform = "tests.custom_poison:guarded_passthrough"``. Every failure is a
function of the input and of the model's own (pickled) state, never of time or randomness, so a
replay from a checkpoint fails at exactly the same records.
"""

from __future__ import annotations

from river import base, linear_model, preprocessing

#: ``learn_one`` raises on every call whose number (1-based, counted in the model) is a multiple of this.
FAIL_EVERY = 700


class FragileClassifier(base.Classifier):
    """A logistic regression that needs ``x["age"]`` to predict and ``x["income"]`` to learn.

    Parameters
    ----------
    fail_every
        ``learn_one`` raises ``RuntimeError`` on its call number ``fail_every``, ``2 * fail_every``,
        ... (the calls are counted in :attr:`learn_calls`, which is pickled with the model: a
        replay from a checkpoint raises at the same record).

    Attributes
    ----------
    learn_calls
        How many times ``learn_one`` was called, failed calls included.
    """

    def __init__(self, fail_every: int = FAIL_EVERY):
        self.fail_every = fail_every
        self.inner = linear_model.LogisticRegression()
        self.learn_calls = 0

    def learn_one(self, x: dict, y: bool) -> None:
        self.learn_calls += 1
        x["income"]  # noqa: B018 -- an event without it was predicted but cannot be learned (KeyError)
        if self.learn_calls % self.fail_every == 0:
            raise RuntimeError(f"learn_one call {self.learn_calls} fails by design\nthis line is not reported")
        self.inner.learn_one(x, y)

    def predict_proba_one(self, x: dict) -> dict:
        x["age"]  # noqa: B018 -- an event without it cannot be predicted (KeyError)
        return self.inner.predict_proba_one(x)


def fragile_logreg() -> base.Estimator:
    """``StandardScaler | FragileClassifier``: numbers only (a string feature fails once the scaler
    has seen two different values), ``age`` to predict, ``income`` to learn, every
    :data:`FAIL_EVERY`-th learn call raises."""
    return preprocessing.StandardScaler() | FragileClassifier()


def guarded_passthrough(x: dict) -> dict:
    """The features unchanged, except: ``explode`` in ``x`` raises, ``nan`` in ``x`` gives a NaN feature."""
    if "explode" in x:
        raise ValueError("this event explodes by design\nthis line is not reported")
    if "nan" in x:
        return {**x, "nan": float("nan")}
    return x
