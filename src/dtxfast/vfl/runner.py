"""Run the two VFL parties: both in one process (simulation, tests, benchmarks) or one over a channel.

:func:`train_in_process` drives a feature party and a label party (either mode:
:class:`~dtxfast.protocols.vfl.SharedFeatureParty` / :class:`~dtxfast.protocols.vfl.SharedLabelParty`
or :class:`~dtxfast.protocols.vfl.FeatureParty` / :class:`~dtxfast.protocols.vfl.LabelParty`) in lockstep over an
:class:`~dtxfast.transport.channel.InMemoryNetwork` (which counts the bytes, and can keep the
transcript), with an optional rich progress bar over epochs showing the loss.
:func:`run_party` runs one party over any :class:`~dtxfast.transport.channel.Channel` (one party
per process). :func:`predict_in_process` runs the prediction protocol.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProtocolError
from ..protocols.channel import Channel
from ..protocols.vfl import (
    FeatureParty,
    FeaturePredictor,
    LabelParty,
    LabelPredictor,
    ModelPart,
    Prediction,
    SharedFeatureParty,
    SharedLabelParty,
)
from ..transport.channel import InMemoryNetwork

__all__ = [
    "FEATURE",
    "LABEL",
    "TrainingRun",
    "load_model_part",
    "predict_in_process",
    "run_party",
    "save_model_part",
    "train_in_process",
]

FEATURE, LABEL = "feature", "label"

AnyFeatureParty = FeatureParty | SharedFeatureParty
AnyLabelParty = LabelParty | SharedLabelParty
EpochCallback = Callable[[int, float, AnyFeatureParty, AnyLabelParty], None]


@dataclass
class TrainingRun:
    """Result of an in-process training: both parties and what crossed the wire."""

    feature: AnyFeatureParty
    label: AnyLabelParty
    network: InMemoryNetwork
    rounds: int
    history: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def bytes_total(self) -> int:
        return self.network.bytes_sent(FEATURE) + self.network.bytes_sent(LABEL)

    @property
    def bytes_per_epoch(self) -> float:
        return self.bytes_total / max(1, self.epochs)


def _progress(console: Any, total: int) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
                    console=console, transient=True)


def train_in_process(
    feature: AnyFeatureParty,
    label: AnyLabelParty,
    *,
    record: bool = False,
    progress: Any = None,
    description: str = "training",
    on_epoch: EpochCallback | None = None,
) -> TrainingRun:
    """Drive both parties to the end of training in this process.

    Parameters
    ----------
    feature, label : the two parties (fresh, before ``hello``).
    record : bool
        Keep every message in ``run.network.transcript``.
    progress : bool or rich Console, optional
        Show a progress bar over epochs with the current loss (cleared when training ends, or
        fails: the final loss is in the returned history, not left on the screen).
    on_epoch : callable, optional
        ``on_epoch(epoch, loss, feature, label)`` after every finished epoch (both parties agree).
    """
    net = InMemoryNetwork([FEATURE, LABEL], record=record)
    ca, cb = net.channel(FEATURE), net.channel(LABEL)
    bar = None
    if progress:
        from rich.console import Console

        console = progress if isinstance(progress, Console) else None
        bar = _progress(console, feature.config.max_epochs)
        task = bar.add_task(description, total=feature.config.max_epochs, loss="-")
        bar.start()
    rounds = 0
    try:
        ca.send(LABEL, feature.hello())
        cb.send(FEATURE, label.hello())
        seen = 0
        while True:
            out_a = feature.receive(ca.recv(LABEL, timeout=0))
            out_b = label.receive(cb.recv(FEATURE, timeout=0))
            rounds += 1
            if (out_a is None) != (out_b is None):
                raise ProtocolError("the parties disagree on the end of training")
            while seen < len(label.history):
                loss = label.history[seen]
                other = feature.history[seen]
                if other != loss and not (math.isnan(other) and math.isnan(loss)):
                    raise ProtocolError("the parties disagree on the loss")
                if bar is not None:
                    bar.update(task, completed=seen + 1, loss="(not revealed)" if math.isnan(loss) else f"{loss:.6g}")
                if on_epoch is not None:
                    on_epoch(seen, loss, feature, label)
                seen += 1
            if out_a is None:
                break
            ca.send(LABEL, out_a)
            cb.send(FEATURE, out_b)  # type: ignore[arg-type]
        if bar is not None:
            bar.update(task, total=seen, completed=seen)
    finally:
        if bar is not None:
            bar.stop()
    return TrainingRun(feature, label, net, rounds, list(label.history))


def run_party(party: AnyFeatureParty | AnyLabelParty, channel: Channel, peer: str, *,
              timeout: float | None = 600.0) -> None:
    """Run one party to the end of training over ``channel`` (the peer runs the other role)."""
    channel.send(peer, party.hello())
    while True:
        out = party.receive(channel.recv(peer, timeout=timeout))
        if out is None:
            return
        channel.send(peer, out)


def predict_in_process(feature_part: ModelPart, X_feature: Any, label_part: ModelPart, X_label: Any,
                       *, threshold: float | None = None) -> Prediction:
    """The prediction protocol in one process; returns what the label party obtains."""
    msg = FeaturePredictor(feature_part, X_feature).message()
    return LabelPredictor(label_part, X_label, threshold=threshold).receive(msg)


def save_model_part(part: ModelPart, path: str) -> None:
    """Write one party's model part (versioned JSON with a SHA-256 checksum)."""
    with open(path, "wb") as f:
        f.write(part.to_bytes())


def load_model_part(path: str) -> ModelPart:
    """Read a model part written by :func:`save_model_part` (checks version and checksum)."""
    with open(path, "rb") as f:
        return ModelPart.from_bytes(f.read())
