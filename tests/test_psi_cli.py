"""``dtx psi``: the embedded demo and two processes over loopback write the aligned ids."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from dtxfast.cli import exit_code, main

from psi_helpers import rsa_key


def _csv(path, column, values):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([column, "other"])
        for v in values:
            w.writerow([v, "x"])
    return path


def _read(path):
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], [r[0] for r in rows[1:]]


@pytest.fixture()
def files(tmp_path):
    a = [f"user{i}" for i in range(0, 300)] + ["ünï", "ünï"]
    b = [f"user{i}" for i in range(150, 500)] + ["ünï"]
    return (_csv(tmp_path / "a.csv", "id", a), _csv(tmp_path / "b.csv", "uid", b),
            [x for x in dict.fromkeys(a) if x in set(b)])


@pytest.mark.parametrize("mode", ["rsa", "ecdh", "ot"])
def test_embedded_demo(tmp_path, files, mode):
    a, b, want = files
    key = tmp_path / "key.pem"
    key.write_bytes(rsa_key().to_pem())
    out = tmp_path / "out.csv"
    key_args = ["--key", str(key)] if mode == "rsa" else []  # ecdh and ot draw their own key; --key is refused
    code = main(["psi", "--ids", str(a), "--other", str(b), "--other-column", "uid", *key_args,
                 "--mode", mode, "--chunk", "64", "-o", str(out), "-q"])
    assert code == 0
    assert _read(out) == (["id"], want)


@pytest.mark.integration
def test_two_processes_over_loopback(tmp_path, files):
    a, b, want = files
    key = tmp_path / "key.pem"
    key.write_bytes(rsa_key().to_pem())
    out = tmp_path / "out.csv"
    cache = tmp_path / "cache"
    for _ in range(2):  # the second run finds the signer's tags in the cache directory
        code = main(["psi", "--ids", str(a), "--other", str(b), "--other-column", "uid", "--key", str(key),
                     "--transport", "process", "--cache-dir", str(cache), "-o", str(out), "-q"])
        assert code == 0
        assert _read(out) == (["id"], want)
    assert len(list(cache.glob("*.npy"))) == 1


@pytest.mark.integration
def test_separate_signer_and_requester_processes(tmp_path, files):
    a, b, want = files
    key = tmp_path / "key.pem"
    key.write_bytes(rsa_key().to_pem())
    signer = subprocess.Popen(
        [sys.executable, "-c", "import sys; from dtxfast.cli import main; sys.exit(main(sys.argv[1:]))",
         "psi", "--role", "signer", "--ids", str(b), "--column", "uid", "--key", str(key),
         "--listen", "127.0.0.1:0", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = signer.stdout.readline().split()  # type: ignore[union-attr]
        assert line and line[0] == "listening", signer.stderr.read()  # type: ignore[union-attr]
        out = tmp_path / "out.csv"
        code = main(["psi", "--role", "requester", "--ids", str(a), "--connect", line[1], "-o", str(out), "-q"])
        assert code == 0
        assert _read(out) == (["id"], want)
        assert signer.wait(timeout=30) == 0
    finally:
        if signer.poll() is None:
            signer.kill()
            signer.wait()


def test_user_errors_are_one_line(tmp_path, files, capsys):
    a, b, _ = files
    assert main(["psi", "--ids", str(a), "--column", "nope", "--other", str(b)]) == 2
    err = capsys.readouterr().err
    assert "no column 'nope'" in err and "Traceback" not in err
    assert main(["psi", "--ids", str(tmp_path / "missing.csv"), "--other", str(b)]) == 2
    assert main(["psi", "--ids", str(a)]) == 2  # demo without --other
    assert main(["psi", "--ids", str(a), "--other", str(b), "--mode", "dsa"]) == 2
    capsys.readouterr()
    assert main(["psi", "--ids", str(a), "--other", str(b), "--mode", "ot", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["dtx: error: --cache-dir keeps a signer's tags across runs; --mode ot has "
                                        "none (each run is a fresh OPRF)"]
    assert main(["psi", "--role", "requester", "--ids", str(a)]) == 2


@pytest.mark.integration
def test_a_signer_process_that_cannot_start_is_one_line(tmp_path, files, capsys):
    a, b, _ = files
    from dtxfast.errors import ProtocolError

    code = main(["psi", "--ids", str(a), "--other", str(b), "--other-column", "nope", "--transport", "process",
                 "--mode", "ecdh", "-q"])
    err = capsys.readouterr().err
    assert code == exit_code(ProtocolError)
    assert "the signer process did not start" in err and "no column 'nope'" in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.integration
def test_a_requester_of_another_mode_is_refused_at_the_handshake(tmp_path, files):
    """Two real processes: an RSA signer and a requester given ``--mode ecdh`` stop at the
    handshake, each with one error line; the signer computed no tag (its cache stays empty) and
    the requester wrote nothing (issue 15: the mismatch used to surface only after a full run)."""
    a, b, _ = files
    key = tmp_path / "key.pem"
    key.write_bytes(rsa_key().to_pem())
    cache, out = tmp_path / "cache", tmp_path / "out.csv"
    dtx = [sys.executable, "-m", "dtxfast", "psi"]
    signer = subprocess.Popen([*dtx, "--role", "signer", "--ids", str(b), "--column", "uid", "--key", str(key),
                               "--listen", "127.0.0.1:0", "--cache-dir", str(cache)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = signer.stdout.readline().split()  # type: ignore[union-attr]
        assert line and line[0] == "listening", signer.stderr.read()  # type: ignore[union-attr]
        req = subprocess.run([*dtx, "--role", "requester", "--ids", str(a), "--connect", line[1], "--mode", "ecdh",
                              "-o", str(out)], capture_output=True, text=True, timeout=60)
        signer_err = signer.communicate(timeout=30)[1]
    finally:
        if signer.poll() is None:
            signer.kill()
            signer.wait()
    from dtxfast.errors import ProtocolError

    assert req.returncode == exit_code(ProtocolError)
    assert req.stderr.strip().splitlines() == [
        "dtx: error: the signer runs rsa PSI, this requester wants ecdh; nothing was computed"]
    assert not out.exists() and req.stdout == ""
    assert signer.returncode == exit_code(ProtocolError)
    assert signer_err.strip().splitlines() == [
        "dtx: error: the requester refused the run: the signer runs rsa PSI, this requester wants ecdh; "
        "nothing was computed"]
    assert not cache.exists() or not list(cache.glob("*.npy"))  # no tag was computed


@pytest.mark.integration
def test_ot_mode_in_two_processes_and_against_another_mode(tmp_path, files):
    """``--mode ot`` over loopback between two real processes gives the plain intersection; an
    OT signer and an ECDH requester stop at the handshake with one line each."""
    a, b, want = files
    out = tmp_path / "out.csv"
    code = main(["psi", "--ids", str(a), "--other", str(b), "--other-column", "uid", "--mode", "ot",
                 "--transport", "process", "--chunk", "100", "-o", str(out), "-q"])
    assert code == 0
    assert _read(out) == (["id"], want)
    dtx = [sys.executable, "-m", "dtxfast", "psi"]
    signer = subprocess.Popen([*dtx, "--role", "signer", "--ids", str(b), "--column", "uid", "--mode", "ot",
                               "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = signer.stdout.readline().split()  # type: ignore[union-attr]
        assert line and line[0] == "listening", signer.stderr.read()  # type: ignore[union-attr]
        req = subprocess.run([*dtx, "--role", "requester", "--ids", str(a), "--connect", line[1], "--mode", "ecdh",
                              "-o", str(tmp_path / "x.csv")], capture_output=True, text=True, timeout=60)
        signer_err = signer.communicate(timeout=30)[1]
    finally:
        if signer.poll() is None:
            signer.kill()
            signer.wait()
    assert req.stderr.strip().splitlines() == [
        "dtx: error: the signer runs ot PSI, this requester wants ecdh; nothing was computed"]
    assert signer_err.strip().splitlines() == [
        "dtx: error: the requester refused the run: the signer runs ot PSI, this requester wants ecdh; "
        "nothing was computed"]
    assert not (tmp_path / "x.csv").exists()
