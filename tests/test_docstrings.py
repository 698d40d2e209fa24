"""Every docstring example in the public modules runs (numpy-style Examples sections)."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import dtxfast

SKIP_PREFIXES = ("dtxfast._kernels", "dtxfast._benchsuite", "dtxfast.__main__")


def _modules() -> list[str]:
    names = ["dtxfast"]
    for info in pkgutil.walk_packages(dtxfast.__path__, prefix="dtxfast."):
        if not info.name.startswith(SKIP_PREFIXES):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
    try:
        source = inspect.getsource(module)
    except OSError:  # an empty __init__.py
        source = ""
    if ">>> " in source:  # examples that stop being collected would pass silently otherwise
        assert result.attempted > 0, f"{name} has examples but doctest ran none"
