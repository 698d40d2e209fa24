"""The mini-batch rows gathered ahead by a worker thread (``mlp._batch_rows``, more than one
thread) are the rows gathered in place (one thread): same batches, same trained shares."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dtxfast
from dtxfast.protocols.mpc import MPCParty, run_local
from dtxfast.protocols.mpc import _kernels, mlp
from dtxfast.protocols.mpc.mlp import MLPSchedule, init_params, train_program
from dtxfast.protocols.mpc.party import ArithShare
from dtxfast.transport.channel import InMemoryNetwork
from dtxfast.vfl.dnn import PARTY_NAMES


@pytest.fixture
def threads():
    def use(n: int) -> None:
        dtxfast.set_num_threads(n)
    yield use
    dtxfast.set_num_threads(None)


def _blocks(rng: np.random.Generator, n: int, cols: list[int]):
    parts = [ArithShare(rng.integers(0, 2**63, (n, d), dtype=np.uint64),
                        rng.integers(0, 2**63, (n, d), dtype=np.uint64)) for d in cols]
    return mlp._ColumnBlocks(parts, _kernels), parts


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 300), batch=st.integers(1, 64), chunk=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_rows_ahead_equal_rows_in_place(n: int, batch: int, chunk: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    X, parts = _blocks(rng, n, [3, 1, 2])
    Ys = ArithShare(rng.integers(0, 2**63, (n, 1), dtype=np.uint64), rng.integers(0, 2**63, (n, 1), dtype=np.uint64))
    perm = rng.permutation(n)
    batches = [perm[i:i + batch] for i in range(0, n, batch)]
    old, mlp.ROW_CHUNK = mlp.ROW_CHUNK, chunk
    dtxfast.set_num_threads(2)
    try:
        got = list(mlp._batch_rows(X, Ys, batches))
    finally:
        mlp.ROW_CHUNK = old
        dtxfast.set_num_threads(None)
    assert len(got) == len(batches)
    for idx, (xb, yb) in zip(batches, got):
        want_a = np.concatenate([p.a[idx] for p in parts], axis=1)
        want_b = np.concatenate([p.b[idx] for p in parts], axis=1)
        np.testing.assert_array_equal(xb.a, want_a)
        np.testing.assert_array_equal(xb.b, want_b)
        np.testing.assert_array_equal(yb.a, Ys.a[idx])
        np.testing.assert_array_equal(yb.b, Ys.b[idx])


def _train(seed: int):
    rng = np.random.default_rng(seed)
    n, cols = 200, [3, 2, 2]
    parts = [rng.normal(size=(n, c)) for c in cols]
    y = rng.normal(size=(n, 1))
    sizes = (sum(cols), 4, 1)
    sched = MLPSchedule(sizes, "regression", 0.05, 16, 2, 0.0, 0.0, 0, init_params(sizes, 0))
    net = InMemoryNetwork(PARTY_NAMES)
    parties = [MPCParty(i, net.channel(nm), PARTY_NAMES) for i, nm in enumerate(PARTY_NAMES)]
    progs = [train_program(p, parts[p.index], cols, n, 2, y if p.index == 2 else None, sched,
                           bytes([p.index]) * 16) for p in parties]
    return run_local(progs, [p.channel for p in parties])


def test_training_on_two_threads_gives_the_shares_of_one(threads, monkeypatch) -> None:
    # 13 batches of 16 rows (the last one 8) in chunks of 5: several hand-offs and a short tail
    monkeypatch.setattr(mlp, "ROW_CHUNK", 5)
    threads(1)
    one = _train(3)
    threads(2)
    calls = []
    real = mlp._row_worker
    monkeypatch.setattr(mlp, "_row_worker", lambda: calls.append(1) or real())
    two = _train(3)
    assert calls  # the worker really gathered on two threads
    for (w1, b1), (w2, b2) in zip(one, two):
        for s1, s2 in zip(w1 + b1, w2 + b2):
            np.testing.assert_array_equal(s1.a, s2.a)
            np.testing.assert_array_equal(s1.b, s2.b)


def _rows_in_child() -> bool:
    dtxfast.set_num_threads(2)
    rng = np.random.default_rng(0)
    X, parts = _blocks(rng, 40, [2, 1, 1])
    Ys = ArithShare(np.zeros((40, 1), np.uint64), np.ones((40, 1), np.uint64))
    batches = [np.arange(i, i + 8) for i in range(0, 40, 8)]
    got = list(mlp._batch_rows(X, Ys, batches))
    return all(np.array_equal(xb.a, np.concatenate([p.a[idx] for p in parts], axis=1))
               for idx, (xb, _) in zip(batches, got))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_row_worker_works_in_a_forked_child(threads) -> None:
    import multiprocessing as mp

    threads(2)
    mlp._row_worker().submit(int).result()  # the parent's worker exists before the fork
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_rows_in_child).get(timeout=30)
    assert got


@pytest.mark.parametrize("starved", [0.0, 1e9])
def test_a_starved_caller_drops_the_worker_and_keeps_the_rows(monkeypatch, threads, starved) -> None:
    """ROW_STARVED 0: every chunk counts as starved, so after the first chunk the worker finishes
    the one under way and the rest is gathered in place; 1e9: never starved."""
    rng = np.random.default_rng(1)
    X, parts = _blocks(rng, 100, [2, 2, 1])
    Ys = ArithShare(rng.integers(0, 9, (100, 1), dtype=np.uint64), rng.integers(0, 9, (100, 1), dtype=np.uint64))
    perm = rng.permutation(100)
    batches = [perm[i:i + 7] for i in range(0, 100, 7)]  # 15 batches, the last of 2 rows
    monkeypatch.setattr(mlp, "ROW_CHUNK", 3)
    monkeypatch.setattr(mlp, "ROW_STARVED", starved)
    submitted = []
    real = mlp._row_worker()

    class Counting:
        def submit(self, fn, start):
            submitted.append(start)
            return real.submit(fn, start)

    monkeypatch.setattr(mlp, "_row_worker", Counting)
    threads(2)
    got = list(mlp._batch_rows(X, Ys, batches))
    assert submitted == ([0, 3] if starved == 0.0 else [0, 3, 6, 9, 12])
    assert len(got) == len(batches)
    for idx, (xb, yb) in zip(batches, got):
        np.testing.assert_array_equal(xb.a, np.concatenate([p.a[idx] for p in parts], axis=1))
        np.testing.assert_array_equal(xb.b, np.concatenate([p.b[idx] for p in parts], axis=1))
        np.testing.assert_array_equal(yb.a, Ys.a[idx])
        np.testing.assert_array_equal(yb.b, Ys.b[idx])
