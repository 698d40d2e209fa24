"""Vertical federated learning: estimators and runners over the protocols in dtxfast.protocols."""

from __future__ import annotations

__all__: list[str] = []
