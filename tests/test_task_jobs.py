"""The per-party task jobs (dtxfast.nodes.jobs): one thread per party over InMemoryNetwork channels.

Each networked run is compared with the in-process estimator on the same aligned rows:

- linear / logistic (secret-shared mode): not bit-for-bit deterministic (fresh masks make the
  fixed-point shares round differently), so the weights agree within 2e-5 and the predictions
  within a matching tolerance;
- dnn: deterministic once the PRF seeds are fixed (the tests-only ``_insecure_fixed_seeds``, entered in
  every party's thread and around the estimator): exact equality.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtxfast.crypto.paillier import generate_keypair
from dtxfast.errors import ParameterError, ProtocolError
from dtxfast.nodes.jobs import (
    PartyTable,
    PredictOutcome,
    TaskSpec,
    parse_assignments,
    read_party_csv,
    run_predict_party,
    run_train_party,
)
from dtxfast.protocols.vfl import ModelPart
from dtxfast.transport.channel import InMemoryNetwork
from dtxfast.vfl import VerticalLinearRegression, VerticalLogisticRegression
from dtxfast.vfl.dnn import VerticalMLPClassifier, VerticalMLPRegressor, _insecure_fixed_seeds
from dtxfast.vfl.evaluation import classification_metrics, random_split

KEYS = {}


def _keys():
    if not KEYS:
        KEYS["a"], KEYS["b"] = generate_keypair(1024), generate_keypair(1024)
    return KEYS["a"], KEYS["b"]


def run_parties(fns, names=None, join=60.0, net=None):
    """Run ``fns[i](channel_i, names)`` in one thread each; return results (or raised exceptions)."""
    names = names or [f"P{i}" for i in range(len(fns))]
    net = net or InMemoryNetwork(names)
    out: list = [None] * len(fns)

    def body(i):
        try:
            out[i] = fns[i](net.channel(names[i]), names)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            out[i] = exc

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(join)
        assert not t.is_alive(), "a party hung"
    return out


def ok(results):
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


# -- data ----------------------------------------------------------------------------------------
def _tables(rng, n, cols, label_at, *, classes=None, shuffle=True, extra=(3, 4)):
    """Party tables of ``n`` common samples (plus a few ids only one party has), rows shuffled.

    Returns (tables, truth) where truth maps id -> (full feature row per party, label).
    """
    ids = [f"id{i:04d}" for i in range(n)]
    blocks = [rng.normal(size=(n, c)) * (i + 1) + i for i, c in enumerate(cols)]
    z = sum(b @ np.linspace(1.0, -1.0, b.shape[1]) for b in blocks)
    if classes is None:
        y = z + 3.0 + 0.1 * rng.normal(size=n)
    else:
        y = np.where(z > np.median(z), classes[1], classes[0])
    tables = []
    for i, b in enumerate(blocks):
        own_ids = list(ids) + [f"only{i}-{k}" for k in range(extra[0] if i == 0 else extra[1])]
        X = np.vstack([b, rng.normal(size=(len(own_ids) - n, b.shape[1]))])
        yy = None
        if i == label_at:
            pad = rng.normal(size=len(own_ids) - n) if classes is None else np.array([classes[0]] * (len(own_ids) - n))
            yy = np.concatenate([y, pad]) if classes is None else np.concatenate([y, pad]).astype(str)
        order = rng.permutation(len(own_ids)) if shuffle else np.arange(len(own_ids))
        tables.append(PartyTable([own_ids[k] for k in order], [f"c{i}_{j}" for j in range(b.shape[1])], X[order],
                                 None if yy is None else yy[order]))
    return tables, ids, blocks, y


def _aligned(tables, common):
    out = []
    for t in tables:
        pos = {v: k for k, v in enumerate(t.ids)}
        out.append(np.array([pos[c] for c in common]))
    return out


def spec(algorithm, kind="train", **params):
    return TaskSpec.from_params(algorithm, kind, label="y", id_column="id", params=params,
                                parties=3 if algorithm == "dnn" else 2)


# -- linear / logistic -----------------------------------------------------------------------------
def test_linear_train_and_predict_match_the_estimator_with_misaligned_files() -> None:
    rng = np.random.default_rng(11)
    tables, ids, blocks, y = _tables(rng, 40, (2, 3), label_at=1)
    s = spec("linear", alpha=0.2, epochs=3, batchSize=0, keyBits=1024, psiBits=1024, amplitude=1e-12, seed=7)
    ka, kb = _keys()
    seen: list = []
    res = ok(run_parties([
        lambda ch, nm: run_train_party(s, 0, tables[0], ch, nm, keypair=ka, timeout=30),
        lambda ch, nm: run_train_party(s, 1, tables[1], ch, nm, keypair=kb, timeout=30,
                                       progress=lambda *a: seen.append(a)),
    ]))
    assert res[0].rows == res[1].rows == 40  # the ids only one side has were dropped
    common = sorted(ids)
    ia, ib = _aligned(tables, common)
    est = VerticalLinearRegression(alpha=0.2, max_epochs=3, batch_size=0, key_bits=1024, amplitude=1e-12,
                                   random_state=7)
    est.fit([tables[0].X[ia], tables[1].X[ib]], tables[1].y[ib], keypairs=(ka, kb))
    fa, lb = ModelPart.from_bytes(res[0].model), ModelPart.from_bytes(res[1].model)
    assert (fa.role, lb.role) == ("feature", "label")
    assert fa.meta["columns"] == tables[0].columns and fa.meta["modelId"] == lb.meta["modelId"]
    np.testing.assert_allclose(fa.weights, est.feature_part_.weights, atol=2e-5)  # 24-bit fixed-point shares
    np.testing.assert_allclose(lb.weights, est.label_part_.weights, atol=2e-5)
    np.testing.assert_allclose(fa.mean, est.feature_part_.mean, rtol=0, atol=0)  # standardization is exact
    np.testing.assert_allclose(res[1].history, [h["loss"] for h in est.history_], rtol=1e-4)
    assert res[0].history == res[1].history and res[0].metrics == res[1].metrics == {}
    assert [a for a in seen if a[0] == "train"][-1][:3] == ("train", 3, 3)
    assert any(a[0] == "psi" for a in seen)

    # prediction: other rows, other orders, the label party's file without the label column
    ptab, pids, _, _ = _tables(rng, 15, (2, 3), label_at=-1)
    ptab = [PartyTable(t.ids, tables[i].columns, t.X, None) for i, t in enumerate(ptab)]
    ps = spec("linear", "predict", psiBits=1024)
    out = ok(run_parties([
        lambda ch, nm: run_predict_party(ps, 0, ptab[0], res[0].model, ch, nm, timeout=30),
        lambda ch, nm: run_predict_party(ps, 1, ptab[1], res[1].model, ch, nm, timeout=30),
    ]))
    assert out[0] is None and isinstance(out[1], PredictOutcome)
    assert out[1].ids == sorted(pids) and out[1].proba is None
    ja, jb = _aligned(ptab, sorted(pids))
    want = est.predict([ptab[0].X[ja], ptab[1].X[jb]])
    np.testing.assert_allclose(out[1].values, want, atol=1e-3 * np.abs(want).max())


def test_logistic_with_text_labels_split_evaluation_and_label_at_party_0(tmp_path) -> None:
    rng = np.random.default_rng(3)
    tables, ids, _, _ = _tables(rng, 50, (2, 2), label_at=0, classes=("no", "yes"))
    s = spec("logistic", alpha=0.5, epochs=4, batchSize=0, keyBits=1024, psiBits=1024, positiveClass="yes",
             evalMethod="split", testSize=0.3, seed=5)
    ka, kb = _keys()
    res = ok(run_parties([
        lambda ch, nm: run_train_party(s, 0, tables[0], ch, nm, keypair=kb, timeout=30),
        lambda ch, nm: run_train_party(s, 1, tables[1], ch, nm, keypair=ka, timeout=30),
    ]))
    common = sorted(ids)
    i0, i1 = _aligned(tables, common)
    tr, te = random_split(50, 0.3, seed=5)
    assert res[0].rows == res[1].rows == len(tr)
    X0, X1, y = tables[0].X[i0], tables[1].X[i1], tables[0].y[i0]
    est = VerticalLogisticRegression(alpha=0.5, max_epochs=4, batch_size=0, key_bits=1024, positive_class="yes",
                                     label_party=0, random_state=5)
    est.fit([X0[tr], X1[tr]], y[tr], keypairs=(ka, kb))
    lab, feat = ModelPart.from_bytes(res[0].model), ModelPart.from_bytes(res[1].model)
    np.testing.assert_allclose(lab.weights, est.label_part_.weights, atol=2e-5)
    np.testing.assert_allclose(feat.weights, est.feature_part_.weights, atol=2e-5)
    want = classification_metrics(y[te] == "yes", est.predict_proba([X0[te], X1[te]])[:, 1])
    assert set(res[0].metrics) == set(want) and res[1].metrics == {}
    for k in ("accuracy", "auc"):
        assert res[0].metrics[k] == pytest.approx(want[k], abs=0.05)
    assert res[0].metrics["accuracy"] > 0.8
    ps = spec("logistic", "predict", psiBits=1024)
    out = ok(run_parties([
        lambda ch, nm: run_predict_party(ps, 0, tables[0], res[0].model, ch, nm, timeout=30),
        lambda ch, nm: run_predict_party(ps, 1, tables[1], res[1].model, ch, nm, timeout=30),
    ]))
    assert out[1] is None
    pred = out[0]
    assert set(pred.values) <= {"yes", "no"} and pred.proba is not None
    np.testing.assert_allclose(pred.proba, est.predict_proba([X0, X1])[:, 1], atol=1e-3)
    path = tmp_path / "pred.csv"
    pred.to_csv(path)
    lines = path.read_text().splitlines()
    assert lines[0] == "id,prediction,probability" and len(lines) == 51 and lines[1].startswith(common[0] + ",")


def test_each_partys_batch_work_runs_on_the_compute_backend_it_is_given() -> None:
    from dtxfast.compute.base import LocalCompute

    class Counting(LocalCompute):  # the real local kernels, counting what each party sends through
        def __init__(self):
            super().__init__()
            self.calls: dict[str, int] = {}

        def _count(self, name):
            self.calls[name] = self.calls.get(name, 0) + 1

        def sign_own(self, *a, **k):
            self._count("sign_own")
            return super().sign_own(*a, **k)

        def blind(self, *a, **k):
            self._count("blind")
            return super().blind(*a, **k)

        def matmul(self, *a, **k):
            self._count("matmul")
            return super().matmul(*a, **k)

    rng = np.random.default_rng(13)
    tables, *_ = _tables(rng, 12, (1, 1), label_at=1)
    s = spec("linear", epochs=1, batchSize=0, keyBits=1024, psiBits=1024)
    cb = [Counting(), Counting()]
    ka, kb = _keys()
    ok(run_parties([lambda ch, nm: run_train_party(s, 0, tables[0], ch, nm, keypair=ka, compute=cb[0], timeout=30),
                    lambda ch, nm: run_train_party(s, 1, tables[1], ch, nm, keypair=kb, compute=cb[1], timeout=30)]))
    assert cb[0].calls.get("blind") and cb[1].calls.get("sign_own")  # PSI: A requests, B (label) signs
    assert cb[0].calls.get("matmul") and cb[1].calls.get("matmul")  # the gradient's X.T @ [[d]] at both


# -- dnn ------------------------------------------------------------------------------------------------
def _seeded(seed, fn):
    """``fn`` under the tests-only fixed PRF seeds (a context variable: entered in the party's thread)."""
    def run(*args):
        with _insecure_fixed_seeds(seed):
            return fn(*args)
    return run


def _dnn_estimator(cls, tables, common, lab, train_y, **kw):
    """The in-process estimator on the aligned raw blocks (it standardizes each party's columns, as the job)."""
    idx = _aligned(tables, common)
    est = cls(**kw, label_party=lab)
    with _insecure_fixed_seeds(42):
        est.fit([t.X[i] for t, i in zip(tables, idx)], train_y(idx[lab]))
    return est


def test_dnn_three_parties_equal_the_estimator_exactly_and_predict_in_any_task_order() -> None:
    rng = np.random.default_rng(8)
    tables, ids, _, _ = _tables(rng, 48, (2, 1, 2), label_at=1, extra=(2, 3))
    # a third party's extra ids
    s = spec("dnn", hiddenLayers="4", epochs=2, batchSize=16, learningRate=0.1, psiBits=1024, seed=9)
    res = ok(run_parties([_seeded(42, lambda ch, nm, i=i: run_train_party(s, i, tables[i], ch, nm, timeout=30))
                          for i in range(3)]))
    assert [r.rows for r in res] == [48, 48, 48]
    common = sorted(ids)
    est = _dnn_estimator(VerticalMLPRegressor, tables, common, 1, lambda i: tables[1].y[i],
                         hidden_layer_sizes=(4,), epochs=2, batch_size=16, learning_rate=0.1, alpha=0.01,
                         lr_decay=0.02, random_state=9)
    # predict with the parties in another task order: party i of the training runs as task party perm[i]
    perm = [2, 0, 1]
    inv = [perm.index(k) for k in range(3)]
    ps = spec("dnn", "predict", psiBits=1024)
    ptables = [PartyTable(t.ids[:40], t.columns, t.X[:40], None) for t in tables]
    out = ok(run_parties([_seeded(42, lambda ch, nm, k=k: run_predict_party(ps, k, ptables[inv[k]], res[inv[k]].model,
                                                                            ch, nm, timeout=30))
                          for k in range(3)]))
    got = [o for o in out if o is not None]
    assert len(got) == 1 and out[perm[1]] is got[0]  # only the label party learns the outputs
    pcommon = sorted(set(ptables[0].ids) & set(ptables[1].ids) & set(ptables[2].ids))
    assert got[0].ids == pcommon
    idx = _aligned(ptables, pcommon)
    with _insecure_fixed_seeds(42):
        want = est.predict([t.X[i] for t, i in zip(ptables, idx)])
    np.testing.assert_array_equal(got[0].values, want)  # same seeds: the same shares, bit for bit


def test_dnn_classification_with_kfold_metrics() -> None:
    rng = np.random.default_rng(2)
    tables, ids, _, _ = _tables(rng, 36, (1, 2, 1), label_at=2, classes=("a", "b"), extra=(1, 1))
    s = spec("dnn", hiddenLayers="4", epochs=2, batchSize=12, objective="classification", evalMethod="kfold",
             folds=2, psiBits=1024, seed=1)
    res = ok(run_parties([_seeded(42, lambda ch, nm, i=i: run_train_party(s, i, tables[i], ch, nm, timeout=30))
                          for i in range(3)]))
    assert set(res[2].metrics) == {"accuracy", "precision", "recall", "f1", "auc", "ks"}
    assert res[0].metrics == res[1].metrics == {}
    est = _dnn_estimator(VerticalMLPClassifier, tables, sorted(ids), 2, lambda i: tables[2].y[i],
                         hidden_layer_sizes=(4,), epochs=2, batch_size=12, learning_rate=0.1, alpha=0.01,
                         lr_decay=0.02, random_state=1)
    ps = spec("dnn", "predict", psiBits=1024)
    out = ok(run_parties([_seeded(42, lambda ch, nm, i=i: run_predict_party(ps, i, tables[i], res[i].model, ch, nm,
                                                                            timeout=30)) for i in range(3)]))
    idx = _aligned(tables, sorted(ids))
    blocks = [t.X[i] for t, i in zip(tables, idx)]
    with _insecure_fixed_seeds(42):
        np.testing.assert_array_equal(out[2].values, est.predict(blocks))
        z = est.decision_function(blocks)[:, 0]
    np.testing.assert_array_equal(out[2].proba, 1 / (1 + np.exp(-z)))


def test_what_crosses_the_channel_names_no_column_and_no_id_outside_the_intersection() -> None:
    """The handshake carries counts, not column names; PSI reveals only the common ids (2 and 3 parties)."""
    rng = np.random.default_rng(12)
    for algorithm, n in (("linear", 2), ("dnn", 3)):
        tables, ids, _, _ = _tables(rng, 16, (2,) * n, label_at=n - 1, extra=(3,) * 2)
        tables = [PartyTable(t.ids, [f"secretcol{i}{j}" for j in range(2)], t.X, t.y) for i, t in enumerate(tables)]
        extra = dict(keyBits=1024, batchSize=0) if n == 2 else {}
        s = spec(algorithm, epochs=1, psiBits=1024, **extra)
        net = InMemoryNetwork([f"P{i}" for i in range(n)], record=True)
        ok(run_parties([lambda ch, nm, i=i: run_train_party(s, i, tables[i], ch, nm, timeout=30) for i in range(n)],
                       net=net))
        wire = b"".join(m for _, _, m in net.transcript)
        assert b"secretcol" not in wire and b"only" not in wire  # no column name, no non-common id
        assert all(c.encode() not in wire for c in ids)  # the common ids travel only as blinded values or tags


@pytest.mark.parametrize("method", ["kfold", "loo"])
def test_linear_kfold_and_leave_one_out_metrics_equal_the_estimators_evaluation(method) -> None:
    from dtxfast.vfl.evaluation import evaluate

    rng = np.random.default_rng(17)
    tables, ids, _, _ = _tables(rng, 9, (1, 1), label_at=1, extra=(1, 1))
    s = spec("linear", alpha=0.3, epochs=2, batchSize=0, keyBits=1024, psiBits=1024, evalMethod=method, folds=3,
             seed=4)
    ka, kb = _keys()
    res = ok(run_parties([lambda ch, nm: run_train_party(s, 0, tables[0], ch, nm, keypair=ka, timeout=30),
                          lambda ch, nm: run_train_party(s, 1, tables[1], ch, nm, keypair=kb, timeout=30)]))
    assert res[0].metrics == {} and set(res[1].metrics) == {"rmse", "mae", "r2"} and res[1].rows == 9
    ia, ib = _aligned(tables, sorted(ids))
    est = VerticalLinearRegression(alpha=0.3, max_epochs=2, batch_size=0, key_bits=1024, random_state=4)
    # leave-one-out has no seed: the same folds as evaluate(), pooled alike (tolerance: fresh share masks)
    if method == "loo":
        want = evaluate(est, [tables[0].X[ia], tables[1].X[ib]], tables[1].y[ib], method="loo",
                        keypairs=(ka, kb)).mean
        for k in want:
            assert res[1].metrics[k] == pytest.approx(want[k], rel=1e-3, abs=1e-4)
    else:  # k-fold: evaluate() seeds its folds from a task id, the job from the public seed
        assert np.isfinite(res[1].metrics["rmse"]) and res[1].metrics["rmse"] > 0


def test_dnn_prediction_refuses_rows_beyond_the_fixed_point_range_at_the_handshake() -> None:
    rng = np.random.default_rng(19)
    tables, *_ = _tables(rng, 20, (1, 1, 1), label_at=2, extra=(1, 1))
    s = spec("dnn", hiddenLayers="2", epochs=1, psiBits=1024)
    res = ok(run_parties([lambda ch, nm, i=i: run_train_party(s, i, tables[i], ch, nm, timeout=30) for i in range(3)]))
    big = tables[0].X.copy()
    big[0, 0] = 1e12  # far outside the training distribution: ~1e12 standard deviations >= 2^(40 - 16)
    ptables = [PartyTable(tables[0].ids, tables[0].columns, big, None)] + tables[1:]
    ps = spec("dnn", "predict", psiBits=1024)
    out = run_parties([lambda ch, nm, i=i: run_predict_party(ps, i, ptables[i], res[i].model, ch, nm, timeout=60)
                       for i in range(3)])
    assert isinstance(out[0], ParameterError) and "fixed-point format with fracBits=16" in str(out[0])
    assert all(isinstance(r, ParameterError) and "party P0 cannot run this task" in str(r) for r in out[1:])


def test_dnn_three_classes_predicts_as_the_estimator_with_split_accuracy() -> None:
    rng = np.random.default_rng(23)
    tables, ids, blocks, _ = _tables(rng, 45, (1, 1, 2), label_at=0, extra=(1, 2))
    # labels: three bands of party 0's own column (the label party holds them)
    band = np.digitize(tables[0].X[:, 0], np.quantile(tables[0].X[:, 0], [1 / 3, 2 / 3]))
    y = np.array(["lo", "mid", "hi"])[band]
    tables[0] = PartyTable(tables[0].ids, tables[0].columns, tables[0].X, y)
    s = spec("dnn", hiddenLayers="4", epochs=2, batchSize=15, objective="classification", evalMethod="split",
             psiBits=1024, seed=6)
    res = ok(run_parties([_seeded(42, lambda ch, nm, i=i: run_train_party(s, i, tables[i], ch, nm, timeout=30))
                          for i in range(3)]))
    assert set(res[0].metrics) == {"accuracy"} and 0 <= res[0].metrics["accuracy"] <= 1
    common = sorted(ids)
    tr, te = random_split(45, 0.3, seed=6)
    idx = _aligned(tables, common)
    est = VerticalMLPClassifier(hidden_layer_sizes=(4,), epochs=2, batch_size=15, learning_rate=0.1, alpha=0.01,
                                lr_decay=0.02, random_state=6, label_party=0)
    with _insecure_fixed_seeds(42):
        est.fit([t.X[i][tr] for t, i in zip(tables, idx)], y[idx[0]][tr])
        want_test = est.predict([t.X[i][te] for t, i in zip(tables, idx)])
    # the job's fold runs under other PRF seeds than the estimator's fit: allow one row's difference
    assert res[0].metrics["accuracy"] == pytest.approx(np.mean(want_test == y[idx[0]][te]), abs=1.01 / len(te))
    assert res[0].rows == len(tr)


# -- failures ---------------------------------------------------------------------------------------
def test_a_peer_that_dies_before_the_handshake_fails_the_other_within_the_timeout() -> None:
    rng = np.random.default_rng(0)
    tables, *_ = _tables(rng, 10, (1, 1), label_at=1)
    s = spec("linear", epochs=1, keyBits=1024, psiBits=1024)

    def dead(ch, nm):
        raise RuntimeError("executor crashed")

    t0 = time.monotonic()
    res = run_parties([lambda ch, nm: run_train_party(s, 0, tables[0], ch, nm, timeout=1.0), dead])
    assert isinstance(res[0], ProtocolError) and "handshake" in str(res[0])
    assert time.monotonic() - t0 < 10


class _DyingChannel:
    """Wraps a channel; after ``limit`` sends the party 'dies' (every later call raises)."""

    def __init__(self, inner, limit):
        self.inner, self.limit, self.name = inner, limit, inner.name

    def send(self, peer, data):
        self.limit -= 1
        if self.limit < 0:
            raise RuntimeError("killed")
        self.inner.send(peer, data)

    def __getattr__(self, item):
        return getattr(self.inner, item)


@pytest.mark.parametrize("algorithm", ["linear", "dnn"])
def test_a_peer_that_dies_mid_training_fails_the_others_within_the_timeout(algorithm) -> None:
    rng = np.random.default_rng(1)
    n = 3 if algorithm == "dnn" else 2
    tables, *_ = _tables(rng, 24, (1,) * n, label_at=n - 1, extra=(1,) * 2)
    s = spec(algorithm, epochs=5, psiBits=1024, **({"keyBits": 1024, "batchSize": 0} if n == 2 else {}))
    limit = 12  # past the handshake and PSI, inside training
    fns = [lambda ch, nm, i=i: run_train_party(s, i, tables[i], ch if i else _DyingChannel(ch, limit), nm,
                                               timeout=1.5)
           for i in range(n)]
    t0 = time.monotonic()
    res = run_parties(fns)
    assert isinstance(res[0], (RuntimeError, ParameterError))
    for r in res[1:]:
        assert isinstance(r, ProtocolError), r
    assert any("train" in str(r) for r in res[1:])
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize("holders", [(), (0, 1)])
def test_no_or_two_label_holders_is_refused_at_every_party(holders) -> None:
    rng = np.random.default_rng(4)
    tables, *_ = _tables(rng, 10, (1, 1), label_at=1)
    tables = [PartyTable(t.ids, t.columns, t.X, np.ones(len(t.ids)) if i in holders else None)
              for i, t in enumerate(tables)]
    s = spec("linear", epochs=1, keyBits=1024, psiBits=1024)
    res = run_parties([lambda ch, nm, i=i: run_train_party(s, i, tables[i], ch, nm, timeout=5) for i in range(2)])
    for r in res:
        assert isinstance(r, ParameterError) and "exactly one party" in str(r)


def test_other_tasks_parameters_are_refused_in_the_handshake() -> None:
    rng = np.random.default_rng(4)
    tables, *_ = _tables(rng, 10, (1, 1), label_at=1)
    s0, s1 = spec("linear", epochs=1, keyBits=1024), spec("linear", epochs=2, keyBits=1024)
    res = run_parties([lambda ch, nm: run_train_party(s0, 0, tables[0], ch, nm, timeout=5),
                       lambda ch, nm: run_train_party(s1, 1, tables[1], ch, nm, timeout=5)])
    assert all(isinstance(r, ProtocolError) and "another task" in str(r) for r in res)


def test_a_party_that_cannot_run_stops_every_party_at_the_handshake() -> None:
    rng = np.random.default_rng(5)
    tables, *_ = _tables(rng, 12, (1, 1), label_at=1, classes=("no", "yes"))
    s = spec("logistic", epochs=1, keyBits=1024, psiBits=1024, positiveClass="maybe")
    t0 = time.monotonic()
    res = run_parties([lambda ch, nm, i=i: run_train_party(s, i, tables[i], ch, nm, timeout=60) for i in range(2)])
    assert time.monotonic() - t0 < 10  # nobody waited for the 60 s timeout
    assert isinstance(res[1], ParameterError) and "positive class 'maybe' does not occur" in str(res[1])
    assert isinstance(res[0], ParameterError) and "party P1 cannot run this task" in str(res[0])
    assert "maybe" not in str(res[0])  # the reason stays with the party it concerns


@pytest.fixture(scope="module")
def trained_linear():
    rng = np.random.default_rng(6)
    tables, *_ = _tables(rng, 20, (1, 2), label_at=1)
    s = spec("linear", epochs=1, batchSize=0, keyBits=1024, psiBits=1024)
    ka, kb = _keys()
    runs = [ok(run_parties([lambda ch, nm: run_train_party(s, 0, tables[0], ch, nm, keypair=ka, timeout=30),
                            lambda ch, nm: run_train_party(s, 1, tables[1], ch, nm, keypair=kb, timeout=30)]))
            for _ in range(2)]
    return tables, runs


def test_predict_refuses_a_model_that_is_not_this_partys(trained_linear) -> None:
    tables, runs = trained_linear
    ps = spec("linear", "predict", psiBits=1024)
    other_cols = PartyTable(tables[0].ids, ["x"], tables[0].X, None)
    with pytest.raises(ParameterError, match="trained on columns c0_0; this file has x"):
        run_predict_party(ps, 0, other_cols, runs[0][0].model, InMemoryNetwork(["P0", "P1"]).channel("P0"),
                          ["P0", "P1"])
    with pytest.raises(ParameterError, match="is a linear model, the task is logistic"):
        run_predict_party(spec("logistic", "predict"), 0, tables[0], runs[0][0].model,
                          InMemoryNetwork(["P0", "P1"]).channel("P0"), ["P0", "P1"])
    with pytest.raises(ParameterError, match="not a dnn model part"):
        run_predict_party(spec("dnn", "predict"), 0, tables[0], runs[0][0].model,
                          InMemoryNetwork(["P0", "P1", "P2"]).channel("P0"), ["P0", "P1", "P2"])
    edited = runs[0][0].model.replace(b'\\"role\\":\\"feature\\"', b'\\"role\\":\\"label\\"')
    assert edited != runs[0][0].model
    with pytest.raises(ParameterError, match="checksum"):
        run_predict_party(ps, 0, tables[0], edited, InMemoryNetwork(["P0", "P1"]).channel("P0"), ["P0", "P1"])
    # one party's part does not fit its file: both stop at the handshake
    res = run_parties([lambda ch, nm: run_predict_party(ps, 0, other_cols, runs[0][0].model, ch, nm, timeout=60),
                       lambda ch, nm: run_predict_party(ps, 1, tables[1], runs[0][1].model, ch, nm, timeout=60)])
    assert isinstance(res[0], ParameterError) and "trained on columns" in str(res[0])
    assert isinstance(res[1], ParameterError) and "party P0 cannot run this task" in str(res[1])
    # parts of two different trainings
    res = run_parties([lambda ch, nm: run_predict_party(ps, 0, tables[0], runs[0][0].model, ch, nm, timeout=5),
                       lambda ch, nm: run_predict_party(ps, 1, tables[1], runs[1][1].model, ch, nm, timeout=5)])
    assert all(isinstance(r, ProtocolError) and "different trainings" in str(r) for r in res)


# -- TaskSpec, assignments -------------------------------------------------------------------------------
BAD = [
    ("svm", "train", 2, {}, "unknown algorithm 'svm'"),
    ("linear", "score", 2, {}, "unknown task kind 'score'"),
    ("linear", "train", 3, {}, "a linear task has 2 parties, not 3"),
    ("dnn", "train", 2, {}, "a dnn task has 3 parties, not 2"),
    ("linear", "train", 2, {"learningRate": "0.1"}, "unknown parameter 'learningRate' for a linear task (known: "),
    ("linear", "train", 2, {"alpha": "fast"}, "alpha must be a number, not 'fast'"),
    ("linear", "train", 2, {"alpha": "nan"}, "alpha must be a finite number"),
    ("linear", "train", 2, {"alpha": float("inf")}, "alpha must be a finite number"),
    ("linear", "train", 2, {"alpha": 0}, "alpha must lie in (0.0, 1000000.0], not 0"),
    ("linear", "train", 2, {"epochs": "2.5"}, "epochs must be an integer, not '2.5'"),
    ("linear", "train", 2, {"epochs": 0}, "epochs must lie in [1, 1000000], not 0"),
    ("linear", "train", 2, {"batchSize": True}, "batchSize must be a number, not True"),
    ("linear", "train", 2, {"regMode": "l3"}, "regMode must be one of none, l1, l2, not 'l3'"),
    ("linear", "train", 2, {"regMode": "l1"}, "regMode=l1 needs"),
    ("linear", "train", 2, {"keyBits": 1025}, "keyBits must be even"),
    ("linear", "train", 2, {"keyBits": 512}, "keyBits must lie in [1024, 8192], not 512"),
    ("linear", "train", 2, {"shuffle": "maybe"}, "shuffle must be true or false, not 'maybe'"),
    ("linear", "train", 2, {"evalMethod": "bootstrap"}, "evalMethod must be one of none, split, kfold, loo"),
    ("linear", "train", 2, {"testSize": 1}, "testSize must lie in (0.0, 1.0), not 1"),
    ("logistic", "train", 2, {"threshold": "-inf"}, "threshold must be a finite number"),
    ("logistic", "train", 2, {"positiveClass": ""}, "positiveClass must be 1 to 256 printable characters"),
    ("dnn", "train", 3, {"hiddenLayers": "32,,16"}, 'hiddenLayers must be layer widths like "32,16"'),
    ("dnn", "train", 3, {"hiddenLayers": "0"}, "hiddenLayers must be 1 to 16 layer widths of 1 to 4096"),
    ("dnn", "train", 3, {"fracBits": 40}, "fracBits must lie in [8, 30], not 40"),
    ("dnn", "train", 3, {"alpha": 0.1}, "unknown parameter 'alpha' for a dnn task"),
]


@pytest.mark.parametrize(("algorithm", "kind", "parties", "params", "message"), BAD,
                         ids=[f"{b[0]}-{b[4][:24]}" for b in BAD])
def test_bad_parameters_give_one_line(algorithm, kind, parties, params, message) -> None:
    with pytest.raises(ParameterError) as info:
        TaskSpec.from_params(algorithm, kind, label="y", id_column="id", params=params, parties=parties)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_label_and_id_column_are_checked() -> None:
    for label, idc in (("", "id"), ("y", " "), ("id", "id")):
        with pytest.raises(ParameterError):
            TaskSpec.from_params("linear", "train", label=label, id_column=idc, params={}, parties=2)
    with pytest.raises(ParameterError, match="lack 'label' or 'idColumn'"):
        TaskSpec.from_ledger("linear", "train", {"alpha": 0.1})


def test_parse_assignments() -> None:
    assert parse_assignments(["a=1", " b = x=y "]) == {"a": "1", "b": "x=y"}
    for bad in (["a"], ["=1"], ["a=1", "a=2"]):
        with pytest.raises(ParameterError):
            parse_assignments(bad)


_finite = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False)


@given(
    algorithm=st.sampled_from(["linear", "logistic", "dnn"]),
    kind=st.sampled_from(["train", "predict"]),
    alpha=_finite,
    epochs=st.integers(1, 10_000),
    batch=st.integers(1, 4096),
    layers=st.lists(st.integers(1, 64), min_size=1, max_size=4),
    ev=st.sampled_from(["none", "split", "kfold", "loo"]),
    seed=st.one_of(st.none(), st.integers(0, 2**63 - 1)),
    as_text=st.booleans(),
    pc=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FFF), min_size=1, max_size=8),
)
def test_spec_round_trips_through_the_ledger(algorithm, kind, alpha, epochs, batch, layers, ev, seed, as_text,
                                             pc) -> None:
    params: dict = {"epochs": epochs, "batchSize": batch, "evalMethod": ev}
    if algorithm == "dnn":
        params.update(learningRate=alpha, hiddenLayers=",".join(map(str, layers)))
    else:
        params.update(alpha=alpha, regMode="l2", regParam=alpha / 2)
    if algorithm == "logistic":
        params["positiveClass"] = pc
    if seed is not None:
        params["seed"] = seed
    if as_text:
        params = {k: str(v) for k, v in params.items()}
    s = TaskSpec.from_params(algorithm, kind, label="label col", id_column="id", params=params,
                             parties=3 if algorithm == "dnn" else 2)
    led = s.to_ledger()
    assert all(isinstance(v, (str, int, float, bool)) for v in led.values())
    back = TaskSpec.from_ledger(algorithm, kind, led)
    assert back == s and back.digest("t") == s.digest("t")
    assert ("seed" in s.params) == (seed is not None)


# -- the party's CSV file --------------------------------------------------------------------------------
CSV_BAD = [
    (b"", "the file is empty"),
    (b"\n\n", "the file is empty"),
    (b"key,a\n1,2\n", "no id column 'id' (columns: key, a)"),
    (b"id,a\n", "no data rows after the header"),
    (b"id,a\nu1,2\nu2,3\nu1,4\n", "line 4: id 'u1' already on line 2"),
    (b"id,a\nu1,2\n\nu2,x\n", "line 4 (id 'u2'): column 'a' is not a number: 'x'"),
    (b"id,a\nu1,inf\n", "line 2 (id 'u1'): column 'a' is not a finite number: 'inf'"),
    (b"id,a\nu1,2,3\n", "line 2: 3 fields, the header has 2"),
    (b"id,a\n,2\n", "line 2: empty id"),
    (b"id,a\nu1,\xff\n", "not UTF-8 text (line 2, byte 8)"),
    (b"id,a,a\nu1,1,2\n", "column 'a' appears twice"),
    (b"id,a,y\nu1,1,high\n", "line 2 (id 'u1'): label 'y' is not a finite number: 'high'"),
]


@pytest.mark.parametrize(("content", "message"), CSV_BAD, ids=[m[:30] for _, m in CSV_BAD])
def test_bad_party_files_give_one_line_naming_file_and_line(tmp_path, content, message) -> None:
    p = tmp_path / "party.csv"
    p.write_bytes(content)
    with pytest.raises(ParameterError) as info:
        read_party_csv(p, spec("linear"))
    assert message in str(info.value) and str(p) in str(info.value) and "\n" not in str(info.value)


def test_party_file_reads_ids_label_and_columns_by_name(tmp_path) -> None:
    p = tmp_path / "b.csv"
    p.write_text('f1,y,id,"f 2"\n1.5,yes,u9,2\n-1,no,u3,4e1\n')
    t = read_party_csv(p, spec("logistic"))
    assert t.ids == ["u9", "u3"] and t.columns == ["f1", "f 2"] and t.y.tolist() == ["yes", "no"]
    np.testing.assert_array_equal(t.X, [[1.5, 2.0], [-1.0, 40.0]])
    other = TaskSpec.from_params("logistic", "train", label="z", id_column="id", params={}, parties=2)
    with pytest.raises(ParameterError, match="column 'y' is not a number"):  # no label here: y is a feature
        read_party_csv(p, other)
    p.write_text("id,f1\nu1,2\n")
    assert read_party_csv(p, other).y is None


# -- the same jobs, one OS process per party, over the mutual-TLS channel ---------------------------------
def _tls_party(index: int, name: str, ch, job) -> list:
    from dtxfast.nodes.jobs import TaskSpec, read_party_csv, run_predict_party, run_train_party

    train_params, predict_params, train_file, predict_file = job
    s = TaskSpec.from_params("linear", "train", label="y", id_column="id", params=train_params, parties=2)
    ps = TaskSpec.from_params("linear", "predict", label="y", id_column="id", params=predict_params, parties=2)
    out = run_train_party(s, index, read_party_csv(train_file, s), ch, ["A", "B"], timeout=60, task_id="t-1")
    pred = run_predict_party(ps, index, read_party_csv(predict_file, ps), out.model, ch, ["A", "B"], timeout=60,
                             task_id="t-2")
    return [out.model, out.rows, None if pred is None else (pred.ids, pred.values.tolist())]


def test_linear_task_across_two_processes_over_tls(tmp_path) -> None:
    from dtxfast.ledger import SQLiteLedger
    from transport_helpers import run_ledger_parties

    path = str(tmp_path / "ledger.db")
    SQLiteLedger(path, create=True).close()
    rng = np.random.default_rng(21)
    tables, ids, _, _ = _tables(rng, 30, (2, 2), label_at=1)
    files = []
    for i, t in enumerate(tables):
        for kind, rows in (("train", slice(None)), ("predict", slice(5, 25))):
            f = tmp_path / f"{kind}{i}.csv"
            head = ["id"] + t.columns + (["y"] if t.y is not None and kind == "train" else [])
            lines = [",".join(head)]
            for k in range(len(t.ids))[rows]:
                vals = [t.ids[k]] + [repr(float(v)) for v in t.X[k]]
                if t.y is not None and kind == "train":
                    vals.append(repr(float(t.y[k])))
                lines.append(",".join(vals))
            f.write_text("\n".join(lines) + "\n")
        files.append((tmp_path / f"train{i}.csv", tmp_path / f"predict{i}.csv"))
    params = {"alpha": 0.2, "epochs": 2, "batchSize": 0, "keyBits": 1024, "psiBits": 1024, "seed": 3}
    got = run_ledger_parties(path, _tls_party, ["A", "B"],
                             [(params, {"psiBits": 1024}, files[i][0], files[i][1]) for i in range(2)])
    assert got[0][1] == got[1][1] == 30 and got[0][2] is None
    pids, values = got[1][2]
    fa, lb = ModelPart.from_bytes(got[0][0]), ModelPart.from_bytes(got[1][0])
    common = sorted(ids)
    ia, ib = _aligned(tables, common)
    est = VerticalLinearRegression(alpha=0.2, max_epochs=2, batch_size=0, key_bits=1024, random_state=3)
    est.fit([tables[0].X[ia], tables[1].X[ib]], tables[1].y[ib])
    np.testing.assert_allclose(fa.weights, est.feature_part_.weights, atol=2e-5)
    np.testing.assert_allclose(lb.weights, est.label_part_.weights, atol=2e-5)
    want_ids = sorted(set(tables[0].ids[5:25]) & set(tables[1].ids[5:25]))
    assert pids == want_ids
    ja, jb = _aligned(tables, want_ids)
    np.testing.assert_allclose(values, est.predict([tables[0].X[ja], tables[1].X[jb]]), atol=1e-3)


# -- PaddleDTX's own sample files as tasks ----------------------------------------------------------------
def test_paddledtx_sample_files_as_a_linear_task_and_a_three_party_dnn_task() -> None:
    from vfl_helpers import DATA

    from dtxfast.vfl.jobs import read_table

    d = DATA / "linear_boston_housing"
    s = TaskSpec.from_params("linear", "train", label="MEDV", id_column="id", parties=2,
                             params={"alpha": 0.3, "epochs": 8, "batchSize": 0, "keyBits": 1024, "psiBits": 1024,
                                     "evalMethod": "split", "testSize": 0.2, "seed": 1})
    tabs = [read_party_csv(d / f"train_data{p}.csv", s) for p in "AB"]
    res = ok(run_parties([lambda ch, nm, i=i: run_train_party(s, i, tabs[i], ch, nm, timeout=60) for i in range(2)]))
    assert res[1].rows == round(456 * 0.8) and res[1].metrics["r2"] > 0.5
    ps = TaskSpec.from_params("linear", "predict", label="MEDV", id_column="id", parties=2, params={"psiBits": 1024})
    ptabs = [read_party_csv(d / f"predict_data{p}.csv", ps) for p in "AB"]
    out = ok(run_parties([lambda ch, nm, i=i: run_predict_party(ps, i, ptabs[i], res[i].model, ch, nm, timeout=60)
                          for i in range(2)]))[1]
    truth = read_table(d / "targetValues.csv", id_column="id", label="MEDV")
    want = dict(zip(truth.ids, truth.y))
    err = np.array([v - want[i] for i, v in zip(out.ids, out.values)])
    assert len(out.ids) == 50 and np.sqrt(np.mean(err**2)) < np.std(list(want.values()))

    d = DATA.parent / "dnn_paddlefl"
    s = TaskSpec.from_params("dnn", "train", label="MEDV", id_column="id", parties=3,
                             params={"hiddenLayers": "16", "epochs": 4, "batchSize": 32, "psiBits": 1024, "seed": 2})
    tabs = [read_party_csv(d / f"train_data{p}.csv", s) for p in "ABC"]
    res = ok(run_parties([lambda ch, nm, i=i: run_train_party(s, i, tabs[i], ch, nm, timeout=60) for i in range(3)]))
    assert [r.rows for r in res] == [404] * 3
    ps = TaskSpec.from_params("dnn", "predict", label="MEDV", id_column="id", parties=3, params={"psiBits": 1024})
    ptabs = [read_party_csv(d / f"predict_data{p}.csv", ps) for p in "ABC"]
    out = ok(run_parties([lambda ch, nm, i=i: run_predict_party(ps, i, ptabs[i], res[i].model, ch, nm, timeout=60)
                          for i in range(3)]))[2]
    truth = read_table(d / "targetValues.csv", id_column="originId", label="MEDV")  # its own key
    want = dict(zip(truth.ids, truth.y))
    err = np.array([v - want[i] for i, v in zip(out.ids, out.values)])
    assert len(out.ids) == 102
    # the plaintext reference of the same network, schedule and standardization, on the same rows
    ref = VerticalMLPRegressor(hidden_layer_sizes=(16,), epochs=4, batch_size=32, random_state=2, label_party=2,
                               secure=False)
    idx = _aligned(tabs, sorted(tabs[0].ids))
    ref.fit([t.X[i] for t, i in zip(tabs, idx)], tabs[2].y[idx[2]])
    pidx = _aligned(ptabs, out.ids)
    ref_err = ref.predict([t.X[i] for t, i in zip(ptabs, pidx)]) - np.array([want[i] for i in out.ids])
    rmse, ref_rmse = np.sqrt(np.mean(err**2)), np.sqrt(np.mean(ref_err**2))
    assert abs(rmse - ref_rmse) < 0.02 * ref_rmse, (rmse, ref_rmse)  # 4 epochs: the point is the match
