"""Conversions to and from other libraries' types (optional dependencies, imported lazily)."""

from __future__ import annotations

__all__: list[str] = []
