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
def test_demo_quick_runs_end_to_end():
    out = dtx("demo", "--quick", timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(ok)" in out.stdout
