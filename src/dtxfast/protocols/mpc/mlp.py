"""Multilayer-perceptron training and prediction as per-party programs on replicated shares.

Each of the three parties runs :func:`train_program` (then :func:`predict_program`) with its own
:class:`~dtxfast.protocols.mpc.MPCParty`; every message goes over the party's
:class:`~dtxfast.protocols.channel.Channel`, so the same programs run in one process
(:func:`~dtxfast.protocols.mpc.run_local`) or one party per process
(:func:`~dtxfast.protocols.mpc.run_blocking`). The network has ReLU hidden layers and is trained
by mini-batch SGD with L2 weight decay on fixed-point shares; no party sees another party's
features, the labels, the activations or the weights in the clear.

:class:`MLPSchedule` is everything public about a run (shapes, initial weights, batches, learning
rates); every party and the plaintext reference :func:`plain_train_mlp` derive it from the same
``random_state``. The estimators over these programs are in :mod:`dtxfast.vfl.dnn`.

Examples
--------
>>> import numpy as np
>>> from dtxfast.protocols.mpc import MPCParty, run_local
>>> from dtxfast.transport import InMemoryNetwork
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(32, 3)); y = (X @ [1.0, -1.0, 0.5])[:, None]
>>> sizes = (3, 4, 1)
>>> sched = MLPSchedule(sizes, "regression", 0.05, 16, 2, 0.0, 0.0, 0, init_params(sizes, 0))
>>> net = InMemoryNetwork(["A", "B", "C"])
>>> parties = [MPCParty(i, net.channel(n), net.parties) for i, n in enumerate(net.parties)]
>>> cols = (1, 1, 1)
>>> progs = [train_program(p, X[:, [p.index]], cols, 32, 2, y if p.index == 2 else None, sched)
...          for p in parties]
>>> shares = run_local(progs, [p.channel for p in parties])  # each party's (weights, biases)
>>> progs = [predict_program(p, X[:, [p.index]], cols, 32, *shares[p.index], result_owner=2)
...          for p in parties]
>>> out = run_local(progs, [p.channel for p in parties])
>>> out[0] is None and out[1] is None  # only the result owner learns the outputs
True
>>> ref = plain_forward(X, plain_train_mlp(X, y, sched))  # the same run in plaintext float64
>>> bool(np.abs(out[2] - ref).max() < 0.01)
True
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..._backend import num_threads
from ...errors import ParameterError
from .fixedpoint import decode, encode
from .party import ArithShare, MPCParty, Proto

__all__ = [
    "DIVERGED_BITS",
    "MLPSchedule",
    "init_params",
    "plain_forward",
    "plain_train_mlp",
    "predict_program",
    "train_program",
]


# -- the schedule both trainings follow ------------------------------------------------------
@dataclass(frozen=True)
class MLPSchedule:
    """Everything public about a training run: shapes, initial weights, batches, step sizes.

    All three parties (and the plaintext reference) derive the same schedule from
    ``random_state``, so the secure and the plaintext training see identical batches and
    learning rates.
    """

    layer_sizes: tuple[int, ...]
    task: str  # "regression" or "classification"
    learning_rate: float
    batch_size: int
    epochs: int
    alpha: float
    lr_decay: float
    random_state: int
    init: list[tuple[np.ndarray, np.ndarray]] = field(repr=False, default_factory=list)

    def batches(self, n: int) -> list[list[np.ndarray]]:
        """Per epoch, the row indices of each mini-batch (a fresh permutation per epoch)."""
        rng = np.random.default_rng([self.random_state, 1])
        out = []
        for _ in range(self.epochs):
            perm = rng.permutation(n)
            out.append([perm[i:i + self.batch_size] for i in range(0, n, self.batch_size)])
        return out

    def lr(self, epoch: int) -> float:
        """Learning rate of ``epoch`` (``learning_rate / (1 + lr_decay * epoch)``)."""
        return self.learning_rate / (1.0 + self.lr_decay * epoch)


def init_params(layer_sizes: Sequence[int], random_state: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """He-uniform weights and zero biases for the layers ``layer_sizes[0] -> ... -> [-1]``."""
    rng = np.random.default_rng([random_state, 0])
    params = []
    for fan_in, fan_out in itertools.pairwise(layer_sizes):
        bound = np.sqrt(6.0 / fan_in)
        params.append((rng.uniform(-bound, bound, (fan_in, fan_out)), np.zeros(fan_out)))
    return params


# -- plaintext reference ----------------------------------------------------------------------
def plain_forward(X: np.ndarray, params: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Output layer pre-activations of the MLP (ReLU hidden layers)."""
    h = X
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = np.maximum(h, 0.0)
    return h


def plain_train_mlp(X: np.ndarray, Y: np.ndarray, sched: MLPSchedule) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train in plaintext float64 with exactly the schedule the secure training follows."""
    params = [(w.copy(), b.copy()) for w, b in sched.init]
    L = len(params)
    for epoch, batches in enumerate(sched.batches(len(X))):
        lr = sched.lr(epoch)
        for idx in batches:
            acts = [X[idx]]
            masks = []
            for i, (w, b) in enumerate(params):
                h = acts[-1] @ w + b
                if i < L - 1:
                    masks.append(h >= 0)
                    acts.append(np.maximum(h, 0.0))
                else:
                    out = h
            if sched.task == "classification":
                out = 1.0 / (1.0 + np.exp(-out))
            delta = out - Y[idx]
            step = lr / len(idx)
            for i in range(L - 1, -1, -1):
                w, b = params[i]
                gw = acts[i].T @ delta
                gb = delta.sum(axis=0)
                if i > 0:
                    delta = (delta @ w.T) * masks[i - 1]
                params[i] = (w - step * gw - lr * sched.alpha * w, b - step * gb)
    return params


#: an output or a trained weight of magnitude ``2^DIVERGED_BITS`` or more means the training
#: diverged (standardised targets keep outputs and weights near 1; a value that wrapped the ring
#: is about uniform on +-2^(63 - frac_bits) and lands below the bound with probability ~2^-11)
DIVERGED_BITS = 20


#: values compared at a time by :func:`_count_beyond` (two comparisons each)
CHECK_BLOCK = 1 << 15


def _count_beyond(p: MPCParty, values: Sequence[ArithShare]) -> Proto:
    """A sharing (shape ``(1,)``) of how many of ``values`` lie beyond ``2^DIVERGED_BITS``.

    Batched comparisons (``v - B >= 0`` and ``-v - B >= 0`` for every value), :data:`CHECK_BLOCK`
    values at a time; opens nothing. One comparison of an epoch's 100k outputs at once took
    about twice as long as four in blocks (mostly on memory the allocator faulted in afresh);
    the 21 rounds this adds are 0.4 % of that epoch's.
    """
    a = np.concatenate([np.ravel(x.a) for x in values])
    b = np.concatenate([np.ravel(x.b) for x in values])
    limit = encode(-float(1 << DIVERGED_BITS), p.frac_bits)
    count = ArithShare(np.zeros(1, np.uint64), np.zeros(1, np.uint64))
    for lo in range(0, a.size, CHECK_BLOCK):
        part = ArithShare(a[lo:lo + CHECK_BLOCK], b[lo:lo + CHECK_BLOCK])
        neg = -part
        both = ArithShare(np.concatenate([part.a, neg.a]), np.concatenate([part.b, neg.b]))
        d = yield from p.drelu(p.add_public(both, limit))
        count = count + d.sum().reshape(1)
    return count


def _refuse_if_diverged(p: MPCParty, count: ArithShare) -> Proto:
    """Open the count to all three parties; raise at each of them if it is not 0."""
    opened = yield from p.reveal(count)
    bad = int(opened.view(np.int64)[0])
    if bad:
        raise ParameterError(
            f"the training diverged: {bad} output(s) or weight(s) reached 2^{DIVERGED_BITS} (past "
            f"2^{62 - 2 * p.frac_bits} values wrap the ring); lower learning_rate or standardize the features")


# -- per-party secure programs ----------------------------------------------------------------
def _concat_cols(parts: Sequence[ArithShare]) -> ArithShare:
    if len(parts) == 1:
        return parts[0]
    return ArithShare(np.concatenate([p.a for p in parts], axis=1), np.concatenate([p.b for p in parts], axis=1))


class _ColumnBlocks:
    """The parties' shared feature blocks side by side, joined only for the rows a step reads.

    Joining the ``n x d`` blocks of all rows once (``np.concatenate(axis=1)``) copies row by
    row and cost about as much as a tenth of an epoch at 100k rows; a mini-batch's rows (an
    index array) are gathered from every block straight into the joined batch by the kernels'
    ``gather_rows`` instead (one pass, both components; ~3x fancy indexing per block and a join).
    A slice (prediction's consecutive rows) is joined from views.
    """

    __slots__ = ("kernels", "parts")

    def __init__(self, parts: Sequence[ArithShare], kernels: Any) -> None:
        self.parts = list(parts)
        self.kernels = kernels

    def __getitem__(self, idx: Any) -> ArithShare:
        if isinstance(idx, np.ndarray):
            return ArithShare(*self.kernels.gather_rows([(p.a, p.b) for p in self.parts], idx))
        return _concat_cols([p[idx] for p in self.parts])


#: mini-batches whose rows one hand-off to the row worker gathers (at batch 256 and 64 inputs:
#: 8192 rows, 8 MiB of shares per party; two such chunks are alive at a time)
ROW_CHUNK = 32
#: wall / CPU time of the protocol's thread over a chunk past which the row worker is dropped
ROW_STARVED = 1.3

_row_pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, the worker)
_row_pool_lock = threading.Lock()


def _row_worker() -> ThreadPoolExecutor:
    """The process's row worker (made anew in a forked child, where the parent's thread is gone)."""
    global _row_pool
    with _row_pool_lock:
        if _row_pool is None or _row_pool[0] != os.getpid():
            _row_pool = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="dtxfast-mpc-rows"))
        return _row_pool[1]


def _batch_rows(X: Any, Ys: ArithShare, batches: Sequence[np.ndarray]) -> Iterator[tuple[ArithShare, ArithShare]]:
    """``(X[idx], Ys[idx])`` for each mini-batch ``idx`` of ``batches``, in order.

    On one thread (``dtxfast.num_threads() == 1``) each batch's rows are gathered when it is
    reached. On more, one worker thread gathers the rows of the next :data:`ROW_CHUNK` batches
    (one gather of their joined indices, which are public) while the caller runs the current
    ones, so the gather (latency-bound, GIL released) leaves the protocol's thread; a batch is
    then a view of its chunk. Chunks, not batches, are handed over, because every hand-off
    costs GIL switches between the two threads. When over a chunk the caller's thread got less
    than ``1 / ROW_STARVED`` of its wall time as CPU (the cores are busy elsewhere, or the caller
    waits for messages), the rest of the batches are gathered in place: a worker that holds the
    GIL while it waits for a core stalls the protocol (measured 2.4x slower epochs at load ~6 on
    2 cores). The rows are the same either way.
    """
    if num_threads() < 2 or len(batches) <= 1:
        for idx in batches:
            yield X[idx], Ys[idx]
        return

    def gather(start: int) -> tuple[Sequence[np.ndarray], ArithShare, ArithShare]:
        group = batches[start:start + ROW_CHUNK]
        idx = np.concatenate(group)
        return group, X[idx], Ys[idx]

    def views(group: Sequence[np.ndarray], xs: ArithShare, ys: ArithShare) -> Iterator[tuple[ArithShare, ArithShare]]:
        lo = 0
        for idx in group:
            hi = lo + len(idx)
            yield ArithShare(xs.a[lo:hi], xs.b[lo:hi]), ArithShare(ys.a[lo:hi], ys.b[lo:hi])
            lo = hi

    pool = _row_worker()
    ahead = pool.submit(gather, 0)
    start = 0
    while ahead is not None:
        chunk = ahead.result()
        start += ROW_CHUNK
        ahead = pool.submit(gather, start) if start < len(batches) else None
        wall, cpu = time.perf_counter(), time.thread_time()
        yield from views(*chunk)
        if ahead is not None and time.perf_counter() - wall > ROW_STARVED * (time.thread_time() - cpu):
            yield from views(*ahead.result())  # the chunk under way, then the rest in place
            for idx in batches[start + ROW_CHUNK:]:
                yield X[idx], Ys[idx]
            return


def _share_columns(p: MPCParty, own: np.ndarray | None, n: int, cols: Sequence[int],
                   order: np.ndarray | None = None) -> Proto:
    """Share every party's feature block; with ``order`` (public), row ``k`` of the sharing holds
    the owner's row ``order[k]`` (each owner permutes its own plaintext rows before sharing)."""
    parts = []
    for owner, d in enumerate(cols):
        if d == 0:
            continue
        mine = None
        if p.index == owner and own is not None:
            # rows permuted and encoded in one pass (a wrong shape is left to share_input to refuse)
            ordered = order is not None and len(own) == n
            mine = p.k.encode_rows(own, order, p.frac_bits) if ordered else encode(own, p.frac_bits)
        parts.append((yield from p.share_input(owner, mine, (n, d))))
    return _ColumnBlocks(parts, p.k)


def _forward(p: MPCParty, x: ArithShare, W: list[ArithShare], B: list[ArithShare], keep: bool) -> Proto:
    acts, masks = [x], []
    out = x
    for i in range(len(W)):
        h = (yield from p.matmul(acts[-1], W[i])) + B[i]
        if i < len(W) - 1:
            if keep:  # the ReLU also prepares the back-propagation through W[i + 1]
                r, grad = yield from p.relu_layer(h, W[i + 1])
                masks.append(grad)
            else:
                r, _ = yield from p.relu(h)
            acts.append(r)
        else:
            out = h
    return out, acts, masks


def train_program(
    p: MPCParty,
    own_X: np.ndarray | None,
    cols: Sequence[int],
    n: int,
    label_party: int,
    Y: np.ndarray | None,
    sched: MLPSchedule,
    seed: bytes | None = None,
) -> Proto:
    """One party's side of secure training; returns its shares ``(weights, biases)``.

    Parameters
    ----------
    p : MPCParty
        This party (its channel is used).
    own_X : ndarray or None
        This party's feature columns (``n x cols[p.index]``), already preprocessed.
    cols : sequence of 3 int
        Public: number of feature columns of parties 0, 1, 2.
    n : int
        Public: number of (aligned) training rows.
    label_party : int
        Which party holds the targets.
    Y : ndarray or None
        The targets ``n x outputs`` (only at the label party).
    sched : MLPSchedule
        The public schedule (the same at every party).
    seed : bytes, optional
        16 bytes for reproducible PRF seeds (tests); default fresh randomness.

    Raises
    ------
    ParameterError
        At every party alike, after the last step, when the training diverged: an output of some
        batch (the logits, before the sigmoid) or a final weight or bias reached
        ``2^DIVERGED_BITS``. One comparison per epoch over its outputs and one over the weights
        count them on shares; the one value opened is that count, 0 for a training that did not
        diverge.

    Notes
    -----
    The inputs are shared in the order the first epoch reads their rows: every owner of a
    feature block (and the label party) permutes its own plaintext rows by that epoch's
    permutation before :meth:`MPCParty.share_input`, so the first epoch's mini-batches are
    consecutive rows of the shares (read in sequence, not at random); later epochs gather their
    rows at their positions in that order. Security: the permutation comes from the public schedule, which every party
    derives alike, so it tells no party anything; the messages are the ones ``share_input``
    sends for any plaintext (the owner's rows minus two fresh PRF draws, one of which each
    receiver lacks), so every received word stays uniform whatever the row order. The
    transcript test of a training step (``tests/test_mpc_dnn.py``) looks for any input value
    among the received words, whatever their order.
    """
    yield from p.setup(seed)
    epochs = sched.batches(n)
    # The rows are shared in the order the first epoch reads them (the schedule is public), so
    # that epoch's mini-batches are consecutive rows of the shares, not gathers of
    # random rows from the n-row arrays (memory-latency bound). Later epochs gather their rows
    # at their positions in that order.
    order = np.concatenate(epochs[0]) if len(epochs) and len(epochs[0]) else np.arange(0)
    first = (len(order) == n and n > 0 and order.min() >= 0 and order.max() < n
             and np.array_equal(np.bincount(order, minlength=n), np.ones(n, np.intp)))
    order = order if first else np.arange(n)  # a schedule whose first epoch is not a permutation
    at = np.empty(n, dtype=np.intp)
    at[order] = np.arange(n)
    X = yield from _share_columns(p, own_X, n, cols, order)
    n_out = sched.layer_sizes[-1]
    y_enc = None
    if p.index == label_party and Y is not None:
        y_enc = p.k.encode_rows(Y, order, p.frac_bits) if len(Y) == n else encode(Y, p.frac_bits)
    Ys = yield from p.share_input(label_party, y_enc, (n, n_out))
    W = [p.share_public(encode(w, p.frac_bits)) for w, _ in sched.init]
    Bs = [p.share_public(encode(b, p.frac_bits)) for _, b in sched.init]
    L = len(W)
    beyond = ArithShare(np.zeros(1, np.uint64), np.zeros(1, np.uint64))  # outputs and weights past 2^20
    for epoch, batches in enumerate(epochs):
        lr = sched.lr(epoch)
        outs = []
        if epoch == 0 and first:  # consecutive rows of the shares, read in place (views, joined)
            ends = np.cumsum([len(idx) for idx in batches])
            rows: Iterator[tuple[ArithShare, ArithShare]] = (
                (X[e - len(idx):e], Ys[e - len(idx):e]) for e, idx in zip(ends, batches))
        else:  # the rows' positions in the shares' order
            rows = _batch_rows(X, Ys, [at[idx] for idx in batches])
        for idx, (xb, yb) in zip(batches, rows):
            out, acts, masks = yield from _forward(p, xb, W, Bs, keep=True)
            outs.append(out)
            if sched.task == "classification":
                out = yield from p.sigmoid(out)
            delta = out - yb
            step = lr / len(idx)
            updates = []
            for i in range(L - 1, -1, -1):
                gb = delta.sum(axis=0)
                if i > 0:  # the gradient and the back-propagated error (through the ReLU) in one round
                    (gw,), delta = yield from p.backprop_relu([(acts[i].T, delta)], delta, W[i], masks[i - 1])
                    updates.append((i, gw, gb))
                else:
                    updates.append((i, (yield from p.matmul(acts[i].T, delta)), gb))
            # every layer's step (and weight decay) in one truncation round: W[i] changes only
            # here, after the backward pass has used the old weights, as before
            terms = [t for i, gw, gb in updates for t in ((gw, step), (gb, step))
                     + (((W[i], lr * sched.alpha),) if sched.alpha else ())]
            scaled = iter((yield from p.mul_public_many(terms)))
            for i, _, _ in updates:
                W[i] = W[i] - next(scaled)
                Bs[i] = Bs[i] - next(scaled)
                if sched.alpha:
                    W[i] = W[i] - next(scaled)
        # a value that wrapped the ring anywhere in the epoch shows up as a huge output (the
        # outputs are the network's last products) or, through the updates, as huge weights
        beyond = beyond + (yield from _count_beyond(p, outs))
    beyond = beyond + (yield from _count_beyond(p, W + Bs))
    yield from _refuse_if_diverged(p, beyond)
    return W, Bs


def predict_program(
    p: MPCParty,
    own_X: np.ndarray | None,
    cols: Sequence[int],
    n: int,
    W: list[ArithShare],
    Bs: list[ArithShare],
    result_owner: int,
    seed: bytes | None = None,
    batch_size: int = 4096,
) -> Proto:
    """One party's side of secure prediction: only ``result_owner`` gets the outputs (logits).

    Raises
    ------
    ParameterError
        At the result owner, when an output reaches ``2^(62 - 2 frac_bits)``: no computation that
        stayed inside the ring's range can produce it (every product before its truncation is
        below ``2^62`` at the doubled scale), so the model or the inputs overflowed it (a model
        whose training diverged, or inputs far outside the training range). The check reads only
        the outputs the owner receives anyway.
    """
    yield from p.setup(seed)
    X = yield from _share_columns(p, own_X, n, cols)
    outs = []
    for start in range(0, n, batch_size):
        out, _, _ = yield from _forward(p, X[start:start + batch_size], W, Bs, keep=False)
        outs.append((yield from p.reveal(out, to=result_owner)))
    if p.index != result_owner:
        return None
    res = decode(np.concatenate(outs, axis=0), p.frac_bits)
    limit = 2.0 ** (62 - 2 * p.frac_bits)
    if res.size and np.abs(res).max() >= limit:
        raise ParameterError(f"a prediction overflowed the fixed-point range (|output| >= 2^{62 - 2 * p.frac_bits}): "
                             f"the model diverged in training or the inputs lie far outside the training range")
    return res
