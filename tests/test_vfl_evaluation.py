"""VFL evaluation: metrics vs scikit-learn, splits, federated CV/LOO jobs, history, estimators, model files."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from vfl_helpers import keypairs

from dtxfast.errors import MalformedInput, ParameterError, StateError
from dtxfast.vfl import (
    VerticalLinearRegression,
    VerticalLogisticRegression,
    load_model_part,
    save_model_part,
)
from dtxfast.vfl import evaluation as ev


@pytest.fixture(scope="module")
def binary():
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.4
    score = y * 0.8 + rng.normal(size=200)
    score[:20] = np.round(score[:20])  # ties
    return y, score


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    y, p = rng.normal(size=50), rng.normal(size=50)
    m = ev.regression_metrics(y, p)
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert m["r2"] == pytest.approx(skm.r2_score(y, p))


def test_classification_metrics_match_sklearn(binary):
    y, s = binary
    pred = s >= 0.5
    assert ev.accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred))
    assert ev.precision(y, pred) == pytest.approx(skm.precision_score(y, pred))
    assert ev.recall(y, pred) == pytest.approx(skm.recall_score(y, pred))
    assert ev.f1(y, pred) == pytest.approx(skm.f1_score(y, pred))
    assert ev.auc(y, s) == pytest.approx(skm.roc_auc_score(y, s))
    fpr, tpr, thr = ev.roc_points(y, s)
    sfpr, stpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sfpr)
    np.testing.assert_allclose(tpr, stpr)
    assert ev.ks(y, s) == pytest.approx(np.max(stpr - sfpr))
    m = ev.classification_metrics(y, 1 / (1 + np.exp(-s)), 0.5)
    assert set(m) == {"accuracy", "precision", "recall", "f1", "auc", "ks"}
    assert np.isnan(ev.classification_metrics(np.ones(5), np.linspace(0, 1, 5))["auc"])
    with pytest.raises(ParameterError):
        ev.rmse([1.0], [1.0, 2.0])


def test_splits():
    tr, te = ev.random_split(100, 0.3, seed=3)
    assert len(te) == 30 and len(tr) == 70 and not set(tr) & set(te)
    assert np.array_equal(ev.random_split(100, 0.3, seed=3)[1], te)
    assert not np.array_equal(ev.random_split(100, 0.3, seed=4)[1], te)
    for k in (5, 10):
        folds = list(ev.kfold_splits(103, k, shuffle=True, seed=1))
        assert len(folds) == k
        tests = np.concatenate([t for _, t in folds])
        assert sorted(tests.tolist()) == list(range(103))
        assert all(len(a) + len(b) == 103 and not set(a) & set(b) for a, b in folds)
    plain = list(ev.kfold_splits(10, 5))
    assert plain[0][1].tolist() == [0, 1]
    loo = list(ev.leave_one_out_splits(4))
    assert [t.tolist() for _, t in loo] == [[0], [1], [2], [3]]
    assert ev.seed_from_task("job-1") == ev.seed_from_task("job-1") != ev.seed_from_task("job-2")
    with pytest.raises(ParameterError):
        ev.random_split(10, 1.5)
    with pytest.raises(ParameterError):
        list(ev.kfold_splits(3, 5))


def _reg_data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = X @ [1.0, -2.0, 0.5, 0.3] + 1.0 + rng.normal(size=n) * 0.1
    return [X[:, :2], X[:, 2:]], y


def test_federated_kfold_equals_plaintext_kfold():
    parts, y = _reg_data(40)
    kw = dict(alpha=0.3, max_epochs=6, batch_size=0, amplitude=0, key_bits=1024)
    fed = ev.cross_validate(VerticalLinearRegression(**kw), parts, y, 5, task_id="t", keypairs=keypairs())
    ref = ev.evaluate(VerticalLinearRegression(secure=False, **kw), parts, y, method="kfold", k=5, task_id="t")
    assert len(fed.folds) == 5
    for a, b in zip(fed.folds, ref.folds):
        assert a["rmse"] == pytest.approx(b["rmse"], rel=1e-5)  # secret-shared mode: 24-bit fixed point
    assert fed.mean["r2"] > 0.9


def test_loo_and_split_jobs_logistic():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 3))
    y = np.where(X @ [1.5, -1.0, 0.5] + 0.3 * rng.normal(size=40) > 0, "pos", "neg")
    est = VerticalLogisticRegression(alpha=0.3, max_epochs=10, batch_size=0, secure=False)
    loo = ev.evaluate(est, [X[:, :1], X[:, 1:]], y, method="loo")
    assert len(loo.folds) == 1 and len(loo.roc) == 1 and loo.mean["accuracy"] > 0.8
    split = ev.evaluate(est, [X[:, :1], X[:, 1:]], y, method="split", test_size=0.3, task_id="x")
    assert len(split.folds) == 1 and 0.0 <= split.mean["auc"] <= 1.0
    with pytest.raises(ParameterError):
        ev.evaluate(est, [X[:, :1], X[:, 1:]], y, method="bootstrap")


def test_validation_history_and_plot(tmp_path):
    parts, y = _reg_data(80, 1)
    tr, va = np.arange(60), np.arange(60, 80)
    est = VerticalLinearRegression(mode="fast", alpha=0.2, max_epochs=6, batch_size=32, amplitude=1e-12,
                                   key_bits=1024, eval_every=2)
    est.fit([p[tr] for p in parts], y[tr], validation=([p[va] for p in parts], y[va]), keypairs=keypairs())
    hist = est.history_
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5, 6]
    assert [("val_rmse" in h) for h in hist] == [False, True, False, True, False, True]
    assert hist[-1]["val_rmse"] < hist[1]["val_rmse"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    png = tmp_path / "curve.png"
    ev.plot_history(hist, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_estimator_params_parts_and_files(tmp_path):
    parts, y = _reg_data(50, 3)
    est = VerticalLinearRegression(alpha=0.3, max_epochs=15, batch_size=0, key_bits=1024, label_party=0)
    assert est.get_params()["alpha"] == 0.3
    est.set_params(alpha=0.25)
    assert est.alpha == 0.25
    with pytest.raises(ParameterError):
        est.set_params(C=1.0)
    with pytest.raises(StateError):
        est.predict(parts)
    est.fit(parts, y, keypairs=keypairs())
    fp, lp = est.model_parts_
    assert fp.n_features == 2 and lp.n_features == 2 and len(lp.weights) == 3
    save_model_part(fp, str(tmp_path / "a.json"))
    save_model_part(lp, str(tmp_path / "b.json"))
    again = VerticalLinearRegression.from_parts(load_model_part(str(tmp_path / "a.json")),
                                                load_model_part(str(tmp_path / "b.json")), label_party=0)
    np.testing.assert_array_equal(again.predict(parts), est.predict(parts))
    assert est.score(parts, y) > 0.9
    (tmp_path / "b.json").write_bytes((tmp_path / "b.json").read_bytes().replace(b"label", b"feature", 1))
    with pytest.raises(MalformedInput):
        load_model_part(str(tmp_path / "b.json"))
    with pytest.raises(ParameterError):
        VerticalLogisticRegression.from_parts(fp, lp)
    with pytest.raises(ParameterError):
        est.fit([parts[0]], y)


def test_logistic_estimator_labels_and_probabilities():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 4))
    y = np.where(X @ [1.0, 1.0, -1.0, 0.5] > 0, 7, 3)
    est = VerticalLogisticRegression(alpha=0.5, max_epochs=10, batch_size=0, key_bits=1024, threshold=0.5)
    est.fit([X[:, :2], X[:, 2:]], y, keypairs=keypairs())
    pred = est.predict([X[:, :2], X[:, 2:]])
    assert set(pred.tolist()) <= {3, 7} and est.classes_.tolist() == [3, 7]
    proba = est.predict_proba([X[:, :2], X[:, 2:]])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(pred == 7, proba[:, 1] >= 0.5)
    assert est.score([X[:, :2], X[:, 2:]], y) > 0.85
    with pytest.raises(ParameterError):
        VerticalLogisticRegression(key_bits=1024).fit([X[:, :2], X[:, 2:]], np.arange(60) % 3)
