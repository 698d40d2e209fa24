"""dtx vfl train (CLI) and the demo's quick run."""

from __future__ import annotations

from rich.console import Console
from vfl_helpers import DATA

from dtxfast.cli import main
from dtxfast.vfl import load_model_part
from dtxfast.vfl.demo import run_demo


def test_cli_train_predict_evaluate_plot(tmp_path, capsys):
    d = DATA / "logic_iris_plants"
    png = tmp_path / "curve.png"
    rc = main(["vfl", "train", "--data-a", str(d / "train_dataA.csv"), "--data-b", str(d / "train_dataB.csv"),
               "--label", "Label", "--model", "logistic", "--positive-class", "Iris-setosa", "--alpha", "0.5",
               "--mode", "fast", "--amplitude", "1e-9",
               "--epochs", "12", "--batch-size", "0", "--bits", "1024", "--psi-bits", "1024",
               "--val-fraction", "0.2", "--eval-every", "4",
               "--predict-a", str(d / "predict_dataA.csv"), "--predict-b", str(d / "predict_dataB.csv"),
               "--target", str(d / "targetValues.csv"), "--plot", str(png), "--save-dir", str(tmp_path / "m")])
    out = capsys.readouterr().out
    assert rc == 0
    metrics = dict(line.split("\t") for line in out.strip().splitlines())
    assert float(metrics["accuracy"]) == 1.0
    assert png.read_bytes()[:4] == b"\x89PNG"
    a, b = load_model_part(str(tmp_path / "m" / "model_a.json")), load_model_part(str(tmp_path / "m" / "model_b.json"))
    assert (a.role, b.role, b.positive_class) == ("feature", "label", "Iris-setosa")


def test_cli_errors_are_one_line(capsys):
    d = DATA / "logic_iris_plants"
    rc = main(["vfl", "train", "--data-a", str(d / "train_dataA.csv"), "--data-b", str(d / "train_dataB.csv"),
               "--label", "Species", "--bits", "1024"])
    err = capsys.readouterr().err
    assert rc != 0 and "no label column 'Species'" in err and "Traceback" not in err


def test_demo_quick():
    console = Console(record=True, width=120, force_terminal=False)
    res = run_demo(console, quick=True)
    text = console.export_text()
    assert res["bits"] == 1024 and len(res["jobs"]) == 2
    assert all(j["psi_ok"] for j in res["jobs"])
    assert "PSI" in text and "centralized scikit-learn" in text and "federated" in text
    lin, log = res["jobs"]
    assert lin["federated"]["r2"] > lin["central"]["r2"] - 0.1
    assert log["federated"]["auc"] > 0.95
    # secret-shared mode: per sample, each party sends a residual share (one ciphertext of 256
    # bytes at 1024 bits) and its masked score, packed 7 to a ciphertext
    floor = 2 * (1024 // 4) * (1 + 1 / 7)
    assert floor <= lin["bytes_per_sample_epoch"] < floor * 1.5


def test_cli_evaluate_kfold(capsys):
    d = DATA / "logic_iris_plants"
    rc = main(["vfl", "evaluate", "--data-a", str(d / "train_dataA.csv"), "--data-b", str(d / "train_dataB.csv"),
               "--label", "Label", "--model", "logistic", "--positive-class", "Iris-setosa", "--method", "kfold",
               "--k", "5", "--alpha", "0.1", "--epochs", "15", "--batch-size", "0", "--bits", "1024",
               "--psi-bits", "1024"])
    out = capsys.readouterr().out
    assert rc == 0
    metrics = dict(line.split("\t") for line in out.strip().splitlines())
    assert float(metrics["accuracy"]) > 0.97 and float(metrics["auc"]) > 0.99
    assert set(metrics) == {"accuracy", "precision", "recall", "f1", "auc", "ks"}


def test_cli_predict_from_saved_parts(tmp_path, capsys):
    d = DATA / "linear_boston_housing"
    rc = main(["vfl", "train", "--data-a", str(d / "train_dataA.csv"), "--data-b", str(d / "train_dataB.csv"),
               "--label", "MEDV", "--alpha", "0.2", "--epochs", "5", "--batch-size", "0", "--bits", "1024",
               "--psi-bits", "1024", "--save-dir", str(tmp_path)])
    assert rc == 0
    capsys.readouterr()
    out = tmp_path / "pred.csv"
    rc = main(["vfl", "predict", "--model-a", str(tmp_path / "model_a.json"), "--model-b",
               str(tmp_path / "model_b.json"), "--data-a", str(d / "predict_dataA.csv"), "--data-b",
               str(d / "predict_dataB.csv"), "--psi-bits", "1024", "--out", str(out)])
    assert rc == 0
    lines = out.read_text().strip().splitlines()
    assert lines[0] == "id,prediction" and len(lines) == 51
    assert all(0 < float(x.split(",")[1]) < 60 for x in lines[1:])
    rc = main(["vfl", "predict", "--model-a", str(tmp_path / "model_b.json"), "--model-b",
               str(tmp_path / "model_a.json"), "--data-a", str(d / "predict_dataA.csv"), "--data-b",
               str(d / "predict_dataB.csv")])
    assert rc != 0 and "feature party" in capsys.readouterr().err


def test_a_run_that_fails_midway_shows_its_error_alone(tmp_path):
    """A real ``dtx vfl train`` process whose --target does not match the predicted ids fails after
    PSI and training: stderr is the error line alone (no PSI count, no epochs, no progress bar),
    stdout is empty and no model part or plot was written; the same run with a good target prints
    its summary on stderr and the metrics on stdout (issue 15)."""
    import subprocess
    import sys

    rows = range(24)
    (tmp_path / "a.csv").write_text("id,x1,x2\n" + "".join(f"u{i},{i % 5},{(i * 7) % 3}\n" for i in rows))
    (tmp_path / "b.csv").write_text("id,x3,y\n" + "".join(f"u{i},{i % 4},{2 * i + 1}\n" for i in rows))
    (tmp_path / "pb.csv").write_text("id,x3\n" + "".join(f"u{i},{i % 4}\n" for i in rows))
    (tmp_path / "bad.csv").write_text("id,y\n" + "".join(f"v{i},{i}\n" for i in rows))
    (tmp_path / "good.csv").write_text("id,y\n" + "".join(f"u{i},{2 * i + 1}\n" for i in rows))

    def run(target):
        return subprocess.run(
            [sys.executable, "-m", "dtxfast", "vfl", "train", "--data-a", "a.csv", "--data-b", "b.csv", "--label", "y",
             "--bits", "1024", "--psi-bits", "1024", "--epochs", "2", "--predict-a", "a.csv", "--predict-b", "pb.csv",
             "--target", target, "--save-dir", "m", "--plot", "curve.png"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)

    p = run("bad.csv")
    assert p.returncode != 0 and p.stdout == ""
    assert p.stderr.splitlines() == ["dtx: error: bad.csv: no true value for ids ['u0', 'u1', 'u10', 'u11', 'u12']"]
    assert not (tmp_path / "m").exists() and not (tmp_path / "curve.png").exists()
    p = run("good.csv")
    assert p.returncode == 0, p.stderr
    assert {line.split("\t")[0] for line in p.stdout.splitlines()} >= {"rmse", "r2"}
    summary = p.stderr.splitlines()
    assert summary[0] == "PSI: 24 common rows (A 24, B 24)" and summary[1].startswith("trained 2 epochs")
    assert (tmp_path / "m" / "model_a.json").exists() and (tmp_path / "curve.png").exists()
