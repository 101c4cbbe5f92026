"""The examples in the docstrings of learners/, state/ and stream/ run and print what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

ROOT_PACKAGES = ["learners", "state", "stream"]


def _modules() -> list[str]:
    names = []
    for package_name in ROOT_PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        names += [f"{package_name}.{m.name}" for m in pkgutil.iter_modules(package.__path__) if m.name != "__main__"]
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
