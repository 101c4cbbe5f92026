"""Importing the object a ``"package.module:attribute"`` spec names.

Configuration names user code this way: a feature transform (``[features] transform``), a model
factory (``[model] preset``) and a drift detector factory. :func:`import_spec` resolves all of
them, with the same one-line messages; what the object must be (callable, a model, a detector)
is for the caller to check.

>>> import_spec("math:fabs", "[features] transform = 'math:fabs'").__name__
'fabs'
>>> import_spec("math:nothing", "model spec 'math:nothing'")
Traceback (most recent call last):
...
learners.specs.SpecError: model spec 'math:nothing': module 'math' has no attribute 'nothing'
"""

from __future__ import annotations

import importlib

from learners.errors import LearnerError

__all__ = ["SpecError", "first_line", "import_spec"]


class SpecError(LearnerError):
    """A ``package.module:attribute`` spec is malformed or names nothing importable."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """``"TypeName: first line of the message"``, at most ``limit`` characters."""
    text = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return message[:limit]


def import_spec(spec: str, what: str, expected: str = "'package.module:attribute'") -> object:
    """Import ``module`` and return its (possibly dotted) ``attribute`` named by ``spec``.

    Parameters
    ----------
    spec
        ``"package.module:attribute"``; ``attribute`` may be a dotted path (``"mod:Class.make"``).
    what
        How a message names the spec, e.g. ``"[features] transform = 'mod:f'"``.
    expected
        The form a malformed spec is told to take, e.g. ``"'package.module:function'"``.

    Returns
    -------
    object
        The attribute, whatever it is.

    Raises
    ------
    SpecError
        A one-line message: the spec is malformed, its module cannot be imported (or fails while
        importing), or the module has no such attribute.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr or ":" in attr:
        raise SpecError(f"{what} is malformed: it must look like {expected}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpecError(f"{what}: cannot import module {module_name!r} ({reason}); install it or fix the name") from None
    except Exception as exc:  # a module that raises while importing is a user error too
        raise SpecError(f"{what}: importing {module_name!r} failed: {first_line(exc)}") from None
    value: object = module
    for part in attr.split("."):
        value = getattr(value, part, None)
        if value is None:
            raise SpecError(f"{what}: module {module_name!r} has no attribute {attr!r}")
    return value
