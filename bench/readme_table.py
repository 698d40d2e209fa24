"""The README's benchmark table, generated from stored ``dtx bench AREA --json`` results.

``python bench/readme_table.py [DIR]`` reads ``DIR/<area>.json`` (default ``bench/results``; a
focused ``dtx bench AREA -k ... --json`` run is stored as ``<area>.<name>.json`` and its lines name
it as their area) and prints the markdown table; ``tests/test_readme_bench.py`` checks that the README holds exactly
this table, so every number and ratio in it comes from one ``dtx bench AREA --json`` run. Each
line is one row of a run beside its dtxfast reference (``ref``, default ``dtxfast``): on the same
number of threads (the ratio to quote) and on all cores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["LINES", "table"]

#: (label, area, group, impl, threads); the size is the group's largest in the run
LINES: list[tuple[str, str, str, str, int | None]] = [
    ("Paillier encrypt (full-length r^n)", "paillier", "paillier.encrypt", "phe", 1),
    ("Paillier encrypt", "paillier", "paillier.encrypt", "heu", None),
    ("Paillier encrypt (full-length r^n)", "paillier", "paillier.encrypt", "floor-gmpy2", 1),
    ("Paillier encrypt, precomputed pool", "paillier", "paillier.encrypt_online", "floor-gmpy2", 1),
    ("Paillier decrypt", "paillier", "paillier.decrypt", "phe", 1),
    ("Paillier decrypt", "paillier", "paillier.decrypt", "floor-gmpy2", 1),
    ("Paillier decrypt", "paillier", "paillier.decrypt", "heu", None),
    ("Paillier add", "paillier", "paillier.add", "floor-gmpy2", 1),
    ("Paillier scalar multiply", "paillier", "paillier.scalar_mul", "floor-gmpy2", 1),
    ("`X @ E(v)` (size: entries of X)", "paillier", "paillier.dot", "naive-gmpy2", 1),
    ("`X @ E(v)` (size: entries of X)", "paillier", "paillier.dot", "phe", 1),
    ("python-paillier's per-number loop, import changed (size: numbers)", "paillier", "paillier.compat", "phe", 1),
    ("the same loop with `encrypt_many`/`decrypt_many` (size: numbers)", "paillier", "paillier.compat.batch", "phe", 1),
    ("PSI signer, RSA-2048", "psi", "psi.signer", "floor-openssl", 1),
    ("PSI signer, RSA-2048", "psi", "psi.signer", "floor-openssl", None),
    ("PSI signer (RSA; OpenMined: P-256)", "psi", "psi.signer", "openmined-psi", 1),
    ("PSI end to end (size: ids per side)", "psi", "psi.total", "openmined-psi", 1),
    ("PSI end to end, OT mode (KKRT16) against SecretFlow SPU RR22", "psi.ot", "psi.total", "spu-rr22", None),
    ("PSI end to end, OT mode (KKRT16) against SecretFlow SPU KKRT", "psi.ot", "psi.total", "spu-kkrt", None),
    ("VFL linear regression epoch, 20+20 features", "vfl", "vfl.epoch", "phe", 1),
    ("VFL epoch, plaintext numpy (no encryption)", "vfl", "vfl.epoch", "numpy", 1),
    ("VFL epoch, secret-shared mode (the default) against fast mode", "vfl", "vfl.epoch", "dtxfast-ss", 1),
    ("VFL epoch, SecretFlow SPU CHEETAH (size: rows)", "vfl", "vfl.epoch", "spu-cheetah", None),
    ("VFL logistic regression epoch, secret-shared mode (clip sigmoid) against fast mode", "vfl", "vfl.epoch.logistic", "dtxfast-ss", None),
    ("VFL logistic regression epoch, SecretFlow SPU CHEETAH", "vfl", "vfl.epoch.logistic", "spu-cheetah", None),
    ("MPC share matmul n×n", "mpc", "mpc.matmul", "floor-blas-f64", 1),
    ("MPC share matmul n×n", "mpc", "mpc.matmul", "floor-blas-f64", None),
    ("MPC share matmul n×n", "mpc", "mpc.matmul", "naive-numpy", 1),
    ("MPC share matmul n×n, SecretFlow SPU ABY3", "mpc", "mpc.matmul", "spu", None),
    ("MPC share matmul n×n, dtxfast's float64 BLAS path (CPUs without IFMA)", "mpc", "mpc.matmul", "dtxfast-blas", None),
    ("MPC ReLU on shares (size: elements)", "mpc", "mpc.relu", "spu", None),
    ("Merkle tree build (size: MiB)", "storage", "merkle.build", "floor-sha256", 1),
    ("Merkle tree build (size: MiB)", "storage", "merkle.build", "floor-sha256", None),
    ("Merkle tree build (size: MiB)", "storage", "merkle.build", "pymerkle", 1),
    ("Merkle batch verify (size: chunk bytes)", "storage", "merkle.verify", "pymerkle", 1),
    ("Slice + replicate (r=3) + encrypt + roots (size: MiB)", "storage", "storage.encrypt", "floor-aead-openssl", 1),
    ("Ledger append (sign, verify, contract, SQLite)", "ledger", "ledger.append", "floor-sqlite-sign-verify", 1),
    ("Ledger verify_chain", "ledger", "ledger.verify", "floor-verify", 1),
    ("Ledger verify_chain", "ledger", "ledger.verify", "floor-verify", None),
]


def _fmt(v: float) -> str:
    if v >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _x(r: float | None) -> str:
    return "" if r is None else (f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×")


def table(results: dict[str, dict[str, Any]]) -> str:
    """The markdown table for ``results`` (area -> the JSON of ``dtx bench AREA --json``)."""
    out = ["| what | size | row (threads) | dtxfast, same threads | × same threads | dtxfast, all cores | × all cores |",
           "|---|---:|---|---:|---:|---:|---:|"]
    for label, area, group, impl, threads in LINES:
        res = results.get(area)
        if res is None:
            continue
        cores = res["cores"]
        want = cores if threads is None else threads
        rows = [r for r in res["rows"] if r["group"] == group and r["impl"] == impl and r["threads"] == want]
        if not rows:
            continue
        row = max(rows, key=lambda r: r["size"])
        q = next(q for q in res["ratios"] if (q["group"], q["size"], q["impl"], q["threads"])
                 == (group, row["size"], impl, want))
        index = {(r["group"], r["size"], r["impl"], r["threads"]): r for r in res["rows"]}
        same = index.get((group, row["size"], q["ref"], want))
        wide = index.get((group, row["size"], q["ref"], q["all_cores_threads"]))
        unit = row["unit"]
        name = impl + (f", sample {row['sample']}" if row.get("sample") else "")
        ref = "" if q["ref"] == "dtxfast" else f" ({q['ref']})"
        out.append(
            f"| {label} | {row['size']:,} | {name} ({want}): {_fmt(row['value'])} {unit} "
            f"| {_fmt(same['value']) if same else '–'}{ref} | {_x(q['same_threads'])} "
            f"| {_fmt(wide['value']) + ' (' + str(wide['threads']) + ')' if wide else '–'} | {_x(q['all_cores'])} |")
    return "\n".join(out)


def _load(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results"
    print(table(_load(folder)))
