"""A canonical fingerprint of a model's learned state.

Two models that will make the same predictions and learn the same way from now on should have
the same fingerprint, in any process. ``sha256(pickle.dumps(model))`` is not such a fingerprint:
after pickle → unpickle → continue, a River model predicts bit-identically to an uninterrupted
run, yet its pickle differs, for three reasons:

(a) **String identity.** Pickle memoizes objects by identity, so two equal strings that are
    distinct objects are written twice, while one string object referenced twice is written
    once and then referenced. Which feature-name string a model happens to hold (the one from the
    first ``x``, or from the ``x`` seen right after a restore) changes the bytes, not the model.
(b) **Set order.** Sets are written in iteration order, i.e. hash order, and ``str`` hashes change
    with ``PYTHONHASHSEED`` from one process to the next.
(c) **Unused entropy.** River's probability distributions (``river/proba/base.py``,
    ``Distribution.__init__``) create ``random.Random(seed)``, with ``seed=None`` by default, i.e.
    seeded from OS entropy. That generator only serves ``Distribution.sample()``, which learning
    and prediction never call, but its state differs between processes.

:func:`fingerprint` therefore hashes a *canonical* pickle stream: strings are interned (memoized
by value), sets and frozensets are written sorted, and the ``_rng`` of an unseeded
``river.proba.base.Distribution`` is left out. Everything else (floats bit for bit, dict order,
seeded generators' states) is hashed as pickle writes it. The stream is only hashed, never
unpickled, so the canonical forms need not be loadable.

The rule for (c) is deliberately narrow: an unseeded generator that learning *does* use (e.g.
``HoeffdingAdaptiveTreeClassifier(seed=None)``) is part of the model's state and stays in the
fingerprint, which then honestly differs between two independent runs of such a model.

>>> from river import datasets, linear_model, preprocessing
>>> model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
>>> before = fingerprint(model)
>>> len(before)
64
>>> for x, y in datasets.Phishing().take(10):
...     model.learn_one(x, y)
>>> import pickle
>>> restored = pickle.loads(pickle.dumps(model))
>>> fingerprint(restored) == fingerprint(model) != before
True

"""

from __future__ import annotations

import hashlib
import pickle
import sys

from river.proba.base import Distribution

__all__ = ["fingerprint"]

_SIMPLE_TYPES = (str, bytes, int, float, bool, complex, type(None))


class _HashWriter:
    """A write-only file that feeds a sha256."""

    def __init__(self):
        self.hash = hashlib.sha256()

    def write(self, data) -> int:
        self.hash.update(data)
        return len(data)


class _CanonicalPickler(pickle._Pickler):
    """The pure-Python pickler (its ``save`` can be hooked) writing canonical forms.

    Each replaced object gets one replacement object for the whole dump, kept alive together with
    the original, so that ``id()`` stays unique and the pickle memo (shared references, cycles)
    works on replacements exactly as on the originals.
    """

    def __init__(self, file) -> None:
        super().__init__(file, protocol=5)
        self._replacements: dict[int, tuple[object, object]] = {}

    def save(self, obj, save_persistent_id=True):
        t = type(obj)
        if t is str:
            obj = sys.intern(obj)  # (a): memoize strings by value, not identity
        elif t is set or t is frozenset or (isinstance(obj, Distribution) and obj.seed is None):
            entry = self._replacements.get(id(obj))
            if entry is None:
                entry = (obj, self._canonical(obj))
                self._replacements[id(obj)] = entry
            obj = entry[1]
        return super().save(obj, save_persistent_id)

    @staticmethod
    def _canonical(obj):
        t = type(obj)
        if t is set or t is frozenset:  # (b): hash order -> sorted order
            return (t.__name__, sorted(obj, key=_sort_key))
        # (c): an unseeded distribution's generator is not learned state
        state = {k: v for k, v in vars(obj).items() if k != "_rng"}
        return ("unseeded", t.__module__, t.__qualname__, state)


def _sort_key(value) -> tuple:
    """A process-independent sort key for a set element.

    Simple values sort by their repr; anything else by its own canonical digest, because a
    default repr holds a memory address.
    """
    t = type(value)
    if isinstance(value, _SIMPLE_TYPES) or (
        t is tuple and all(isinstance(v, _SIMPLE_TYPES) for v in value)
    ):
        return (t.__module__, t.__qualname__, repr(value))
    return (t.__module__, t.__qualname__, fingerprint(value))


def fingerprint(model) -> str:
    """The hex sha256 of ``model``'s canonical pickle (see the module docstring).

    Parameters
    ----------
    model
        Any picklable object; typically a River estimator or a
        :class:`learners.online_model.OnlineModel`'s ``model``.

    """
    writer = _HashWriter()
    pickler = _CanonicalPickler(writer)
    pickler.dump(model)
    return writer.hash.hexdigest()
