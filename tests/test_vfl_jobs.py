"""The ``dtx vfl`` jobs below the CLI (dtxfast.vfl.jobs): file reading, alignment, prediction output."""

from __future__ import annotations

import numpy as np
import pytest
from vfl_helpers import DATA

from dtxfast.errors import ParameterError
from dtxfast.vfl.jobs import PredictOutcome, align_files, read_table, train_job


def test_read_table_first_column_is_the_id_and_the_label_is_by_name(tmp_path) -> None:
    p = tmp_path / "b.csv"
    p.write_text("key,f1,lab\nz,1,yes\na,2,no\n")
    t = read_table(p, label="lab", require_label=True)
    assert (t.ids, t.columns, t.y.tolist()) == (["z", "a"], ["f1"], ["yes", "no"])
    with pytest.raises(ParameterError, match="no label column 'Label' \\(columns: key, f1, lab\\)"):
        read_table(p, label="Label", require_label=True)
    with pytest.raises(ParameterError, match="line 2 \\(id 'z'\\): label 'lab' is not a finite number: 'yes'"):
        read_table(p, label="lab", numeric_label=True)
    with pytest.raises(ParameterError, match="column 'lab' is not a number"):  # without its label, a feature
        read_table(p, label="other")


def test_align_files_keeps_the_common_rows_in_id_order(tmp_path) -> None:
    (tmp_path / "a.csv").write_text("id,x\nu3,3\nu1,1\nu9,9\n")
    (tmp_path / "b.csv").write_text("id,w,y\nu1,10,0.5\nu7,70,0.1\nu3,30,0.7\n")
    d = align_files(tmp_path / "a.csv", tmp_path / "b.csv", label="y", psi_bits=1024)
    assert d.ids == ["u1", "u3"] and (d.rows_a, d.rows_b) == (3, 3)
    np.testing.assert_array_equal(d.XA[:, 0], [1, 3])
    np.testing.assert_array_equal(d.XB[:, 0], [10, 30])
    np.testing.assert_array_equal(d.y, [0.5, 0.7])
    (tmp_path / "c.csv").write_text("id,w,y\nq1,10,0.5\n")
    with pytest.raises(ParameterError, match="share no ids"):
        align_files(tmp_path / "a.csv", tmp_path / "c.csv", label="y", psi_bits=1024)


def test_prediction_rows_and_csv(tmp_path) -> None:
    out = PredictOutcome(["a", "b"], np.array(["yes", "no"]), np.array([0.912345678, 0.1]))
    assert out.header() == ["id", "prediction", "probability"]
    assert list(out.rows(digits=3)) == [["a", "yes", "0.912"], ["b", "no", "0.1"]]
    out.to_csv(tmp_path / "p.csv")
    assert (tmp_path / "p.csv").read_text().splitlines()[1] == "a,yes,0.912345678"


def test_train_job_reports_metrics_against_the_targets() -> None:
    d = DATA / "linear_boston_housing"
    logged: list[str] = []
    rep = train_job(d / "train_dataA.csv", d / "train_dataB.csv", label="MEDV", predict_a=d / "predict_dataA.csv",
                    predict_b=d / "predict_dataB.csv", target=d / "targetValues.csv", psi_bits=1024, log=logged.append,
                    alpha=0.2, max_epochs=5, batch_size=0, key_bits=1024)
    assert rep.aligned_rows == 456 and rep.prediction is not None and len(rep.prediction.ids) == 50
    assert set(rep.metrics) == {"rmse", "mae", "r2"} and rep.metrics["r2"] > 0.3
    assert logged[0].startswith("PSI: 456 common rows") and logged[1].startswith("trained 5 epochs")
    with pytest.raises(ParameterError, match="give both --predict-a and --predict-b"):
        train_job(d / "train_dataA.csv", d / "train_dataB.csv", label="MEDV", predict_a=d / "predict_dataA.csv")
