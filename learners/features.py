"""One-pass preprocessing for the message contract's mixed features: numbers scaled, strings one-hot.

An event's ``x`` maps each feature to a number, a string or a bool. Linear models and Gaussian
naive Bayes only take numbers, so the presets put a :class:`MixedFeatureScaler` in front of them.
It computes exactly what River's composition

.. code-block:: python

    compose.TransformerUnion(
        compose.SelectType(numbers.Number) | preprocessing.StandardScaler(),
        compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=True),
    )

computes (same values, same key order, so the model downstream adds the same floats in the same
order), in a single pass over ``x``. On an all-numeric stream it costs about what
``StandardScaler`` alone costs, where the composition above triples the cost of a
``LogisticRegression`` pipeline (README, "Models and metrics").

``drop_zeros=True`` (only the present category is emitted, as ``1``) is what a linear model
needs: a feature that is ``0`` adds nothing to the dot product and gets a zero gradient, so its
weight would stay at zero anyway.

"""

from __future__ import annotations

import collections

from river import base

__all__ = ["MixedFeatureScaler"]


class MixedFeatureScaler(base.Transformer):
    """Standard-scale numeric features (bools are numbers) and one-hot encode string features.

    Parameters
    ----------
    scale
        ``True``: numbers are standardized with running means and variances, exactly like
        :class:`river.preprocessing.StandardScaler`. ``False``: numbers pass through unchanged
        (for models that need no scaling but cannot take strings).

    Attributes
    ----------
    counts, means, vars
        Per numeric feature, the number of values seen and their running mean and (population)
        variance, as in :class:`river.preprocessing.StandardScaler` (empty when ``scale`` is
        ``False``).

    Notes
    -----
    A string feature ``color = "red"`` becomes ``{"color_red": 1}`` (River's
    :class:`~river.preprocessing.OneHotEncoder` naming); the encoded string features come first
    in the output, then the numbers, as in River's ``TransformerUnion``. A value that is neither
    a string nor a number (outside the contract) fails in the arithmetic, as it would in
    ``StandardScaler``.

    Examples
    --------

    >>> scaler = MixedFeatureScaler()
    >>> for x in [{"a": 1.0, "on": True, "color": "red"}, {"a": 3.0, "on": False, "color": "blue"}]:
    ...     scaler.learn_one(x)
    >>> scaler.transform_one({"a": 3.0, "on": True, "color": "green"})
    {'color_green': 1, 'a': 1.0, 'on': 1.0}

    >>> MixedFeatureScaler(scale=False).transform_one({"a": 3.0, "color": "red"})
    {'color_red': 1, 'a': 3.0}

    """

    def __init__(self, scale: bool = True):
        self.scale = scale
        self.counts: collections.Counter = collections.Counter()
        self.means: collections.defaultdict = collections.defaultdict(float)
        self.vars: collections.defaultdict = collections.defaultdict(float)

    def learn_one(self, x: dict) -> None:
        # StandardScaler.learn_one (Welford's update, the same arithmetic in the same order, each
        # statistic read once) restricted to the numbers; the one-hot encoding learns nothing.
        if not self.scale:
            return
        counts, means, vars_ = self.counts, self.means, self.vars
        for i, xi in x.items():
            if xi.__class__ is str:
                continue
            n = counts[i] + 1
            counts[i] = n
            old_mean = means[i]
            mean = means[i] = old_mean + (xi - old_mean) / n
            var = vars_[i]
            vars_[i] = var + ((xi - old_mean) * (xi - mean) - var) / n

    def transform_one(self, x: dict) -> dict:
        numbers: dict = {}
        encoded: dict | None = None
        if self.scale:
            means, variances = self.means, self.vars
            for i, xi in x.items():
                if xi.__class__ is str:
                    if encoded is None:
                        encoded = {}
                    encoded[f"{i}_{xi}"] = 1
                    continue
                v = variances[i]  # as StandardScaler.transform_one (which also adds unseen features)
                numbers[i] = (xi - means[i]) / v**0.5 if v else 0.0
        else:
            for i, xi in x.items():
                if xi.__class__ is str:
                    if encoded is None:
                        encoded = {}
                    encoded[f"{i}_{xi}"] = 1
                else:
                    numbers[i] = xi
        if encoded is None:
            return numbers
        encoded.update(numbers)  # TransformerUnion's order: the last transformer's keys first
        return encoded
