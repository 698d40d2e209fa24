"""The benchmark rows are fair by construction: every area's ``--quick`` run is checked.

Each area of ``dtx bench`` runs its ``--quick`` path in a smoke run (``DTX_BENCH_SMOKE=1``: every
group and every row, at the first quick size, one round; the numbers mean nothing) and its JSON is
checked: every row says its ``threads``; no two rows are the same (group, size, impl, threads);
every row that is not dtxfast's own (a peer, a floor, a naive baseline, the pure-Python twin) has
its dtxfast reference row (``ref``, default ``dtxfast``) in the same group, at the same size, on the
same number of threads, so its same-thread ratio exists; a sampled row ran fewer elements than its
size. Areas are discovered from the installed suite, so a new area is checked as soon as it exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from dtxfast.cli._bench import ratios, rows_from_pytest_benchmark
from dtxfast.errors import ParameterError

SUITE = Path(str(resources.files("dtxfast._benchsuite")))
AREAS = sorted(p.stem.removeprefix("bench_").replace("_", "-") for p in SUITE.glob("bench_*.py"))  # storage-net
THREAD_FREE = ("bytes/sample", "MiB/party")


def _is_dtxfast(impl: str) -> bool:
    return (impl == "dtxfast" or impl.startswith("dtxfast-")) and impl != "dtxfast-python"


def convention_errors(result: dict) -> list[str]:
    """What is wrong with the rows of one ``dtx bench AREA --json`` result (empty: nothing)."""
    rows = result["rows"]
    errors = []
    keys = {(r["group"], r["size"], r["impl"], r.get("threads")) for r in rows}
    if len(keys) != len(rows):
        errors.append("two rows share group, size, impl and threads")
    for r in rows:
        name = f"{r['group']} {r['impl']} size {r['size']}"
        if not isinstance(r.get("threads"), int) or r["threads"] < 1:
            errors.append(f"{name}: no thread count")
            continue
        if "sample" in r and not 0 < r["sample"] < r["size"]:
            errors.append(f"{name}: sample {r['sample']} is not a part of size {r['size']}")
        if _is_dtxfast(r["impl"]) or r["unit"] in THREAD_FREE:
            continue
        ref = r.get("ref", "dtxfast")
        if (r["group"], r["size"], ref, r["threads"]) not in keys:
            errors.append(f"{name}: no {ref} row on {r['threads']} thread(s) at the same size")
    return errors


@pytest.mark.slow
@pytest.mark.parametrize("area", AREAS)
def test_quick_rows_have_a_same_thread_dtxfast_row(area: str) -> None:
    env = {**os.environ, "DTX_BENCH_SMOKE": "1"}
    out = subprocess.run([sys.executable, "-m", "dtxfast", "bench", area, "--quick", "--json"],
                         capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["area"] == area and result["cores"] >= 1 and result["rows"]
    assert convention_errors(result) == []
    # the JSON's ratios are those of its rows, and every compared row has its same-thread ratio
    assert result["ratios"] == ratios(result["rows"])
    compared = [q for q in result["ratios"] if not _is_dtxfast(q["impl"])]
    assert all(q["same_threads"] is not None for q in compared)  # (an area may hold dtxfast rows only)
    if area == "paillier":
        groups = {r["group"] for r in result["rows"]}
        assert {"paillier.encrypt", "paillier.decrypt", "paillier.add", "paillier.scalar_mul",
                "paillier.dot"} <= groups
        impls = {r["impl"] for r in result["rows"]}
        assert {"dtxfast", "dtxfast-standard", "dtxfast-python", "floor-gmpy2", "naive-gmpy2"} <= impls
        phe = next(r for r in result["rows"] if r["group"] == "paillier.encrypt" and r["impl"] == "phe")
        assert phe["threads"] == 1 and phe["ref"] == "dtxfast-standard"  # same work: full-length r^n


def _row(impl: str, threads: int, value: float, **kw: object) -> dict:
    return {"group": "g", "impl": impl, "size": 100, "unit": "us/elem", "value": value, "threads": threads, **kw}


def test_ratios_are_taken_between_rows_of_equal_threads() -> None:
    rows = [_row("dtxfast", 2, 1.0), _row("dtxfast", 1, 2.0), _row("phe", 1, 100.0),
            _row("dtxfast-standard", 1, 50.0), _row("floor-gmpy2", 1, 40.0, ref="dtxfast-standard"),
            _row("heu", 2, 10.0)]
    got = {(q["impl"], q["threads"]): (q["ref"], q["same_threads"], q["all_cores"]) for q in ratios(rows)}
    assert got[("phe", 1)] == ("dtxfast", 50.0, 100.0)  # against dtxfast on 1 thread, and on 2
    assert got[("floor-gmpy2", 1)] == ("dtxfast-standard", 0.8, 0.8)  # its own ref, which has 1 thread only
    assert got[("heu", 2)] == ("dtxfast", 10.0, 10.0)
    assert ("dtxfast", 1) not in got and ("dtxfast", 2) not in got  # references get no ratio
    assert convention_errors({"rows": rows}) == []


def test_higher_is_better_units_invert_the_ratio() -> None:
    rows = [_row("dtxfast", 1, 300.0, unit="MiB/s"), _row("floor-sha256", 1, 600.0, unit="MiB/s")]
    assert ratios(rows)[0]["same_threads"] == 0.5  # the floor is twice as fast


def test_a_peer_without_a_same_thread_dtxfast_row_is_reported() -> None:
    rows = [_row("dtxfast", 2, 1.0), _row("phe", 1, 100.0), _row("x", 1, 1.0, sample=100)]
    errors = convention_errors({"rows": rows})
    assert any("phe" in e and "1 thread" in e for e in errors)
    assert any("sample 100" in e for e in errors)
    assert ratios(rows)[0]["same_threads"] is None and ratios(rows)[0]["all_cores"] == 100.0


def test_colliding_rows_are_refused() -> None:
    def bench(impl: str, threads: int) -> dict:
        return {"name": "t", "group": "ledger.verify", "stats": {"median": 1.0},
                "extra_info": {"impl": impl, "size": 10, "unit": "s", "per": 1, "threads": threads}}

    rows = rows_from_pytest_benchmark({"benchmarks": [bench("dtxfast", 1), bench("dtxfast", 2)]})
    assert [r["threads"] for r in rows] == [1, 2]
    with pytest.raises(ParameterError, match="two benchmark rows"):
        rows_from_pytest_benchmark({"benchmarks": [bench("dtxfast", 2), bench("dtxfast", 2)]})


def test_openssl_floor_computes_the_blind_signature() -> None:
    from dtxfast._benchsuite import _openssl_floor
    from dtxfast.crypto.blind_rsa import BlindRSASigner, IdBatch

    if not _openssl_floor.available():
        pytest.skip("libcrypto not found")
    key = BlindRSASigner.generate(1024)
    blinded = key.public_key().blind(IdBatch.from_strings([str(i) for i in range(20)])).blinded
    rows = [bytes(r) for r in blinded]
    signed = [bytes(r) for r in key.sign_blinded(blinded)]
    assert _openssl_floor.rsa_private_raw(key.to_der(), rows, 2) == signed
    assert _openssl_floor.rsa_private_raw(key.to_der(), rows, 1) == signed


def test_table_shows_same_thread_and_all_core_ratios_and_keeps_brackets() -> None:
    from rich.console import Console

    from dtxfast.cli._bench import _table

    rows = [_row("dtxfast", 2, 1.0), _row("dtxfast", 1, 2.0), _row("phe", 1, 100.0, note="[2 of 9 rows]")]
    console = Console(width=200, record=True)
    console.print(_table("t", rows))
    line = next(x for x in console.export_text().splitlines() if "phe" in x)
    assert "50.00×" in line and "100.00×" in line and "[2 of 9 rows]" in line


def test_spu_cheetah_row_is_omitted_with_its_reason_without_spu() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DTX_BENCH_SPU_PYTHON"}
    env["DTX_BENCH_SMOKE"] = "1"
    out = subprocess.run([sys.executable, "-m", "dtxfast", "bench", "vfl", "--quick", "--json", "-k",
                          "cheetah or (epoch and numpy)"], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    impls = {r["impl"] for r in json.loads(out.stdout)["rows"]}
    assert "numpy" in impls and "spu-cheetah" not in impls
    assert "test_epoch_spu_cheetah" in out.stderr and "DTX_BENCH_SPU_PYTHON is not set" in out.stderr


@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_spu_vfl_script_trains_the_epoch_it_times(model: str) -> None:
    """Under SPU's Python (when given), the peer script's epoch gives numpy's weights (it checks them itself)."""
    python = os.environ.get("DTX_BENCH_SPU_PYTHON", "").strip()
    if not python:
        pytest.skip("DTX_BENCH_SPU_PYTHON is not set")
    args = {"model": model, "rows": 96, "d_a": 3, "d_b": 2, "batch": 32, "alpha": 0.5, "rounds": 2}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    from dtxfast.cli._bench import _suite_dir  # the suite dtx bench runs (DTX_BENCH_DIR or the installed one)

    proc = subprocess.run([python, str(_suite_dir() / "_spu_vfl.py"), json.dumps(args)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out["times"]) == 2 and all(t > 0 for t in out["times"]) and out["rows"] == 96
    assert out["max_abs_error"] < 0.05
