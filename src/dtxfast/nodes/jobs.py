"""The computation an executor runs for its party of a task: PSI alignment, then training or prediction.

A task (published on the ledger by a requester) names two parties for linear and logistic
regression and three for the neural network (``dnn``). Each executor runs
:func:`run_train_party` or :func:`run_predict_party` for its own party, over a
:class:`~dtxfast.protocols.channel.Channel` to the other parties (the executor passes a
mutual-TLS :class:`~dtxfast.transport.tls.TlsChannel`; tests use
:class:`~dtxfast.transport.channel.InMemoryNetwork` channels, one thread per party). This module
opens no socket and reads no ledger: the executor hands it the task's public parameters
(:class:`TaskSpec`), this party's sample file (:func:`read_party_csv`) and the channel.

Steps of a party's run, and what crosses the channel
----------------------------------------------------
1. **Handshake** (public). Every party sends every other one a small JSON message: a digest of
   the task (algorithm, kind, parameters, task id), whether its file holds the label column, its
   number of feature columns, a fresh random nonce; in a prediction task also its model part's
   role, training party index and model id. Every party sees the same messages, so all reach the
   same verdict: exactly one label holder (else :class:`~dtxfast.errors.ParameterError` at every
   party), one task (else :class:`~dtxfast.errors.ProtocolError`), and for prediction model
   parts of one training. The column *names* never leave the party. For ``dnn`` the label party
   also announces the number of network outputs (1, or the number of classes above two).
2. **PSI alignment** (RSA blind signatures, :mod:`dtxfast.protocols.psi`, ``psiBits``).

   - Two parties: the label party signs (fresh RSA key), the feature party requests and learns the
     intersection, then sends its tags back (a ``RESULT`` message) so the label party learns the
     same intersection and nothing else. The label party learns the feature party's id count;
     the feature party learns the label party's id count; both learn the common ids.
   - Three parties: the label party is the signer C; of the other two, the lower task index is the
     leader A and the other is B (the three-party protocol of :mod:`dtxfast.protocols.psi`). A
     learns ``A ∩ C`` (a pairwise intersection: the price of the leader role) and the final
     ``A ∩ B ∩ C``; B learns ``|A ∩ C|`` and the final intersection; C learns ``|A|``, ``|B|`` and
     the final intersection. No party learns anything else about another's ids.

   Every party then orders the common rows by id (the same order everywhere).
3. **Evaluation split** (``evalMethod``): ``split`` holds out ``testSize`` of the aligned rows;
   ``kfold`` and ``loo`` train one model per fold and then the final model on every row. The
   split is derived from the public ``seed`` (default: from the task id), identically at every
   party, so no message is needed.
4. **Training** with the L2 parties: linear / logistic with
   :func:`dtxfast.protocols.vfl.feature_party` / :func:`~dtxfast.protocols.vfl.label_party`
   (each party's own Paillier key of ``keyBits``; what each learns is tabulated in
   :mod:`dtxfast.protocols.vfl`); ``dnn`` with :func:`dtxfast.protocols.mpc.mlp.train_program` on
   replicated secret shares (each party standardizes its own columns; the label party standardizes
   the target of a regression).
5. **Evaluation** on the held-out rows: the prediction protocol runs on them and the label party
   (only it) computes the metrics with :mod:`dtxfast.vfl.evaluation`.

Every ``recv`` waits at most ``timeout`` seconds; a peer that goes away makes the others raise
:class:`~dtxfast.errors.ProtocolError` (at once on the TLS channel, which sees the reset; after
``timeout`` at the latest), naming the stage.

Model parts stay with their party: linear / logistic store :meth:`ModelPart.to_bytes
<dtxfast.protocols.vfl.ModelPart.to_bytes>` (with the party's column names and the model id in
``meta``); ``dnn`` stores this party's shares of the weights, the network's shape, its own
standardizer and its role, as checksummed, versioned JSON.

Examples
--------
>>> spec = TaskSpec.from_params("linear", "train", label="MEDV", id_column="id",
...                             params=parse_assignments(["alpha=0.2", "epochs=5"]), parties=2)
>>> spec.params["alpha"], spec.params["epochs"], spec.params["mode"]
(0.2, 5, 'ss')
>>> TaskSpec.from_ledger("linear", "train", spec.to_ledger()) == spec
True
>>> TaskSpec.from_params("dnn", "train", label="y", id_column="id", params={}, parties=2)
Traceback (most recent call last):
...
dtxfast.errors.ParameterError: a dnn task has 3 parties, not 2
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..crypto.blind_rsa import BlindRSASigner
from ..crypto.paillier import generate_keypair
from ..errors import DtxError, MalformedInput, ParameterError, ProtocolError
from ..protocols.channel import BytesLike, Channel
from ..protocols.mpc import ArithShare, MPCParty, run_blocking
from ..protocols.mpc.fixedpoint import DEFAULT_FRAC_BITS
from ..protocols.mpc.mlp import MLPSchedule, init_params, predict_program, train_program
from ..protocols.psi import PSIRequester, PSISigner
from ..protocols.psi_runner import (
    DONE,
    accept_requester,
    greet_signer,
    run_requester,
    run_signer,
    send_requests,
    serve_requests,
)
from ..protocols.vfl import (
    FeaturePredictor,
    LabelPredictor,
    ModelPart,
    Standardizer,
    TrainingConfig,
    encode_labels,
    feature_party,
    finish_prediction,
    label_party,
)
from ..vfl.evaluation import (
    classification_metrics,
    kfold_splits,
    leave_one_out_splits,
    random_split,
    regression_metrics,
    seed_from_task,
)
from ..vfl.dnn import _FIXED_SEED
from ..vfl.jobs import PartyTable, PredictOutcome, read_table

__all__ = [
    "ALGORITHMS",
    "KINDS",
    "PartyTable",
    "PredictOutcome",
    "Progress",
    "TaskSpec",
    "TrainOutcome",
    "parse_assignments",
    "read_party_csv",
    "run_predict_party",
    "run_train_party",
]

ALGORITHMS = ("linear", "logistic", "dnn")
KINDS = ("train", "predict")
_PARTIES = {"linear": 2, "logistic": 2, "dnn": 3}

#: ``progress(stage, done, total, loss)``: stages ``psi``, ``train``, ``evaluate``, ``predict``
Progress = Callable[[str, int, int, "float | None"], None]


# ================================================================================================
# Task parameters
# ================================================================================================
@dataclass(frozen=True)
class _Param:
    kind: str  # int | float | bool | choice | str | layers
    default: Any = None  # None: no default (absent unless given)
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False
    choices: tuple[str, ...] = ()
    doc: str = ""


_COMMON = {
    "psiBits": _Param("int", 2048, 1024, 8192, doc="RSA key size of the PSI alignment"),
    "evalMethod": _Param("choice", "none", choices=("none", "split", "kfold", "loo"),
                         doc="evaluation of the trained model"),
    "testSize": _Param("float", 0.3, 0.0, 1.0, open_lo=True, open_hi=True, doc="held-out fraction (split)"),
    "folds": _Param("int", 5, 2, 10_000, doc="number of folds (kfold)"),
    "seed": _Param("int", None, 0, 2**63 - 1, doc="public seed of splits and batches (default: from the task id)"),
}
_GLM = {
    "mode": _Param("choice", "ss", choices=("ss", "fast")),
    "alpha": _Param("float", 0.1, 0.0, 1e6, open_lo=True, doc="learning rate"),
    "epochs": _Param("int", 100, 1, 1_000_000),
    "batchSize": _Param("int", 1024, 0, 2**31 - 1, doc="0 = full batch"),
    "regMode": _Param("choice", "none", choices=("none", "l1", "l2")),
    "regParam": _Param("float", 0.0, 0.0, 1e6),
    "amplitude": _Param("float", 0.0, 0.0, 1e6),
    "accuracy": _Param("int", 8, 2, 18),
    "keyBits": _Param("int", 2048, 1024, 8192, doc="Paillier key size (even)"),
    "shuffle": _Param("bool", True),
}
_LOGISTIC = {
    "positiveClass": _Param("str", None, doc="label value of the positive class"),
    "threshold": _Param("float", None, 0.0, 1.0, open_lo=True, open_hi=True,
                        doc="positive-class probability threshold (training: 0.5; prediction: the model's)"),
}
_DNN = {
    "hiddenLayers": _Param("layers", (30, 15), doc='widths of the ReLU hidden layers, e.g. "32,16"'),
    "learningRate": _Param("float", 0.1, 0.0, 1e6, open_lo=True),
    "epochs": _Param("int", 100, 1, 1_000_000),
    "batchSize": _Param("int", 32, 1, 2**31 - 1),
    "regParam": _Param("float", 0.01, 0.0, 1e6, doc="L2 weight decay"),
    "lrDecay": _Param("float", 0.02, 0.0, 1e6),
    "objective": _Param("choice", "regression", choices=("regression", "classification")),
    "fracBits": _Param("int", DEFAULT_FRAC_BITS, 8, 30, doc="fixed-point fractional bits"),
    "threshold": _Param("float", None, 0.0, 1.0, open_lo=True, open_hi=True,
                        doc="classification: as for logistic"),
}
_TABLES: dict[str, dict[str, _Param]] = {
    "linear": {**_COMMON, **_GLM},
    "logistic": {**_COMMON, **_GLM, **_LOGISTIC},
    "dnn": {**_COMMON, **_DNN},
}
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _coerce(name: str, p: _Param, value: Any) -> Any:
    """One parameter's typed, range-checked value; ParameterError (one line) otherwise."""
    shown = repr(value) if not isinstance(value, str) else repr(value.strip())
    if p.kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ParameterError(f"{name} must be true or false, not {shown}")
    if p.kind == "choice":
        if isinstance(value, str) and value.strip().lower() in p.choices:
            return value.strip().lower()
        raise ParameterError(f"{name} must be one of {', '.join(p.choices)}, not {shown}")
    if p.kind == "str":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ParameterError(f"{name} must be a text value, not {shown}")
        text = value.strip() if isinstance(value, str) else repr(value)
        if not text or len(text) > 256 or any(ord(c) < 0x20 for c in text):
            raise ParameterError(f"{name} must be 1 to 256 printable characters, not {shown}")
        return text
    if p.kind == "layers":
        if isinstance(value, (list, tuple)):
            parts = list(value)
        elif isinstance(value, str):
            parts = [s.strip() for s in value.split(",")]
        elif isinstance(value, int) and not isinstance(value, bool):
            parts = [value]
        else:
            raise ParameterError(f"{name} must be layer widths like \"32,16\", not {shown}")
        try:
            widths = tuple(int(x) for x in parts)
        except (TypeError, ValueError):
            raise ParameterError(f"{name} must be layer widths like \"32,16\", not {shown}") from None
        if not 1 <= len(widths) <= 16 or any(not 1 <= w <= 4096 for w in widths):
            raise ParameterError(f"{name} must be 1 to 16 layer widths of 1 to 4096, not {shown}")
        return widths
    # numbers
    if isinstance(value, bool):
        raise ParameterError(f"{name} must be a number, not {shown}")
    num: float | int
    if isinstance(value, str):
        text = value.strip()
        try:
            num = int(text) if p.kind == "int" else float(text)
        except ValueError:
            what = "an integer" if p.kind == "int" else "a number"
            raise ParameterError(f"{name} must be {what}, not {shown}") from None
    elif isinstance(value, (int, float, np.integer, np.floating)):
        num = value.item() if isinstance(value, np.generic) else value
    else:
        raise ParameterError(f"{name} must be a number, not {shown}")
    if isinstance(num, float) and not math.isfinite(num):
        raise ParameterError(f"{name} must be a finite number, not {shown}")
    if p.kind == "int":
        if isinstance(num, float):
            if not num.is_integer():
                raise ParameterError(f"{name} must be an integer, not {shown}")
            num = int(num)
    else:
        num = float(num)
    lo_bad = p.lo is not None and (num <= p.lo if p.open_lo else num < p.lo)
    hi_bad = p.hi is not None and (num >= p.hi if p.open_hi else num > p.hi)
    if lo_bad or hi_bad:
        lb = "(" if p.open_lo else "["
        rb = ")" if p.open_hi else "]"
        lo = p.lo if p.kind == "float" else int(p.lo or 0)
        hi = p.hi if p.kind == "float" else int(p.hi or 0)
        raise ParameterError(f"{name} must lie in {lb}{lo}, {hi}{rb}, not {shown}")
    return num


def _ledger_value(v: Any) -> str | int | float | bool:
    if isinstance(v, tuple):
        return ",".join(str(x) for x in v)
    return v


@dataclass(frozen=True)
class TaskSpec:
    """The validated public parameters of a task (what the requester publishes on the ledger).

    Parameters
    ----------
    algorithm : {"linear", "logistic", "dnn"}
    kind : {"train", "predict"}
    label : str
        Name of the label column (held by exactly one party's file).
    id_column : str
        Name of the id column (in every party's file).
    params : mapping
        Normalized, typed values with the defaults filled in (PaddleDTX's names where they
        exist); build it with :meth:`from_params` or :meth:`from_ledger`, which validate.

    Examples
    --------
    >>> s = TaskSpec.from_params("logistic", "train", label="Label", id_column="id",
    ...                          params={"positiveClass": "Iris-setosa", "batchSize": "0"}, parties=2)
    >>> s.params["batchSize"], s.params["positiveClass"], s.to_ledger()["idColumn"]
    (0, 'Iris-setosa', 'id')
    >>> TaskSpec.from_params("linear", "train", label="y", id_column="id", params={"alpha": "nan"},
    ...                      parties=2)
    Traceback (most recent call last):
    ...
    dtxfast.errors.ParameterError: alpha must be a finite number, not 'nan'
    """

    algorithm: str
    kind: str
    label: str
    id_column: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:  # params is a dict: hash the canonical form
        return hash(self.digest())

    @property
    def parties(self) -> int:
        """Number of parties the algorithm runs with (2, or 3 for ``dnn``)."""
        return _PARTIES[self.algorithm]

    @classmethod
    def known_params(cls, algorithm: str) -> list[str]:
        """The parameter names of ``algorithm``, sorted."""
        if algorithm not in _TABLES:
            raise ParameterError(f"unknown algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")
        return sorted(_TABLES[algorithm])

    @classmethod
    def from_params(cls, algorithm: str, kind: str, *, label: str, id_column: str,
                    params: Mapping[str, str | int | float | bool], parties: int) -> TaskSpec:
        """Validate and normalize a task's parameters.

        Raises
        ------
        ParameterError
            One line naming the problem: an unknown algorithm or kind, a wrong number of parties
            (2 for linear / logistic, 3 for dnn), an unknown parameter name (the known ones are
            listed), a value of the wrong type, out of range, NaN or infinite.
        """
        if algorithm not in ALGORITHMS:
            raise ParameterError(f"unknown algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")
        if kind not in KINDS:
            raise ParameterError(f"unknown task kind {kind!r} (known: {', '.join(KINDS)})")
        if isinstance(parties, bool) or not isinstance(parties, int) or parties != _PARTIES[algorithm]:
            raise ParameterError(f"a {algorithm} task has {_PARTIES[algorithm]} parties, not {parties}")
        for what, name in (("label", label), ("id column", id_column)):
            if not isinstance(name, str) or not name.strip() or len(name) > 256:
                raise ParameterError(f"the {what} must be a column name of 1 to 256 characters, not {name!r}")
        if label == id_column:
            raise ParameterError(f"the label and the id column are both {label!r}")
        if not isinstance(params, Mapping):
            raise ParameterError("params must be a mapping of parameter names to values")
        table = _TABLES[algorithm]
        out: dict[str, Any] = {}
        for name, value in params.items():
            if name not in table:
                raise ParameterError(f"unknown parameter {name!r} for a {algorithm} task "
                                     f"(known: {', '.join(sorted(table))})")
            out[name] = _coerce(name, table[name], value)
        for name, p in table.items():
            if name not in out and p.default is not None:
                out[name] = p.default
        if algorithm != "dnn":
            if out["keyBits"] % 2:
                raise ParameterError(f"keyBits must be even, not {out['keyBits']}")
            if out["mode"] == "ss" and out["regMode"] == "l1":
                raise ParameterError("regMode=l1 needs the sign of each weight, which mode=ss does not "
                                     "compute: use regMode=l2 or mode=fast")
        return cls(algorithm, kind, label, id_column, out)

    def to_ledger(self) -> dict[str, str | int | float | bool]:
        """What goes into ``PublishTask.params``: every parameter plus ``label`` and ``idColumn``.

        :meth:`from_ledger` reads it back into an equal :class:`TaskSpec`.
        """
        out: dict[str, str | int | float | bool] = {k: _ledger_value(v) for k, v in sorted(self.params.items())}
        out["label"] = self.label
        out["idColumn"] = self.id_column
        return out

    @classmethod
    def from_ledger(cls, algorithm: str, kind: str, params: Mapping[str, str | int | float | bool]) -> TaskSpec:
        """Rebuild (and re-validate) the spec of a task read from the ledger."""
        rest = dict(params)
        label, idc = rest.pop("label", None), rest.pop("idColumn", None)
        if not isinstance(label, str) or not isinstance(idc, str):
            raise ParameterError("the task's parameters lack 'label' or 'idColumn'")
        if algorithm not in _PARTIES:
            raise ParameterError(f"unknown algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")
        return cls.from_params(algorithm, kind, label=label, id_column=idc, params=rest,
                               parties=_PARTIES[algorithm])

    def digest(self, task_id: str | None = None) -> str:
        """SHA-256 (hex) of the canonical spec and task id: the parties check they run one task."""
        doc = {"algorithm": self.algorithm, "kind": self.kind, "params": self.to_ledger(), "task": task_id}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    @property
    def classifies(self) -> bool:
        """Whether the task predicts classes (logistic, or a dnn with ``objective=classification``)."""
        return self.algorithm == "logistic" or self.params.get("objective") == "classification"


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["alpha=0.1", "batchSize=64"]`` -> ``{"alpha": "0.1", "batchSize": "64"}``.

    Values stay text; :meth:`TaskSpec.from_params` types and checks them.

    Examples
    --------
    >>> parse_assignments(["alpha=0.1", "hiddenLayers=32,16"])
    {'alpha': '0.1', 'hiddenLayers': '32,16'}
    >>> parse_assignments(["alpha"])
    Traceback (most recent call last):
    ...
    dtxfast.errors.ParameterError: parameter 'alpha' is not of the form name=value
    """
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParameterError(f"parameter {item!r} is not of the form name=value")
        if name in out:
            raise ParameterError(f"parameter {name!r} is given twice")
        out[name] = value.strip()
    return out


# ================================================================================================
# A party's sample file
# ================================================================================================
def read_party_csv(path: Any, spec: TaskSpec) -> PartyTable:
    """Read one party's CSV file: the id column and the label column by name, the rest features.

    Parameters
    ----------
    path : path-like
        A CSV file with a header line.
    spec : TaskSpec
        Gives the id column (``spec.id_column``, required) and the label column (``spec.label``,
        optional: only the label party's file has it).

    Raises
    ------
    ParameterError
        One line naming the file and the line: not UTF-8, empty, no id column, a row of the
        wrong length, an empty or duplicate id, a feature that is not a finite number, a
        regression label that is not a number.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "b.csv"
    >>> _ = p.write_text("id,AGE,MEDV\\nu2,65.2,24.0\\nu1,78.9,21.6\\n")
    >>> spec = TaskSpec.from_params("linear", "train", label="MEDV", id_column="id", params={}, parties=2)
    >>> t = read_party_csv(p, spec)
    >>> t.ids, t.columns, t.X.tolist(), t.y.tolist()
    (['u2', 'u1'], ['AGE'], [[65.2], [78.9]], [24.0, 21.6])
    >>> _ = p.write_text("id,AGE\\nu2,65.2\\nu1,old\\n")
    >>> read_party_csv(p, spec)
    Traceback (most recent call last):
    ...
    dtxfast.errors.ParameterError: ...b.csv, line 3 (id 'u1'): column 'AGE' is not a number: 'old'
    """
    return read_table(path, id_column=spec.id_column, label=spec.label, numeric_label=not spec.classifies)


# ================================================================================================
# Outcomes
# ================================================================================================
@dataclass
class TrainOutcome:
    """What a party keeps after training.

    Attributes
    ----------
    model : bytes
        This party's model part (versioned, checksummed): to store locally, and to pass to
        :func:`run_predict_party`.
    rows : int
        Aligned training rows (the PSI intersection).
    metrics : dict
        At the label party the evaluation metrics when ``evalMethod`` is not ``none``; else ``{}``.
    history : list of float
        Loss per epoch of the final model's training (NaN where the loss was not revealed).
    """

    model: bytes
    rows: int
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)


# ================================================================================================
# The run context: channel with timeouts and stage names, handshake, PSI
# ================================================================================================
class _TaskChannel(Channel):
    """The party's channel with a default timeout and the current stage in every error."""

    def __init__(self, inner: Channel, timeout: float) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "")
        self.timeout = timeout
        self.stage = "handshake"

    def send(self, peer: str, data: BytesLike) -> None:
        try:
            self.inner.send(peer, data)
        except ProtocolError as exc:
            raise ProtocolError(f"{self.stage}: {exc}") from None
        except OSError as exc:
            raise ProtocolError(f"{self.stage}: the link to {peer} failed ({exc})") from None

    def recv(self, peer: str, timeout: float | None = None) -> bytes:
        t = self.timeout if timeout is None else min(timeout, self.timeout)
        try:
            return self.inner.recv(peer, timeout=t)
        except ProtocolError as exc:
            raise ProtocolError(f"{self.stage}: {exc}") from None
        except OSError as exc:
            raise ProtocolError(f"{self.stage}: the link to {peer} failed ({exc})") from None

    def poll(self, peer: str) -> bool:
        return self.inner.poll(peer)

    @property
    def bytes_sent(self) -> int:
        return self.inner.bytes_sent

    @property
    def bytes_received(self) -> int:
        return self.inner.bytes_received


_HELLO_FORMAT = "dtxfast-task-hello"


class _Run:
    """One party's run of a task: validated arguments, channel, progress, handshake, PSI."""

    def __init__(self, spec: TaskSpec, index: int, table: PartyTable, channel: Channel,
                 names: Sequence[str], progress: Progress | None, timeout: float, task_id: str | None,
                 compute: Any = None) -> None:
        if not isinstance(spec, TaskSpec):
            raise ParameterError("spec must be a TaskSpec")
        names = [str(n) for n in names]
        if len(names) != spec.parties:
            raise ParameterError(f"a {spec.algorithm} task has {spec.parties} parties, not {len(names)}")
        if len(set(names)) != len(names):
            raise ParameterError("the parties' channel names must be distinct")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(names):
            raise ParameterError(f"party index must be 0 to {len(names) - 1}, not {index!r}")
        own = getattr(channel, "name", None)
        if own is not None and own != names[index]:
            raise ParameterError(f"the channel belongs to {own!r}, party {index} is {names[index]!r}")
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise ParameterError("timeout must be a positive number of seconds")
        if not table.ids:
            raise ParameterError("the party's table has no rows")
        self.spec, self.index, self.table, self.names = spec, index, table, names
        self.me = names[index]
        self.peers = [n for i, n in enumerate(names) if i != index]
        self.ch = _TaskChannel(channel, float(timeout))
        self._progress = progress
        self.task_id = task_id
        self.compute = compute
        seed = spec.params.get("seed")
        if seed is None:
            seed = seed_from_task(task_id) if task_id is not None else 0
        self.seed = int(seed)

    def stage(self, name: str) -> None:
        self.ch.stage = name

    def report(self, stage: str, done: int, total: int, loss: float | None = None) -> None:
        if self._progress is not None:
            self._progress(stage, done, total, loss)

    # -- handshake ----------------------------------------------------------------------------
    def handshake(self, prepare: Callable[[], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Send this party's public facts to every peer; return every party's (by index).

        ``prepare()`` runs this party's local checks first and returns the extra facts to send.
        A party whose checks fail still sends its hello, marked not ready (the reason stays
        local: it may name columns or labels), so every party stops at once with a
        :class:`ParameterError` instead of waiting for a peer that will never answer.
        """
        self.stage("handshake")
        extra: dict[str, Any] = {}
        problem: ParameterError | None = None
        if prepare is not None:
            try:
                extra = prepare()
            except ParameterError as exc:
                problem = exc
        mine = {"format": _HELLO_FORMAT, "version": 1, "task": self.spec.digest(self.task_id),
                "label": self.table.has_label, "ncols": len(self.table.columns),
                "nonce": os.urandom(16).hex(), "ready": problem is None, **extra}
        data = json.dumps(mine, sort_keys=True).encode()
        for peer in self.peers:
            self.ch.send(peer, data)
        if problem is not None:
            raise problem  # the peers stop on the not-ready hello
        hellos: list[dict[str, Any]] = []
        for i, name in enumerate(self.names):
            if i == self.index:
                hellos.append(mine)
                continue
            raw = self.ch.recv(name)
            try:
                h = json.loads(raw.decode())
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise ProtocolError(f"handshake: {name} sent a malformed hello") from None
            if not isinstance(h, dict) or h.get("format") != _HELLO_FORMAT or h.get("version") != 1:
                raise ProtocolError(f"handshake: {name} sent a malformed hello")
            if not isinstance(h.get("ncols"), int) or not isinstance(h.get("label"), bool):
                raise ProtocolError(f"handshake: {name} sent a malformed hello")
            if not hmac.compare_digest(str(h.get("task")), mine["task"]):
                raise ProtocolError(f"handshake: {name} runs another task or other parameters")
            hellos.append(h)
        for name, h in zip(self.names, hellos):
            if h.get("ready") is not True:
                raise ParameterError(f"party {name} cannot run this task (its file or model part is unfit; "
                                     "its own log says why)")
        return hellos

    def transcript_id(self, hellos: list[dict[str, Any]]) -> str:
        """A model id every party derives alike from the handshake (random nonces included)."""
        doc = json.dumps(hellos, sort_keys=True).encode()
        return hashlib.sha256(b"dtxfast/task-model/" + doc).hexdigest()[:32]

    # -- PSI ----------------------------------------------------------------------------------
    def align(self, signer: int) -> tuple[list[str], np.ndarray]:
        """PSI with party ``signer`` signing; returns (common ids sorted, this party's row positions)."""
        self.stage("psi")
        bits = int(self.spec.params["psiBits"])
        ids = self.table.ids
        names = self.names
        self.report("psi", 0, 1)
        if len(names) == 2:
            other = names[1 - signer]
            if self.index == signer:
                s = PSISigner(ids, BlindRSASigner.generate(bits), compute=self.compute)
                run_signer(s, self.ch, other, timeout=self.ch.timeout)
                s.receive(self.ch.recv(other))  # the requester's RESULT: the intersection's tags
                if s.final is None:
                    raise ProtocolError("psi: the peer sent no result")
                common = [x.decode() for x in s.final.to_list()]
            else:
                r = PSIRequester(ids, compute=self.compute)
                run_requester(r, self.ch, names[signer], timeout=self.ch.timeout,
                              on_progress=lambda d, t: self.report("psi", d, t))
                self.ch.send(names[signer], r.result_message())
                common = [ids[i] for i in r.intersection_index()]
        else:
            common = self._align_three(signer, bits)
        self.report("psi", 1, 1)
        common = sorted(common)
        if not common:
            raise ParameterError("the parties share no ids")
        pos = {v: i for i, v in enumerate(ids)}
        return common, np.array([pos[c] for c in common], dtype=np.intp)

    def _align_three(self, signer: int, bits: int) -> list[str]:
        others = [i for i in range(3) if i != signer]
        lead, second = others[0], others[1]
        names = self.names
        c, a, b = names[signer], names[lead], names[second]
        ids = self.table.ids
        if self.index == signer:
            s = PSISigner(ids, BlindRSASigner.generate(bits), compute=self.compute)
            self.ch.send(b, s.hello())  # B gets the HELLO only (no tags); its requests wait for A's turn
            run_signer(s, self.ch, a, timeout=self.ch.timeout)  # HELLO and own tags to A; serves A
            accept_requester(s, self.ch, b, timeout=self.ch.timeout)  # B's HELLO, sent when it got C's
            serve_requests(s, self.ch, b)
            s.receive(self.ch.recv(b))  # B's RESULT
            if s.final is None:
                raise ProtocolError("psi: no result from the second requester")
            return [x.decode() for x in s.final.to_list()]
        if self.index == lead:
            r = PSIRequester(ids, compute=self.compute)
            run_requester(r, self.ch, c, timeout=self.ch.timeout, on_progress=lambda d, t: self.report("psi", d, t))
            self.ch.send(b, r.relay())
            r.receive(self.ch.recv(b))  # B's RESULT
            if r.final_index is None:
                raise ProtocolError("psi: no result from the second requester")
            return [ids[i] for i in r.final_index]
        r = PSIRequester(ids, expect_signer_tags=False, compute=self.compute)
        greet_signer(r, self.ch, c, timeout=self.ch.timeout)  # C's HELLO in, B's HELLO out
        send_requests(r, self.ch, c, on_progress=lambda d, t: self.report("psi", d, t))
        self.ch.send(c, DONE)
        r.receive(self.ch.recv(a))  # A's RELAY
        if not r.done:
            raise ProtocolError("psi: the relay did not complete the intersection")
        result = r.result_message()
        self.ch.send(a, result)
        self.ch.send(c, result)
        return [ids[i] for i in r.intersection_index()]


def _label_index(hellos: list[dict[str, Any]], spec: TaskSpec, key: str = "label") -> int:
    holders = [i for i, h in enumerate(hellos) if h.get(key) in (True, "label")]
    if len(holders) != 1:
        what = "no party's file has" if not holders else f"parties {holders} all have"
        raise ParameterError(f"{what} the label column {spec.label!r}: exactly one party must hold it")
    return holders[0]


def _splits(spec: TaskSpec, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    method = spec.params["evalMethod"]
    if method == "split":
        return [random_split(n, float(spec.params["testSize"]), seed)]
    if method == "kfold":
        return list(kfold_splits(n, int(spec.params["folds"]), shuffle=True, seed=seed))
    if method == "loo":
        if n < 2:
            raise ParameterError("leave-one-out needs at least two rows")
        return list(leave_one_out_splits(n))
    return []


def _metrics(spec: TaskSpec, folds: list[tuple[Any, Any]], pooled: bool, positive: Any = None,
             threshold: float = 0.5) -> dict[str, float]:
    """Mean of per-fold metrics (split, kfold) or the metrics of pooled predictions (loo)."""
    def one(y: Any, p: Any) -> dict[str, float]:
        if not spec.classifies:
            return regression_metrics(np.asarray(y, dtype=np.float64), p)
        if positive is _MULTICLASS:
            return {"accuracy": float(np.mean(np.asarray(y) == np.asarray(p)))}
        return classification_metrics(np.asarray(y) == positive, p, threshold)

    if pooled:
        return one(np.concatenate([f[0] for f in folds]), np.concatenate([f[1] for f in folds]))
    per = [one(y, p) for y, p in folds]
    return {k: float(np.nanmean([m[k] for m in per])) for k in per[0]}


_MULTICLASS = object()


# ================================================================================================
# Linear and logistic regression (two parties)
# ================================================================================================
def _glm_config(spec: TaskSpec, seed: int) -> TrainingConfig:
    p = spec.params
    return TrainingConfig(model=spec.algorithm, mode=p["mode"], alpha=float(p["alpha"]),
                          max_epochs=int(p["epochs"]), batch_size=int(p["batchSize"]), reg_mode=p["regMode"],
                          reg_param=float(p["regParam"]), amplitude=float(p["amplitude"]),
                          accuracy=int(p["accuracy"]), shuffle=bool(p["shuffle"]), seed=seed)


def _positive_class(spec: TaskSpec, y: np.ndarray) -> Any:
    pc = spec.params.get("positiveClass")
    if pc is None or y.dtype.kind != "f":
        return pc
    try:
        return float(pc)
    except ValueError:
        raise ParameterError(f"positiveClass {pc!r} is not a number, the label column is numeric") from None


def _glm_fit(run: _Run, is_label: bool, X: np.ndarray, y: np.ndarray | None, keypair: Any, peer: str,
             pos_class: Any) -> Any:
    """Train one two-party model over the channel; returns this party's L2 party."""
    cfg = _glm_config(run.spec, run.seed)
    bits = int(run.spec.params["keyBits"])
    if is_label:
        assert y is not None
        kw: dict[str, Any] = {}
        if run.spec.algorithm == "logistic":
            kw = {"positive_class": pos_class, "threshold": float(run.spec.params.get("threshold", 0.5))}
        party: Any = label_party(X, y, cfg, key_bits=bits, keypair=keypair, compute=run.compute, **kw)
    else:
        party = feature_party(X, cfg, key_bits=bits, keypair=keypair, compute=run.compute)
    run.stage("train")
    epochs = cfg.max_epochs
    run.report("train", 0, epochs)
    run.ch.send(peer, party.hello())
    seen = 0
    while True:
        out = party.receive(run.ch.recv(peer))
        while seen < len(party.history):
            seen += 1
            loss = float(party.history[seen - 1])
            run.report("train", seen, epochs, None if math.isnan(loss) else loss)
        if out is None:
            return party
        run.ch.send(peer, out)


def _glm_predict(run: _Run, part: ModelPart, X: np.ndarray, peer: str) -> Any:
    """The prediction protocol: the feature party sends its partial scores, the label party combines."""
    run.stage("predict")
    if part.role == "feature":
        run.ch.send(peer, FeaturePredictor(part, X).message())
        return None
    return LabelPredictor(part, X).receive(run.ch.recv(peer))


def _train_glm(run: _Run, keypair: Any) -> TrainOutcome:
    spec, table = run.spec, run.table
    pos_class: Any = None

    def prepare() -> dict[str, Any]:
        nonlocal pos_class
        if table.y is not None and spec.algorithm == "logistic":  # on the whole column, before any work
            pos_class = encode_labels(table.y, "logistic", _positive_class(spec, table.y)).positive_class
        return {}

    hellos = run.handshake(prepare)
    lab = _label_index(hellos, spec)
    is_label = run.index == lab
    peer = run.names[1 - run.index]
    common, pos = run.align(signer=lab)
    X = table.X[pos]
    y = table.y[pos] if is_label and table.y is not None else None
    if keypair is None:
        keypair = generate_keypair(int(spec.params["keyBits"]))
    n = len(common)
    splits = _splits(spec, n, run.seed)
    folds: list[tuple[Any, Any]] = []
    party = None
    for k, (tr, te) in enumerate(splits):
        party = _glm_fit(run, is_label, X[tr], None if y is None else y[tr], keypair, peer, pos_class)
        pred = _glm_predict(run, party.model_part(), X[te], peer)
        if pred is not None:
            assert y is not None
            folds.append((y[te], pred.values if spec.algorithm == "linear" else pred.proba))
        run.stage("evaluate")
        run.report("evaluate", k + 1, len(splits))
    if spec.params["evalMethod"] != "split":  # none, kfold, loo: the model of every row
        party = _glm_fit(run, is_label, X, y, keypair, peer, pos_class)
    assert party is not None
    metrics: dict[str, float] = {}
    part = party.model_part()
    if folds:
        metrics = _metrics(spec, folds, spec.params["evalMethod"] == "loo", part.positive_class, part.threshold)
    part.meta = {"columns": list(table.columns), "modelId": run.transcript_id(hellos), "task": run.task_id or "",
                 "parties": len(run.names), "index": run.index}
    rows = len(splits[0][0]) if spec.params["evalMethod"] == "split" else n
    return TrainOutcome(part.to_bytes(), rows, metrics, [float(v) for v in party.history])


def _load_glm(spec: TaskSpec, table: PartyTable, model: bytes) -> ModelPart:
    try:
        part = ModelPart.from_bytes(model)
    except MalformedInput as exc:
        raise ParameterError(f"the model is not a {spec.algorithm} model part ({exc})") from None
    if part.model != spec.algorithm:
        raise ParameterError(f"the model is a {part.model} model, the task is {spec.algorithm}")
    cols = part.meta.get("columns")
    if cols is not None and list(cols) != list(table.columns):
        raise ParameterError(f"the model was trained on columns {', '.join(map(str, cols))}; "
                             f"this file has {', '.join(table.columns)}")
    if part.n_features != len(table.columns):
        raise ParameterError(f"the model has {part.n_features} features, this file {len(table.columns)}")
    return part


def _predict_glm(run: _Run, model: bytes) -> PredictOutcome | None:
    spec = run.spec
    loaded: list[ModelPart] = []

    def prepare() -> dict[str, Any]:
        loaded.append(_load_glm(spec, run.table, model))
        return {"role": loaded[0].role, "modelId": str(loaded[0].meta.get("modelId", ""))}

    hellos = run.handshake(prepare)
    part = loaded[0]
    _check_model_ids(hellos)
    lab = _label_index(hellos, spec, key="role")
    common, pos = run.align(signer=lab)
    run.report("predict", 0, 1)
    pred = _glm_predict(run, part, run.table.X[pos], run.names[1 - run.index])
    run.report("predict", 1, 1)
    if pred is None:
        return None
    if "threshold" in spec.params:  # the task overrides the model's threshold
        pred = finish_prediction(part, pred.scores, float(spec.params["threshold"]))
    return PredictOutcome(common, pred.values, pred.proba)


def _check_model_ids(hellos: list[dict[str, Any]]) -> None:
    ids = {str(h.get("modelId", "")) for h in hellos}
    if len(ids) != 1 or "" in ids:
        raise ProtocolError("the parties' model parts come from different trainings")


# ================================================================================================
# Three-party neural network
# ================================================================================================
_DNN_FORMAT = "dtxfast-task-dnn-model"
_DNN_VERSION = 1


def _mpc_seed(tag: str, party: int) -> bytes | None:
    """Fresh PRF seeds (None), except inside the estimators' tests-only ``_insecure_fixed_seeds``."""
    seed = _FIXED_SEED.get()
    if seed is None:
        return None
    return hashlib.sha256(f"{seed}/{tag}/{party}".encode()).digest()[:16]


def _u64(a: np.ndarray) -> dict[str, Any]:
    arr = np.ascontiguousarray(a, dtype="<u8")
    return {"shape": list(arr.shape), "data": base64.b64encode(arr.tobytes()).decode()}


def _from_u64(d: Any) -> np.ndarray:
    try:
        shape = tuple(int(s) for s in d["shape"])
        raw = base64.b64decode(d["data"], validate=True)
        arr = np.frombuffer(raw, dtype="<u8").astype(np.uint64)
        return arr.reshape(shape)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedInput(f"bad share array ({exc})") from None


def _check_fixed_point(Xs: np.ndarray, frac_bits: int) -> None:
    """The standardized features must fit the shares' fixed-point range (as the estimators check)."""
    limit = 2.0 ** (40 - frac_bits)
    if Xs.size and float(np.abs(Xs).max()) >= limit:
        raise ParameterError(f"a standardized feature reaches {float(np.abs(Xs).max()):.3g}; the fixed-point "
                             f"format with fracBits={frac_bits} holds |x| < 2^{40 - frac_bits}")


def _dnn_outputs(spec: TaskSpec, y: np.ndarray) -> tuple[int, list[Any] | None]:
    """(number of outputs, classes or None) the label party derives from its label column."""
    if not spec.classifies:
        return 1, None
    classes = np.unique(y)
    if len(classes) < 2:
        raise ParameterError(f"the label column {spec.label!r} has fewer than two classes")
    return (1 if len(classes) == 2 else len(classes)), [v.item() for v in classes]


def _dnn_targets(spec: TaskSpec, y: np.ndarray, classes: list[Any] | None) -> tuple[np.ndarray, float, float]:
    """(targets as the network sees them, y_mean, y_scale)."""
    if classes is None:
        Y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
        mean = Y.mean(axis=0)
        scale = Y.std(axis=0)
        scale[scale == 0] = 1.0
        return (Y - mean) / scale, float(mean[0]), float(scale[0])
    cls = np.array(classes)
    if len(cls) == 2:
        return (y == cls[1]).astype(np.float64).reshape(-1, 1), 0.0, 1.0
    return (np.asarray(y)[:, None] == cls[None, :]).astype(np.float64), 0.0, 1.0


def _dnn_schedule(spec: TaskSpec, cols: Sequence[int], n_out: int, seed: int) -> MLPSchedule:
    p = spec.params
    sizes = (int(sum(cols)), *p["hiddenLayers"], int(n_out))
    task = "classification" if spec.classifies else "regression"
    return MLPSchedule(sizes, task, float(p["learningRate"]), int(p["batchSize"]), int(p["epochs"]),
                       float(p["regParam"]), float(p["lrDecay"]), seed, init_params(sizes, seed))


@dataclass(frozen=True)
class _ReportingSchedule(MLPSchedule):
    """The schedule, reporting each finished epoch (train_program walks the epochs in order)."""

    on_epoch: Any = None

    def batches(self, n: int) -> list[list[np.ndarray]]:
        epochs = super().batches(n)
        cb = self.on_epoch

        class _Epochs(list):
            def __iter__(self) -> Iterator[list[np.ndarray]]:
                for e, b in enumerate(epochs):
                    yield b
                    if cb is not None:
                        cb(e + 1, len(epochs))

        return _Epochs(epochs)


def _dnn_decode(logits: np.ndarray, y_mean: float, y_scale: float, classes: list[Any] | None,
                threshold: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, positive-class probability or None) from the network's output."""
    if classes is None:
        return logits[:, 0] * y_scale + y_mean, None
    cls = np.array(classes)
    if logits.shape[1] == 1:
        proba = 1.0 / (1.0 + np.exp(-np.clip(logits[:, 0], -700, 700)))
        return cls[(proba >= threshold).astype(int)], proba
    return cls[np.argmax(logits, axis=1)], None


def _dnn_hello_checks(hellos: list[dict[str, Any]], lab: int) -> tuple[list[int], int]:
    cols = [int(h["ncols"]) for h in hellos]
    if any(c < 0 for c in cols) or sum(cols) == 0:
        raise ParameterError("the parties' files have no feature columns")
    n_out = hellos[lab].get("outputs")
    if not isinstance(n_out, int) or n_out < 1:
        raise ProtocolError("handshake: the label party did not announce the network's outputs")
    return cols, n_out


def _train_dnn(run: _Run) -> TrainOutcome:
    spec, table = run.spec, run.table
    classes: list[Any] | None = None

    def prepare() -> dict[str, Any]:
        nonlocal classes
        _check_fixed_point(Standardizer.fit(table.X).transform(table.X), int(spec.params["fracBits"]))
        if table.y is None:
            return {}
        n_out, classes = _dnn_outputs(spec, table.y)
        return {"outputs": n_out}

    hellos = run.handshake(prepare)
    lab = _label_index(hellos, spec)
    cols, n_out = _dnn_hello_checks(hellos, lab)
    common, pos = run.align(signer=lab)
    X = table.X[pos]
    y = table.y[pos] if run.index == lab and table.y is not None else None
    n = len(common)
    splits = _splits(spec, n, run.seed)
    threshold = float(spec.params.get("threshold", 0.5))
    folds: list[tuple[Any, Any]] = []
    state: tuple[Any, ...] = ()
    for k, (tr, te) in enumerate(splits):
        state = _dnn_fit(run, X[tr], None if y is None else y[tr], cols, n_out, lab, classes, f"fit{k}")
        out = _dnn_predict_rows(run, state, X[te], cols, run.index, lab, f"predict{k}",
                                int(spec.params["fracBits"]))
        if out is not None:
            assert y is not None
            values, proba = _dnn_decode(out, state[3], state[4], classes, threshold)
            if classes is None:
                folds.append((y[te], values))
            elif proba is not None:
                folds.append((y[te], proba))
            else:
                folds.append((y[te], values))
        run.stage("evaluate")
        run.report("evaluate", k + 1, len(splits))
    if spec.params["evalMethod"] != "split":
        state = _dnn_fit(run, X, y, cols, n_out, lab, classes, "fit")
    W, Bs, std, y_mean, y_scale, sched = state
    metrics: dict[str, float] = {}
    if folds:
        positive = (_MULTICLASS if classes is not None and len(classes) > 2
                    else (classes[1] if classes is not None else None))
        metrics = _metrics(spec, folds, spec.params["evalMethod"] == "loo", positive, threshold)
    payload = {
        "algorithm": "dnn", "index": run.index, "labelParty": lab,
        "role": "label" if run.index == lab else "feature",
        "columns": list(table.columns), "cols": cols, "modelId": run.transcript_id(hellos),
        "task": run.task_id or "", "fracBits": int(spec.params["fracBits"]),
        "layerSizes": list(sched.layer_sizes), "objective": sched.task,
        "mean": [float(v) for v in std.mean], "scale": [float(v) for v in std.scale],
        "yMean": y_mean if run.index == lab else 0.0, "yScale": y_scale if run.index == lab else 1.0,
        "classes": classes if run.index == lab else None,
        "threshold": threshold,
        "weights": [{"a": _u64(w.a), "b": _u64(w.b)} for w in W],
        "biases": [{"a": _u64(b.a), "b": _u64(b.b)} for b in Bs],
    }
    rows = len(splits[0][0]) if spec.params["evalMethod"] == "split" else n
    return TrainOutcome(_dnn_to_bytes(payload), rows, metrics, [float("nan")] * int(sched.epochs))


def _dnn_fit(run: _Run, X: np.ndarray, y: np.ndarray | None, cols: list[int], n_out: int, lab: int,
             classes: list[Any] | None, tag: str) -> tuple[Any, ...]:
    spec = run.spec
    std = Standardizer.fit(X)
    Xs = std.transform(X)
    Y, y_mean, y_scale = (None, 0.0, 1.0)
    if y is not None:
        Y, y_mean, y_scale = _dnn_targets(spec, y, classes)
    base = _dnn_schedule(spec, cols, n_out, run.seed)
    sched = _ReportingSchedule(base.layer_sizes, base.task, base.learning_rate, base.batch_size, base.epochs,
                               base.alpha, base.lr_decay, base.random_state, base.init,
                               on_epoch=lambda e, t: run.report("train", e, t, None))
    run.stage("train")
    run.report("train", 0, int(base.epochs))
    p = MPCParty(run.index, run.ch, run.names, frac_bits=int(spec.params["fracBits"]))
    prog = train_program(p, Xs, cols, len(X), lab, Y, sched, _mpc_seed(tag, run.index))
    W, Bs = run_blocking(prog, run.ch, timeout=run.ch.timeout)
    return W, Bs, std, y_mean, y_scale, base


def _dnn_predict_rows(run: _Run, state: tuple[Any, ...], X: np.ndarray, cols: list[int], mpc_index: int,
                      owner: int, tag: str, frac_bits: int,
                      names: Sequence[str] | None = None) -> Any:
    W, Bs, std = state[0], state[1], state[2]
    run.stage("predict")
    p = MPCParty(mpc_index, run.ch, list(names or run.names), frac_bits=frac_bits)
    prog = predict_program(p, std.transform(X), cols, len(X), W, Bs, owner, _mpc_seed(tag, mpc_index))
    return run_blocking(prog, run.ch, timeout=run.ch.timeout)


def _dnn_to_bytes(payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    doc = {"format": _DNN_FORMAT, "version": _DNN_VERSION, "payload": body,
           "sha256": hashlib.sha256(body.encode()).hexdigest()}
    return json.dumps(doc).encode()


def _dnn_from_bytes(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(bytes(data).decode())
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError):
        raise ParameterError("the model is not a dnn model part (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != _DNN_FORMAT:
        raise ParameterError("the model is not a dnn model part")
    if doc.get("version") != _DNN_VERSION:
        raise ParameterError(f"unsupported dnn model version {doc.get('version')!r}")
    body = doc.get("payload")
    if not isinstance(body, str) or not isinstance(doc.get("sha256"), str) or not hmac.compare_digest(
            hashlib.sha256(body.encode()).hexdigest(), doc["sha256"]):
        raise ParameterError("the dnn model part's checksum does not match (corrupted or edited)")
    return json.loads(body)


def _load_dnn(model: bytes, table: PartyTable) -> tuple[Any, ...]:
    """(payload, cols, model index, label index, weights, biases, standardizer, frac bits) of a part."""
    m = _dnn_from_bytes(model)
    try:
        cols = [int(c) for c in m["cols"]]
        mi, lab = int(m["index"]), int(m["labelParty"])
        W = [ArithShare(_from_u64(d["a"]), _from_u64(d["b"])) for d in m["weights"]]
        Bs = [ArithShare(_from_u64(d["a"]), _from_u64(d["b"])) for d in m["biases"]]
        std = Standardizer(np.asarray(m["mean"], dtype=np.float64), np.asarray(m["scale"], dtype=np.float64))
        frac = int(m["fracBits"])
    except (KeyError, TypeError, ValueError, MalformedInput) as exc:
        raise ParameterError(f"the dnn model part is incomplete ({exc})") from None
    if list(m.get("columns", [])) != list(table.columns):
        raise ParameterError(f"the model was trained on columns {', '.join(map(str, m.get('columns', [])))}; "
                             f"this file has {', '.join(table.columns)}")
    return m, cols, mi, lab, W, Bs, std, frac


def _predict_dnn(run: _Run, model: bytes) -> PredictOutcome | None:
    spec, table = run.spec, run.table
    loaded: list[tuple[Any, ...]] = []

    def prepare() -> dict[str, Any]:
        loaded.append(_load_dnn(model, table))
        _check_fixed_point(loaded[0][6].transform(table.X), loaded[0][7])
        m, mi = loaded[0][0], loaded[0][2]
        return {"role": m.get("role"), "modelId": str(m.get("modelId", "")), "modelIndex": mi}

    hellos = run.handshake(prepare)
    m, cols, mi, lab, W, Bs, std, frac = loaded[0]
    _check_model_ids(hellos)
    order = [h.get("modelIndex") for h in hellos]
    if sorted(o for o in order if isinstance(o, int)) != [0, 1, 2]:
        raise ProtocolError("the parties' model parts are not the three parts of one model")
    label_task = order.index(lab)  # the task index of the party holding the label part
    if hellos[label_task].get("role") != "label":
        raise ProtocolError("the parties' model parts disagree on the label party")
    common, pos = run.align(signer=label_task)
    mpc_names = [run.names[order.index(k)] for k in range(3)]
    run.report("predict", 0, 1)
    out = _dnn_predict_rows(run, (W, Bs, std), table.X[pos], cols, mi, lab, "predict", frac, mpc_names)
    run.report("predict", 1, 1)
    if out is None:
        return None
    classes = m.get("classes")
    thr = float(spec.params.get("threshold", m.get("threshold", 0.5)))
    values, proba = _dnn_decode(out, float(m.get("yMean", 0.0)), float(m.get("yScale", 1.0)),
                                None if m.get("objective") != "classification" else classes, thr)
    return PredictOutcome(common, values, proba)


# ================================================================================================
# Entry points
# ================================================================================================
def run_train_party(spec: TaskSpec, index: int, table: PartyTable, channel: Channel, names: Sequence[str], *,
                    progress: Progress | None = None, timeout: float = 120.0, task_id: str | None = None,
                    keypair: Any = None, compute: Any = None) -> TrainOutcome:
    """Run party ``index`` of a training task to the end (see the module docstring for the steps).

    Parameters
    ----------
    spec : TaskSpec
        The task's public parameters (``spec.kind`` is not checked: a prediction task's executor
        calls :func:`run_predict_party`).
    index : int
        This party's position in ``names``.
    table : PartyTable
        This party's sample file (:func:`read_party_csv`).
    channel : Channel
        This party's endpoint; its name is ``names[index]``.
    names : sequence of str
        The channel name of every party of the task, in task order (2, or 3 for ``dnn``).
    progress : callable, optional
        ``progress(stage, done, total, loss)``: ``("psi", chunks, chunks_total, None)``,
        ``("train", epoch, epochs, loss or None)``, ``("evaluate", fold, folds, None)``.
    timeout : float, default 120
        Seconds any one message of a peer may take; then :class:`ProtocolError`.
    task_id : str, optional
        The public task id: bound into the handshake (all parties must run the same task) and
        the default seed of splits and batches.
    keypair : (PaillierPublicKey, PaillierPrivateKey), optional
        Linear / logistic: this party's Paillier key pair (default: a fresh one of ``keyBits``).
    compute : ComputeBackend, optional
        Where this party's batch work runs (PSI's RSA work, Paillier encryptions and ``X.T @ [[d]]``;
        :mod:`dtxfast.compute`); default ``DTXFAST_COMPUTE``, else the local kernels.

    Returns
    -------
    TrainOutcome

    Raises
    ------
    ParameterError
        Bad arguments, no or several label holders, no common ids, a label column unfit for the
        algorithm.
    ProtocolError
        A peer sent something malformed, ran another task, or sent nothing for ``timeout`` seconds.
    """
    run = _Run(spec, index, table, channel, names, progress, timeout, task_id, compute)
    try:
        if spec.algorithm == "dnn":
            return _train_dnn(run)
        return _train_glm(run, keypair)
    except (DtxError, ValueError) as exc:
        _reraise(exc, run)
        raise


def run_predict_party(spec: TaskSpec, index: int, table: PartyTable, model: bytes, channel: Channel,
                      names: Sequence[str], *, progress: Progress | None = None, timeout: float = 120.0,
                      task_id: str | None = None, compute: Any = None) -> PredictOutcome | None:
    """Run party ``index`` of a prediction task with its model part from :func:`run_train_party`.

    PSI aligns the prediction rows (the party holding the label part signs), then the prediction
    protocol runs: linear / logistic, the feature party sends its partial scores and the label
    party combines them (and de-standardizes a linear model's output); ``dnn``, the network runs
    on secret shares and only the label party reconstructs the outputs. The three ``dnn``
    parties may sit in any task order: each model part knows its position in the training.

    Parameters are those of :func:`run_train_party` (``compute`` serves PSI's RSA work here).

    Returns
    -------
    PredictOutcome at the label party (ids in sorted order), ``None`` at the other parties.

    Raises
    ------
    ParameterError
        The model is not this party's (another algorithm, other columns, corrupted).
    ProtocolError
        The parties' model parts are not of one training, or a peer misbehaved or went away.
    """
    run = _Run(spec, index, table, channel, names, progress, timeout, task_id, compute)
    try:
        if spec.algorithm == "dnn":
            return _predict_dnn(run, model)
        return _predict_glm(run, model)
    except (DtxError, ValueError) as exc:
        _reraise(exc, run)
        raise


def _reraise(exc: BaseException, run: _Run) -> None:
    """Plain ValueErrors from below (numpy, L2 checks) become ParameterError with the stage."""
    if isinstance(exc, DtxError):
        return
    raise ParameterError(f"{run.ch.stage}: {exc}") from exc
