"""The ``dtx`` command line: version, errors as one line, the bench harness and the demo."""

from __future__ import annotations

import json
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


def test_bench_paillier_quick_json():
    out = dtx("bench", "paillier", "--quick", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["area"] == "paillier" and result["bits"] == 2048
    assert result["cores"] >= 1
    groups = {r["group"] for r in result["rows"]}
    assert {"paillier.encrypt", "paillier.decrypt", "paillier.add", "paillier.scalar_mul", "paillier.dot"} <= groups
    impls = {r["impl"] for r in result["rows"]}
    assert {"dtxfast", "dtxfast-python", "floor-gmpy2"} <= impls
    for r in result["rows"]:
        assert r["unit"] == "us/elem" and r["value"] > 0


@pytest.mark.slow
def test_demo_quick_runs_end_to_end():
    out = dtx("demo", "--quick", timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(ok)" in out.stdout


def test_bench_table_ratios_across_sizes_for_per_element_costs():
    from rich.console import Console

    from dtxfast.cli._bench import _table

    rows = [
        {"group": "g.epoch", "impl": "dtxfast", "size": 1000, "unit": "us/elem", "value": 2.0},
        {"group": "g.epoch", "impl": "phe", "size": 10, "unit": "us/elem", "value": 50.0},
        {"group": "g.epoch", "impl": "numpy", "size": 1000, "unit": "us/elem", "value": 0.01},
        {"group": "g.total", "impl": "dtxfast", "size": 1000, "unit": "s", "value": 2.0},
        {"group": "g.total", "impl": "phe", "size": 10, "unit": "s", "value": 50.0},
    ]
    console = Console(width=200, record=True)
    console.print(_table("t", rows))
    text = console.export_text()
    phe_epoch, numpy_epoch, phe_total = (
        next(line for line in text.splitlines() if group in line and impl in line)
        for group, impl in (("g.epoch", "phe"), ("g.epoch", "numpy"), ("g.total", "phe")))
    assert "25.00×*" in phe_epoch  # per-element: compared with dtxfast at the nearest size
    assert "0.005×" in numpy_epoch  # small ratios keep their digits
    assert "×" not in phe_total  # a total time is not comparable across sizes
