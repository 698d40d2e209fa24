"""``python -m dtxfast`` runs the ``dtx`` command line."""

from .cli import _entry

_entry()
