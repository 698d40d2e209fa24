"""Node, slice and file health, computed from the ledger alone so every party agrees on it.

Over a trailing window (7 days by default) a node's score is
``0.7 * challenge ratio + 0.3 * heartbeat ratio`` (the weights of PaddleDTX), where the challenge
ratio is proved / (proved + failed) storage challenges resolved in the window (1.0 when there were
none) and the heartbeat ratio is the share of the window's hours (since the node registered) in
which at least one heartbeat of the node was recorded. The score maps to Green (>= 0.85), Yellow
(>= 0.6) or Red; a node that declared itself offline is Red. A slice is as healthy as the best
node holding a replica of it (one good copy keeps it retrievable); a file is as healthy as its
worst slice. :class:`LedgerHealth` computes these reports over a ledger's records and is mixed
into :class:`~dtxfast.ledger.Ledger` (:meth:`~LedgerHealth.node_health`,
:meth:`~LedgerHealth.file_health`).

Examples
--------
>>> from dtxfast.ledger.health import HealthPolicy, level_of
>>> level_of(0.9, HealthPolicy()), level_of(0.7, HealthPolicy()), level_of(0.2, HealthPolicy())
('Green', 'Yellow', 'Red')
"""

from __future__ import annotations

import msgspec

from ..errors import NotFound
from .contract import HOUR_MS
from .queries import LedgerQueries
from .records import ChallengeRecord, ChallengeStatus, HeartbeatBucket

__all__ = [
    "GREEN",
    "RED",
    "YELLOW",
    "FileHealth",
    "HealthPolicy",
    "LedgerHealth",
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


_DEFAULT_POLICY = HealthPolicy()


class LedgerHealth(LedgerQueries):
    """The :meth:`node_health` / :meth:`file_health` reports of :class:`~dtxfast.ledger.Ledger`."""

    def node_health(self, node_id: str, *, now_ms: int | None = None,
                    policy: HealthPolicy = _DEFAULT_POLICY) -> NodeHealth:
        """A node's health over the trailing window (see the module docs)."""
        node = self.get_node(node_id)
        now = self._clock() if now_ms is None else now_ms
        start = now - policy.window_ms
        proved = failed = 0
        for key in self._r_keys(ChallengeRecord.KIND, "node", node_id):
            ch = self._load(ChallengeRecord, key)
            if ch is None or not (start < ch.resolved_ms <= now):
                continue
            if ch.status == ChallengeStatus.PROVED:
                proved += 1
            elif ch.status == ChallengeStatus.FAILED:
                failed += 1
        first_hour = max(start, node.registered_ms) // HOUR_MS
        last_hour = now // HOUR_MS
        expected = max(1, last_hour - first_hour + 1)
        beats = 0
        for hour in range(first_hour, last_hour + 1):
            if self._r_get(HeartbeatBucket.KIND, f"{node_id}:{hour}") is not None:
                beats += 1
        ch_ratio = proved / (proved + failed) if proved + failed else 1.0
        hb_ratio = min(1.0, beats / expected)
        score = policy.challenge_weight * ch_ratio + policy.heartbeat_weight * hb_ratio
        level = level_of(score, policy) if node.online else RED
        return NodeHealth(node_id, level, round(score, 6), proved, failed, beats, expected, node.online)

    def file_health(self, file_id: str, *, now_ms: int | None = None,
                    policy: HealthPolicy = _DEFAULT_POLICY) -> FileHealth:
        """A file's health: each slice as its best replica node, the file as its worst slice."""
        f = self.get_file(file_id)
        now = self._clock() if now_ms is None else now_ms
        cache: dict[str, str] = {}

        def level(n: str) -> str:
            if n not in cache:
                try:
                    cache[n] = self.node_health(n, now_ms=now, policy=policy).level
                except NotFound:
                    cache[n] = RED
            return cache[n]

        slices = {s.slice_id: best([level(n) for n in s.nodes]) for s in f.slices}
        overall = worst(list(slices.values())) if f.is_live(now) else RED
        return FileHealth(file_id, overall, slices)
