"""The label of a task from a raw ``y``: one rule per task, and a refusal rather than a guess.

A label message's ``y`` may be a bool, a number or a string (CSV and many JSON producers send
``"true"``, ``"yes"`` or ``"fraud"``). River's binary metrics compare against the positive class
``True``, so a binary label that stays ``"yes"`` would be scored as a third class and report a
wrong ROC AUC without any error. :class:`LabelParser` therefore turns every raw ``y`` into the
label of its task, or raises :class:`LabelError`:

* **binary**: the label is a ``bool``. ``True``/``False`` stay; the numbers ``1``/``0`` (int or
  float) become ``True``/``False``. Without configured class names, the strings ``"true"``,
  ``"yes"``, ``"1"`` and ``"false"``, ``"no"``, ``"0"`` (any case, surrounding blanks ignored)
  become ``True``/``False``. With ``positive_label`` and ``negative_label`` (both or neither),
  a string must be exactly one of the two (case matters), which become ``True``/``False``; any
  other string is refused. So a typo is never silently a negative.
* **multiclass**: bools, numbers and strings are kept as they are (a class ``"3"`` and a class
  ``3`` are different classes, as in River).
* **regression**: the label is a finite number; a string that is a number (``"2.5"``, as CSV
  delivers it) becomes that ``float``; bools and other strings are refused.

A ``y`` of any other type (``None``, a list, a map) raises :class:`LabelTypeError`.

>>> parse = LabelParser("binary").parse
>>> parse("Yes"), parse(0), parse(True)
(True, False, True)
>>> parse("maybe")
Traceback (most recent call last):
...
learners.labels.LabelError: binary label 'maybe' is not true/false, yes/no or 1/0; name your two classes with [model] positive_label and negative_label

>>> LabelParser("binary", positive_label="fraud", negative_label="ok").parse("fraud")
True
>>> LabelParser("regression").parse("2.5")
2.5
"""

from __future__ import annotations

import dataclasses
import math
import typing

from learners.errors import LearnerError
from learners.presets import check_task

__all__ = ["BINARY_SPELLINGS", "LabelError", "LabelParser", "LabelTypeError"]

#: The strings a binary task understands without configured class names (compared in lower case).
BINARY_SPELLINGS: dict[str, bool] = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}

_MAX_SHOWN = 64  # characters of a refused label quoted in a message


class LabelError(ValueError):
    """A ``y`` that is no label of the task (e.g. ``"maybe"`` or ``2`` for a binary task)."""


class LabelTypeError(LabelError, TypeError):
    """A ``y`` that is not a bool, a number or a string at all."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


@dataclasses.dataclass(frozen=True)
class LabelParser:
    """Turns a raw ``y`` into the label of ``task`` (the rules are in the module docstring).

    Parameters
    ----------
    task
        ``"binary"``, ``"multiclass"`` or ``"regression"``.
    positive_label, negative_label
        Binary tasks only: the two strings that name the classes ``True`` and ``False``; both or
        neither (``""``).

    Raises
    ------
    LearnerError
        An unknown task, only one of the two class names, the same name twice, or class names
        for a task that is not binary.

    Examples
    --------

    >>> spam = LabelParser("binary", positive_label="spam", negative_label="ham")
    >>> spam.parse("ham"), spam.parse(1)
    (False, True)
    >>> spam.parse("Spam")
    Traceback (most recent call last):
    ...
    learners.labels.LabelError: binary label 'Spam' is neither positive_label 'spam' nor negative_label 'ham'
    >>> LabelParser("multiclass").parse(None)
    Traceback (most recent call last):
    ...
    learners.labels.LabelTypeError: a label must be a bool, number or string, got NoneType

    """

    task: str
    positive_label: str = ""
    negative_label: str = ""

    def __post_init__(self) -> None:
        check_task(self.task)
        positive, negative = self.positive_label, self.negative_label
        if not isinstance(positive, str) or not isinstance(negative, str):
            raise LearnerError("[model] positive_label and negative_label must be strings")
        if not positive and not negative:
            return
        if self.task != "binary":
            raise LearnerError(
                f"[model] positive_label and negative_label name the two classes of a binary task, "
                f"not of a {self.task} task; leave them empty"
            )
        if not positive or not negative:
            raise LearnerError(
                "[model] positive_label and negative_label go together: set both (the strings of "
                "your two classes) or neither"
            )
        if positive == negative:
            raise LearnerError(f"[model] positive_label and negative_label are both {positive!r}; name two classes")

    def parse(self, y: typing.Any) -> typing.Any:
        """The label of the task for ``y``; raises :class:`LabelError` or :class:`LabelTypeError`."""
        t = type(y)
        if t is not bool and t is not int and t is not float and t is not str:
            raise LabelTypeError(f"a label must be a bool, number or string, got {t.__name__}")
        if self.task == "binary":
            return self._binary(y, t)
        if self.task == "regression":
            return self._number(y, t)
        if t is float and not math.isfinite(y):
            raise LabelError(f"label {y} is not a class")
        return y

    def _binary(self, y: typing.Any, t: type) -> bool:
        if t is bool:
            return y
        if t is not str:
            if y == 1:
                return True
            if y == 0:
                return False
            raise LabelError(f"binary label {_shown(y)} is not 0 or 1 (nor true/false)")
        if self.positive_label:
            if y == self.positive_label:
                return True
            if y == self.negative_label:
                return False
            raise LabelError(
                f"binary label {_shown(y)} is neither positive_label {self.positive_label!r} "
                f"nor negative_label {self.negative_label!r}"
            )
        label = BINARY_SPELLINGS.get(y.strip().lower())
        if label is None:
            raise LabelError(
                f"binary label {_shown(y)} is not true/false, yes/no or 1/0; "
                "name your two classes with [model] positive_label and negative_label"
            )
        return label

    @staticmethod
    def _number(y: typing.Any, t: type) -> int | float:
        if t is bool:
            raise LabelError(f"a regression label must be a number, got the bool {y}")
        if t is str:
            try:
                value = float(y)
            except ValueError:
                raise LabelError(f"regression label {_shown(y)} is not a number") from None
        else:
            value = y
        if not math.isfinite(value):
            raise LabelError(f"regression label {_shown(y)} is not a finite number")
        return value
