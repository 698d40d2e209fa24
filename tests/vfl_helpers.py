"""Shared helpers of the VFL tests: cached 1024-bit key pairs and the bundled PaddleDTX files."""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import numpy as np

from dtxfast.crypto.paillier import generate_keypair

DATA = Path(__file__).parent / "data" / "paddledtx_vl"


@functools.cache
def keypairs(tag: str = "default"):
    """Two 1024-bit key pairs (feature party, label party), generated once per tag."""
    return generate_keypair(1024), generate_keypair(1024)


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [r for r in rows[1:] if r]


def paddledtx(name: str, label: str):
    """(train A, train B, y, predict A, predict B, true targets) of one PaddleDTX sample folder."""
    d = DATA / name
    _, a = _read(d / "train_dataA.csv")
    hb, b = _read(d / "train_dataB.csv")
    li = hb.index(label)
    ida = [r[0] for r in a]
    idb = [r[0] for r in b]
    assert ida == idb  # the sample files are already aligned
    XA = np.array([[float(v) for v in r[1:]] for r in a])
    XB = np.array([[float(v) for i, v in enumerate(r) if i not in (0, li)] for r in b])
    y = np.array([r[li] for r in b])
    _, pa = _read(d / "predict_dataA.csv")
    _, pb = _read(d / "predict_dataB.csv")
    _, tv = _read(d / "targetValues.csv")
    truth = {r[1]: r[2] for r in tv}
    PA = np.array([[float(v) for v in r[1:]] for r in pa])
    PB = np.array([[float(v) for v in r[1:]] for r in pb])
    yt = np.array([truth[r[0]] for r in pa])
    return XA, XB, y, PA, PB, yt
