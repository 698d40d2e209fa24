"""Node, slice and file health, computed from the ledger alone so every party agrees on it.

Over a trailing window (7 days by default) a node's score is
``0.7 * challenge ratio + 0.3 * heartbeat ratio`` (the weights of PaddleDTX), where the challenge
ratio is proved / (proved + failed) storage challenges resolved in the window (1.0 when there were
none) and the heartbeat ratio is the share of the window's hours (since the node registered) in
which at least one heartbeat of the node was recorded. The score maps to Green (>= 0.85), Yellow
(>= 0.6) or Red; a node that declared itself offline is Red. A slice is as healthy as the best
node holding a replica of it (one good copy keeps it retrievable); a file is as healthy as its
worst slice.

Examples
--------
>>> from dtxfast.ledger.health import HealthPolicy, level_of
>>> level_of(0.9, HealthPolicy()), level_of(0.7, HealthPolicy()), level_of(0.2, HealthPolicy())
('Green', 'Yellow', 'Red')
"""

from __future__ import annotations

import msgspec

__all__ = [
    "GREEN",
    "RED",
    "YELLOW",
    "FileHealth",
    "HealthPolicy",
    "NodeHealth",
    "best",
    "level_of",
    "worst",
]

GREEN, YELLOW, RED = "Green", "Yellow", "Red"
_RANK = {GREEN: 2, YELLOW: 1, RED: 0}


class HealthPolicy(msgspec.Struct, frozen=True):
    """How health is computed.

    Attributes
    ----------
    window_ms : int
        Length of the trailing window (default 7 days).
    challenge_weight, heartbeat_weight : float
        Weights of the two ratios (0.7 / 0.3).
    green, yellow : float
        Lowest score of Green and of Yellow.
    """

    window_ms: int = 7 * 24 * 3_600_000
    challenge_weight: float = 0.7
    heartbeat_weight: float = 0.3
    green: float = 0.85
    yellow: float = 0.6


class NodeHealth(msgspec.Struct, frozen=True):
    """A node's health and the counts it came from."""

    node_id: str
    level: str
    score: float
    proved: int
    failed: int
    heartbeat_hours: int
    expected_hours: int
    online: bool


class FileHealth(msgspec.Struct, frozen=True):
    """A file's health and that of each of its slices."""

    file_id: str
    level: str
    slices: dict[str, str]


def level_of(score: float, policy: HealthPolicy) -> str:
    """Green / Yellow / Red for a score."""
    if score >= policy.green:
        return GREEN
    if score >= policy.yellow:
        return YELLOW
    return RED


def best(levels: list[str]) -> str:
    """The healthiest of some levels (Red for none)."""
    return max(levels, key=_RANK.__getitem__, default=RED)


def worst(levels: list[str]) -> str:
    """The least healthy of some levels (Red for none)."""
    return min(levels, key=_RANK.__getitem__, default=RED)
