"""The storage area's documented rules are in its docstrings (the examples run in test_docstrings)."""

from __future__ import annotations


def test_documented_rules_are_in_the_docstrings() -> None:
    from dtxfast.crypto import merkle
    from dtxfast.protocols import storage

    assert "0x00 || chunk" in merkle.__doc__ and "0x01 || left || right" in merkle.__doc__
    assert "DEFAULT_CHALLENGE_SIZE" in storage.__doc__ and "0.9^44" in storage.__doc__
