"""The ``dtx`` command line: version, errors as one line, the bench harness and the demo."""

from __future__ import annotations

import subprocess
import sys

import pytest

import dtxfast


def dtx(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dtxfast", *args], capture_output=True, text=True, timeout=timeout)


def test_version():
    out = dtx("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"dtx {dtxfast.__version__}"


def test_unknown_bench_area_is_one_line_error():
    out = dtx("bench", "no-such-area")
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dtx: error: unknown benchmark area 'no-such-area'")
    assert "Traceback" not in out.stderr


def test_usage_error_has_no_traceback():
    out = dtx("demo", "--bits", "not-a-number")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr


def test_bad_demo_bits_is_one_line_error():
    out = dtx("demo", "--bits", "512")
    assert out.returncode == 2
    assert out.stderr.strip() == "dtx: error: --bits must be at least 1024"


@pytest.mark.slow
def test_demo_quick_runs_end_to_end(tmp_path):
    """Issue 12's acceptance: the demo's network leaves a ledger the other commands work on."""
    import json

    work = tmp_path / "demo"
    out = dtx("demo", "--quick", "--workdir", str(work), timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(ok)" in out.stdout and "stopped every node process" in out.stdout
    led = str(work / "ledger.db")
    ver = dtx("ledger", "verify", "-L", led)
    assert ver.returncode == 0, ver.stderr
    tasks = json.loads(dtx("task", "list", "-L", led, "--json").stdout)
    assert {(t["kind"], t["algorithm"]) for t in tasks} == {
        (k, a) for k in ("train", "predict") for a in ("linear", "logistic", "dnn")}
    assert all(t["status"] == "Finished" for t in tasks)
    pred = next(t["task_id"] for t in tasks if t["kind"] == "predict" and t["algorithm"] == "linear")
    res = dtx("task", "result", pred, "--key", str(work / "keys" / "requester.key"), "-L", led,
              "-o", str(tmp_path / "out.csv"))
    assert res.returncode == 0, res.stderr
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "id,prediction" and len(lines) > 10
    nodes = json.loads(dtx("nodes", "list", "-L", led, "--json").stdout)
    assert {"storage", "dataowner", "executor", "requester"} == {n["role"] for n in nodes}
    other = dtx("task", "result", pred, "--key", str(work / "keys" / "owner-a.key"), "-L", led,
                "-o", str(tmp_path / "stolen.csv"))
    assert other.returncode != 0 and "another requester" in other.stderr
    assert not (tmp_path / "stolen.csv").exists()
