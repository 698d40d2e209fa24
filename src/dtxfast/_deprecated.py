"""Old names kept importable, with a :class:`DeprecationWarning`, after a rename.

Examples
--------
>>> import warnings
>>> __getattr__ = renamed("demo", {"old": "new"}, {"new": 42})
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     value = __getattr__("old")
>>> value, caught[0].category.__name__, str(caught[0].message)
(42, 'DeprecationWarning', 'demo.old is renamed demo.new')
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["renamed"]


def renamed(module: str, names: Mapping[str, str], namespace: Mapping[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves ``names`` (old -> new) from ``namespace`` with a warning."""

    def __getattr__(name: str) -> Any:
        new = names.get(name)
        if new is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} is renamed {module}.{new}", DeprecationWarning, stacklevel=2)
        return namespace[new]

    return __getattr__
