"""River's ``Accuracy`` and ``ROCAUC``, with the same values to the bit and far fewer operations.

Every label updates each metric once cumulatively and twice more in the rolling window (one
update, one revert of the label leaving it). River keeps ``ROCAUC`` as ten full
``ConfusionMatrix`` objects (nested dicts, six additions each) and ``Accuracy`` as one; profiled
on the default config, these updates were about a fifth of the processing loop.

The classes here subclass River's and keep exactly the accumulators River's ``get`` reads,
each receiving the same additions in the same order, so ``get`` returns the same float for any
sequence of ``update``/``revert`` calls and any weights (tested against River's classes on
random streams). ``ROCAUC`` defers the additions of unit weights (every label riverbed
scores has weight 1, and a rolling window reverts with -1) and adds them per score bucket when
the sums are read: whole numbers, so the order does not change them (:meth:`ROCAUC.count`).

* ``Accuracy``: River reads ``cm.total_true_positives / cm.total_weight``; both sums are kept.
* ``ROCAUC``: for threshold ``i`` River reads, from its ``i``-th confusion matrix over
  ``(y_true == pos_val, p_true > t_i)``: ``data[True][True]``, ``sum_row[True]``,
  ``sum_col[True]`` and ``total_true_positives``; the first, third and fourth are kept per
  threshold, ``sum_row[True]`` (the same for every threshold) once. ``get`` then computes the
  rates and the trapezoid exactly as River does: River calls ``scipy.integrate.trapezoid``
  (about 20 µs for ten points, mostly array conversion); here the same terms are summed in
  plain Python in the order of NumPy's pairwise summation (:func:`_numpy_sum`), which gives the
  same float. An import-time check compares it with NumPy on awkward sums and falls back to
  ``scipy.integrate.trapezoid`` should a NumPy version sum differently.

>>> from river import metrics
>>> ours, river_s = ROCAUC(), metrics.ROCAUC()
>>> for y, p in [(0, .1), (0, .4), (1, .35), (1, .8)]:
...     ours.update(y, p)
...     river_s.update(y, p)
>>> bool(ours.get() == river_s.get()), ours
(True, ROCAUC: 87.50%)
"""

from __future__ import annotations

from bisect import bisect_left

from river import metrics
from scipy import integrate

__all__ = ["Accuracy", "ROCAUC"]


class Accuracy(metrics.Accuracy):
    """River's :class:`river.metrics.Accuracy` (same values) without a confusion matrix.

    >>> metric = Accuracy()
    >>> for y, p in [(True, True), (False, True), (True, False), (True, True), (True, True)]:
    ...     metric.update(y, p)
    >>> metric
    Accuracy: 60.00%
    """

    def __init__(self):
        self._correct = 0.0  # River: cm.total_true_positives
        self._weight = 0.0  # River: cm.total_weight

    @property
    def cm(self):  # River's own code never needs it for this metric; say so if anything does
        raise AttributeError("riverbed's exact Accuracy keeps no confusion matrix")

    def update(self, y_true, y_pred, w=1.0) -> None:
        self._weight += w
        if y_true == y_pred:
            self._correct += w

    def revert(self, y_true, y_pred, w=1.0) -> None:
        self._weight -= w
        if y_true == y_pred:
            self._correct -= w

    def get(self) -> float:
        try:
            return self._correct / self._weight
        except ZeroDivisionError:
            return 0.0


class ROCAUC(metrics.ROCAUC):
    """River's :class:`river.metrics.ROCAUC` (same values, same thresholds) without ten confusion
    matrices: one update touches only the thresholds below the score."""

    def __init__(self, n_thresholds=10, pos_val=True):
        self.n_thresholds = n_thresholds
        self.pos_val = pos_val
        self.thresholds = [i / (n_thresholds - 1) for i in range(n_thresholds)]
        self.thresholds[0] -= 1e-7
        self.thresholds[-1] += 1e-7
        self._tp = [0.0] * n_thresholds  # River: cms[i].data[True][True]
        self._above = [0.0] * n_thresholds  # River: cms[i].sum_col[True]
        self._correct = [0.0] * n_thresholds  # River: cms[i].total_true_positives
        self._positives = 0.0  # River: cms[i].sum_row[True], the same for every i
        self._unit_counts: list[float] | None = None  # see count()
        self._whole = True  # every weight so far was +1 or -1 (see count())

    # -- unit weights, counted per bucket and added when read ------------------------------

    def count(self, above: int, positive: bool, w: float) -> None:
        """:meth:`add` for a weight ``w`` of ``1.0`` or ``-1.0`` (a label entering or leaving a
        rolling window), in constant time.

        The weight is kept per score bucket (``above``) and class; :meth:`_fold` adds each
        bucket's sum to the per-threshold sums when they are read (:meth:`get`, a pickle, an
        update with another weight). While every weight is ``+1`` or ``-1`` every sum is a whole
        number (below 2**53), so adding the buckets later, in another order, gives the same floats
        as adding one label at a time: bit for bit what River computes. After a weight other than
        ``+1`` or ``-1`` (River's own :meth:`update` with ``w``) it adds at once, as :meth:`add`.
        """
        if not self._whole or (w != 1.0 and w != -1.0):
            self.add(above, positive, w)
            return
        counts = self._unit_counts
        if counts is None:
            counts = self._unit_counts = [0.0] * (2 * self.n_thresholds + 2)
        counts[2 * above + (1 if positive else 0)] += w

    def _fold(self) -> None:
        """Add the weights :meth:`count` kept per bucket to the per-threshold sums."""
        counts = self._unit_counts
        if counts is None:
            return
        self._unit_counts = None
        n = self.n_thresholds
        col, tp, correct = self._above, self._tp, self._correct
        for above in range(n + 1):
            negatives, positives = counts[2 * above], counts[2 * above + 1]
            if positives:
                for i in range(above):
                    col[i] += positives
                    tp[i] += positives
                    correct[i] += positives
                self._positives += positives
            if negatives:
                for i in range(above):
                    col[i] += negatives
                for i in range(above, n):
                    correct[i] += negatives

    def __getstate__(self) -> dict:
        # Pickled as before count() existed (the same bytes): the buckets are folded in first.
        self._fold()
        state = dict(self.__dict__)
        del state["_unit_counts"]
        if state.pop("_whole"):
            return state
        state["_whole"] = False
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_whole", True)
        self._unit_counts = None

    @property
    def cms(self):
        raise AttributeError("riverbed's exact ROCAUC keeps no confusion matrices")

    def update(self, y_true, y_pred, w=1.0) -> None:
        p_true = y_pred.get(True, 0.0) if isinstance(y_pred, dict) else y_pred
        # thresholds[i] < p_true exactly for i < above (River tests `p_true > t` for each one)
        self.count(bisect_left(self.thresholds, p_true), y_true == self.pos_val, w)

    def add(self, above: int, positive, w: float) -> None:
        """Add weight ``w`` for a label of class ``positive`` whose score exceeds the first
        ``above`` thresholds (what :meth:`update` computes; :mod:`learners.evaluation` computes
        it once for the cumulative and the rolling metric)."""
        self._fold()
        self._whole = self._whole and (w == 1.0 or w == -1.0)
        col, correct = self._above, self._correct
        if positive:
            tp = self._tp
            for i in range(above):  # predicted positive, truly positive
                col[i] += w
                tp[i] += w
                correct[i] += w
            self._positives += w
        else:
            for i in range(above):  # predicted positive
                col[i] += w
            for i in range(above, self.n_thresholds):  # predicted negative, truly negative
                correct[i] += w

    def revert(self, y_true, y_pred, w=1.0) -> None:
        self.update(y_true, y_pred, -w)  # River subtracts w; adding -w is the same IEEE operation

    def get(self):
        self._fold()
        n = self.n_thresholds
        tprs = [0] * n
        fprs = [0] * n

        def safe_div(a, b):
            try:
                return a / b
            except ZeroDivisionError:
                return 0.0

        for i in range(n):
            tp = self._tp[i]
            tn = self._correct[i] - tp
            fp = self._above[i] - tp
            fn = self._positives - tp
            tprs[i] = safe_div(a=tp, b=tp + fn)
            fprs[i] = safe_div(a=fp, b=fp + tn)
        if not _SUM_LIKE_NUMPY:
            return -integrate.trapezoid(x=fprs, y=tprs)
        # scipy: sum(d * (y[1:] + y[:-1]) / 2.0) with d = x[1:] - x[:-1], x = fprs, y = tprs
        return -_numpy_sum([(fprs[i + 1] - fprs[i]) * (tprs[i + 1] + tprs[i]) / 2.0 for i in range(n - 1)])


def _pairwise_sum(a: list, lo: int, n: int) -> float:
    """NumPy's pairwise summation of ``a[lo:lo + n]`` (``numpy/_core/src/umath/loops_utils.h.src``)."""
    if n < 8:
        res = -0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    if n <= 128:
        r = a[lo : lo + 8]
        i, stop = 8, n - n % 8
        while i < stop:
            for j in range(8):
                r[j] += a[lo + i + j]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for k in range(lo + i, lo + n):
            res += a[k]
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise_sum(a, lo, n2) + _pairwise_sum(a, lo + n2, n - n2)


def _numpy_sum(a: list) -> float:
    """``float(numpy.sum(numpy.array(a, dtype=float64)))``, bit for bit: the reduction starts
    from the identity ``0.0`` and adds the pairwise sum of all elements."""
    return 0.0 + _pairwise_sum(a, 0, len(a))


def _sums_like_numpy() -> bool:
    """Whether :func:`_numpy_sum` matches this NumPy on sums whose rounding depends on the order."""
    import random
    import struct

    import numpy

    rng = random.Random(7)
    probes = [[-0.0], [], [0.5, -1.0, -1.0, 0.5, 1.0, 0.5, 0.0, -1 / 3]]
    probes += [[rng.gauss(0, 10) ** 3 for _ in range(size)] for size in (1, 7, 8, 9, 15, 16, 17, 130, 300)]
    return all(
        struct.pack("<d", _numpy_sum(list(a))) == struct.pack("<d", float(numpy.sum(numpy.asarray(a, dtype=numpy.float64))))
        for a in probes
    )


_SUM_LIKE_NUMPY = _sums_like_numpy()
