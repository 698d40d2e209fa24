"""The examples in the storage area's docstrings run (numpy-style Examples sections)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "dtxfast.crypto.merkle",
    "dtxfast.crypto.aead",
    "dtxfast.protocols.storage",
    "dtxfast.storage",
    "dtxfast.storage.owner",
    "dtxfast.storage.metadata",
    "dtxfast.storage.store",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_documented_rules_are_in_the_docstrings() -> None:
    from dtxfast.crypto import merkle
    from dtxfast.protocols import storage

    assert "0x00 || chunk" in merkle.__doc__ and "0x01 || left || right" in merkle.__doc__
    assert "DEFAULT_CHALLENGE_SIZE" in storage.__doc__ and "0.9^44" in storage.__doc__
