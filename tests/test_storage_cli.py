"""``dtx storage put|get|audit|odds`` end to end on a directory replica store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dtxfast.cli import exit_code, main
from dtxfast.errors import InvalidProof


@pytest.fixture
def keyfile(tmp_path: Path) -> str:
    path = tmp_path / "owner.key"
    assert main(["keys", "new", str(path)]) == 0
    return str(path)


def test_put_get_audit(tmp_path: Path, keyfile: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = os.urandom(50_000)
    src = tmp_path / "data.bin"
    src.write_bytes(data)
    store = tmp_path / "store"
    meta = tmp_path / "data.meta"
    args = ["storage", "put", str(src), "--key", keyfile, "--store", str(store), "--meta", str(meta),
            "--slice-size", "16384", "--replicas", "2", "--chunk-size", "1024"]
    assert main(args) == 0
    assert "4 slices × 2 replicas" in capsys.readouterr().out
    out = tmp_path / "back.bin"
    assert main(["storage", "get", str(meta), "--key", keyfile, "--store", str(store), "--out", str(out)]) == 0
    assert out.read_bytes() == data
    assert main(["storage", "audit", str(meta), "--store", str(store), "--k", "5"]) == 0
    capsys.readouterr()
    # damage one replica: the audit fails with the proof's exit code and names it
    victim = next(p for p in (store).rglob("2.1"))
    blob = bytearray(victim.read_bytes())
    blob[100] ^= 1
    victim.write_bytes(bytes(blob))
    assert main(["storage", "audit", str(meta), "--store", str(store), "--k", "17"]) == exit_code(InvalidProof)
    captured = capsys.readouterr()
    assert "1 of 8 replicas failed" in captured.err and "FAIL" in captured.out
    victim.unlink()
    assert main(["storage", "audit", str(meta), "--store", str(store)]) == exit_code(InvalidProof)
    # the file is still readable from the other replica of slice 2
    assert main(["storage", "get", str(meta), "--key", keyfile, "--store", str(store), "--out", str(out)]) == 0
    assert out.read_bytes() == data


def test_tampered_metadata_is_refused(tmp_path: Path, keyfile: str, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"hello world")
    meta = tmp_path / "a.meta"
    assert main(["storage", "put", str(src), "-K", keyfile, "-s", str(tmp_path / "s"), "--meta", str(meta)]) == 0
    raw = bytearray(meta.read_bytes())
    raw[-70] ^= 1  # inside the description / times, before the signature
    meta.write_bytes(bytes(raw))
    code = main(["storage", "audit", str(meta), "--store", str(tmp_path / "s")])
    assert code != 0
    assert "dtx: error:" in capsys.readouterr().err


def test_odds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["storage", "odds", "--lost", "0.1"]) == 0
    assert "99.03" in capsys.readouterr().out


def test_failed_get_leaves_an_existing_output_untouched(tmp_path: Path, keyfile: str) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(40_000))
    store, meta = tmp_path / "store", tmp_path / "data.meta"
    assert main(["storage", "put", str(src), "-K", keyfile, "-s", str(store), "--meta", str(meta),
                 "--slice-size", "16384", "--replicas", "1"]) == 0
    for replica in store.rglob("1.0"):
        replica.unlink()  # slice 1 has no replica left: the rebuild fails midway
    out = tmp_path / "precious.txt"
    out.write_bytes(b"keep me")
    assert main(["storage", "get", str(meta), "-K", keyfile, "-s", str(store), "-o", str(out)]) != 0
    assert out.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part")) == []
