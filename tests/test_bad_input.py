"""Every ``dtx`` command, tried with bad input on purpose (issue 15).

The commands are enumerated from the typer app itself: a command without a row in ``CASES`` fails
:func:`test_every_command_has_rows`, so a new command must come with its bad inputs. Each case
asserts what a user must see: a non-zero exit, no traceback, exactly one line on stderr, and not a
single byte changed under the test's folder (read-only commands write nothing; commands that write
leave nothing half-written).

Kinds of bad input: missing, empty, directory instead of file, non-UTF-8, wrong type, out of range,
NaN/inf, wrong key, tampered, and wrong role/choice. ("Unreadable" files are not tried: the suite
runs as root on CI, where mode 000 does not stop a read.)

Most cases run in-process through :func:`dtxfast.cli.main` (fast); the node commands that would
serve forever on success, and three others (to check that the in-process view matches a real
one), run as real ``python -m dtxfast`` processes. Waits are bounded by real options (``dtx psi
--connect-timeout``), not by hidden test hooks.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import typer

from dtxfast.cli import app, main

# {d} is the world folder below; every case gets a fresh copy of it
K = "{d}/owner.key"
L = "{d}/ledger.db"
A, B = "{d}/a.csv", "{d}/b.csv"
NONUTF8, EMPTY, DIR, MISSING, BIN = "{d}/nonutf8.csv", "{d}/empty.csv", "{d}/dir", "{d}/missing", "{d}/data.bin"
META, STORE = "{d}/good.meta", "{d}/store"
VFL = ["--bits", "1024", "--psi-bits", "1024", "--epochs", "2"]
FID = "0" * 32  # a well-formed id that is on no ledger

# command -> [(kind, argv after the command words)]; kinds are for the reader and the test ids
CASES: dict[str, list[tuple[str, list[str]]]] = {
    "bench": [
        ("unknown area", ["no-such-area"]),
        ("not a -k expression", ["paillier", "--quick", "-k", "((("]),
    ],
    "demo": [
        ("out of range", ["--bits", "512"]),
        ("wrong type", ["--bits", "many"]),
    ],
    "dataowner start": [
        ("missing key", ["--key", MISSING, "-L", L, "-d", "{d}/dd"]),
        ("key is a directory", ["--key", DIR, "-L", L, "-d", "{d}/dd"]),
        ("key is not a key", ["--key", BIN, "-L", L, "-d", "{d}/dd"]),
        ("wrong choice", ["--key", K, "-L", L, "-d", "{d}/dd", "--approve", "sometimes"]),
        ("nan", ["--key", K, "-L", L, "-d", "{d}/dd", "--poll", "nan"]),
        ("out of range", ["--key", K, "-L", L, "-d", "{d}/dd", "--heartbeat", "-1"]),
        ("missing ledger", ["--key", K, "-L", "{d}/nodir/l.db", "-d", "{d}/dd"]),
        ("missing config", ["--config", "{d}/missing.toml"]),
        ("non-UTF-8 config", ["--config", NONUTF8]),
        ("config is a directory", ["--config", DIR]),
    ],
    "file applications": [
        ("missing ledger", ["-L", "{d}/missing.db"]),
        ("ledger is not a ledger", ["-L", BIN]),
        ("wrong choice", ["-L", L, "--status", "maybe"]),
        ("missing key", ["-L", L, "--key", MISSING]),
    ],
    "file approve": [
        ("unknown id", [FID, "--key", K, "-L", L]),
        ("malformed id", ["nope", "--key", K, "-L", L]),
        ("nan", [FID, "--key", K, "-L", L, "--days", "nan"]),
        ("out of range", [FID, "--key", K, "-L", L, "--days", "-1"]),
        ("missing ledger", [FID, "--key", K, "-L", "{d}/missing.db"]),
    ],
    "file download": [
        ("unknown id", [FID, "--key", K, "-L", L, "-o", "{d}/out.bin"]),
        ("malformed id", ["nope", "--key", K, "-L", L, "-o", "{d}/out.bin"]),
        ("missing key", [FID, "--key", MISSING, "-L", L, "-o", "{d}/out.bin"]),
        ("out is a directory", [FID, "--key", K, "-L", L, "-o", DIR]),
        ("out is the ledger", [FID, "--key", K, "-L", L, "-o", L]),
        ("nan", [FID, "--key", K, "-L", L, "-o", "{d}/out.bin", "--liveness", "nan"]),
    ],
    "file extend": [
        ("unknown id", [FID, "--key", K, "-L", L, "--days", "3"]),
        ("nan", [FID, "--key", K, "-L", L, "--days", "nan"]),
        ("inf", [FID, "--key", K, "-L", L, "--days", "inf"]),
        ("out of range", [FID, "--key", K, "-L", L, "--days", "-5"]),
        ("ledger went back", [FID, "--key", "{d}/other.key", "-L", L, "--days", "3"]),
    ],
    "file list": [
        ("missing ledger", ["-L", "{d}/missing.db"]),
        ("malformed node id", ["-L", L, "--owner", "zz"]),
        ("ledger is a directory", ["-L", DIR]),
        ("ledger is empty", ["-L", EMPTY]),
    ],
    "file reject": [
        ("unknown id", [FID, "--key", K, "-L", L, "--reason", "no"]),
        ("empty reason", [FID, "--key", K, "-L", L, "--reason", ""]),
    ],
    "file revoke": [
        ("unknown id", [FID, "--key", K, "-L", L, "--reason", "no"]),
        ("missing key", [FID, "--key", MISSING, "-L", L, "--reason", "no"]),
    ],
    "file show": [
        ("unknown id", [FID, "-L", L]),
        ("malformed id", ["nope", "-L", L]),
    ],
    "file upload": [
        ("missing file", [MISSING, "--key", K, "-L", L]),
        ("directory instead of file", [DIR, "--key", K, "-L", L]),
        ("missing key", [BIN, "--key", MISSING, "-L", L]),
        ("key is not a key", [BIN, "--key", A, "-L", L]),
        ("nan", [BIN, "--key", K, "-L", L, "--expire-days", "nan"]),
        ("out of range", [BIN, "--key", K, "-L", L, "--replicas", "0"]),
        ("out of range", [BIN, "--key", K, "-L", L, "--slice-size", "0"]),
        ("no storage nodes", [BIN, "--key", K, "-L", L]),
    ],
    "keys new": [
        ("exists", [K]),
        ("missing folder", ["{d}/nodir/k.key"]),
        ("directory", [DIR]),
        ("empty path", [""]),
    ],
    "ledger info": [
        ("missing", ["-L", "{d}/missing.db"]),
        ("not a ledger", ["-L", BIN]),
        ("empty", ["-L", EMPTY]),
        ("directory", ["-L", DIR]),
    ],
    "ledger init": [
        ("missing folder", ["-L", "{d}/nodir/l.db"]),
        ("exists", ["-L", L]),
        ("directory", ["-L", DIR]),
    ],
    "ledger show": [
        ("out of range", ["-L", L, "--last", "-3"]),
        ("out of range", ["-L", L, "--height", "99"]),
        ("out of range", ["-L", L, "--height", "-1"]),
        ("beyond 64 bits", ["-L", L, "--height", "99999999999999999999"]),
        ("missing", ["-L", "{d}/missing.db"]),
    ],
    "ledger verify": [
        ("out of range", ["-L", L, "--workers", "-1"]),
        ("out of range", ["-L", L, "--workers", "99999999999"]),
        ("missing", ["-L", "{d}/missing.db"]),
        ("not a ledger", ["-L", NONUTF8]),
        ("tampered", ["-L", "{d}/tampered.db"]),
    ],
    "monitor": [
        ("missing key", ["--key", MISSING, "-L", L, "--rounds", "1"]),
        ("out of range", ["--key", K, "-L", L, "--interval", "-1", "--rounds", "1"]),
        ("nan", ["--key", K, "-L", L, "--interval", "nan", "--rounds", "1"]),
        ("out of range", ["--key", K, "-L", L, "--k", "0", "--rounds", "1"]),
        ("out of range", ["--key", K, "-L", L, "--rounds", "-1"]),
    ],
    "mpc dnn": [
        ("missing", [MISSING]),
        ("file instead of folder", [BIN]),
        ("empty folder", [DIR]),
        ("nan feature", ["{d}/dnn_nan"]),
        ("header-only file", ["{d}/dnn_empty"]),
    ],
    "nodes list": [
        ("wrong choice", ["-L", L, "--role", "bogus"]),
        ("missing", ["-L", "{d}/missing.db"]),
    ],
    "psi": [
        ("missing", ["--ids", MISSING, "--other", "{d}/ids.csv"]),
        ("empty", ["--ids", EMPTY, "--other", "{d}/ids.csv"]),
        ("directory", ["--ids", DIR, "--other", "{d}/ids.csv"]),
        ("non-UTF-8", ["--ids", NONUTF8, "--other", "{d}/ids.csv"]),
        ("missing column", ["--ids", "{d}/ids.csv", "--other", "{d}/ids.csv", "--column", "nope"]),
        ("wrong choice", ["--ids", "{d}/ids.csv", "--other", "{d}/ids.csv", "--role", "bogus"]),
        ("wrong choice", ["--ids", "{d}/ids.csv", "--other", "{d}/ids.csv", "--mode", "bogus"]),
        ("out of range", ["--ids", "{d}/ids.csv", "--other", "{d}/ids.csv", "--chunk", "0"]),
        ("out of range", ["--ids", "{d}/ids.csv", "--other", "{d}/ids.csv", "--bits", "100"]),
        ("cache dir is a file", ["--ids", "{d}/ids.csv", "--other", "{d}/ids.csv", "--cache-dir", BIN,
                                 "--bits", "1024"]),
        ("out is a directory", ["--ids", "{d}/ids.csv", "--other", "{d}/ids.csv", "--out", DIR, "--bits", "1024"]),
        ("out is the input", ["--ids", "{d}/ids.csv", "--other", B, "--out", "{d}/ids.csv", "--bits", "1024"]),
        ("key is not a key", ["--ids", "{d}/ids.csv", "--other", "{d}/ids.csv", "--key", BIN]),
        ("nothing listening", ["--ids", "{d}/ids.csv", "--role", "requester", "--connect", "127.0.0.1:1",
                               "--connect-timeout", "0.5"]),
        ("nan", ["--ids", "{d}/ids.csv", "--role", "requester", "--connect", "127.0.0.1:1",
                 "--connect-timeout", "nan"]),
        ("out of range", ["--ids", "{d}/ids.csv", "--role", "requester", "--connect", "127.0.0.1:1",
                          "--connect-timeout", "-1"]),
        ("malformed address", ["--ids", "{d}/ids.csv", "--role", "requester", "--connect", "nowhere"]),
        ("out of range", ["--ids", "{d}/ids.csv", "--role", "signer", "--listen", "127.0.0.1:99999"]),
        ("wrong mode against signer", ["--ids", "{d}/ids.csv", "--other", "{d}/ids.csv", "--mode", "ecdh",
                                       "--key", "{d}/rsa.pem"]),
        ("option of another role", ["--ids", "{d}/ids.csv", "--role", "signer", "--other", "{d}/ids.csv"]),
        ("option of another role", ["--ids", "{d}/ids.csv", "--other", "{d}/ids.csv", "--connect", "127.0.0.1:1"]),
        ("option of another role", ["--ids", "{d}/ids.csv", "--role", "requester", "--connect", "127.0.0.1:1",
                                    "--key", "{d}/rsa.pem"]),
    ],
    "storage audit": [
        ("missing", [MISSING, "-s", STORE]),
        ("empty", [EMPTY, "-s", STORE]),
        ("directory", [DIR, "-s", STORE]),
        ("tampered", ["{d}/tampered.meta", "-s", STORE]),
        ("store missing", [META, "-s", "{d}/nostore"]),
        ("out of range", [META, "-s", STORE, "--k", "0"]),
        ("out of range", [META, "-s", STORE, "--k", "-3"]),
    ],
    "storage demo": [
        ("out of range", ["--nodes", "2"]),
        ("nan", ["--size-mib", "nan"]),
        ("out of range", ["--size-mib", "-1"]),
        ("out of range", ["--interval", "0"]),
        ("keep is a file", ["--keep", BIN]),
    ],
    "storage get": [
        ("missing", [MISSING, "--key", K, "-s", STORE, "-o", "{d}/out.bin"]),
        ("tampered", ["{d}/tampered.meta", "--key", K, "-s", STORE, "-o", "{d}/out.bin"]),
        ("wrong key", [META, "--key", "{d}/other.key", "-s", STORE, "-o", "{d}/out.bin"]),
        ("out is a directory", [META, "--key", K, "-s", STORE, "-o", DIR]),
        ("out in a missing folder", [META, "--key", K, "-s", STORE, "-o", "{d}/nodir/out.bin"]),
        ("out is the metadata", [META, "--key", K, "-s", STORE, "-o", META]),
        ("store missing", [META, "--key", K, "-s", "{d}/nostore", "-o", "{d}/out.bin"]),
    ],
    "storage odds": [
        ("out of range", ["--k", "-3"]),
        ("out of range", ["--k", "0"]),
        ("out of range", ["--lost", "1.5"]),
        ("out of range", ["--lost", "-0.1"]),
        ("nan", ["--lost", "nan"]),
        ("out of range", ["--leaves", "-1"]),
    ],
    "storage put": [
        ("missing", [MISSING, "--key", K, "-s", STORE]),
        ("directory", [DIR, "--key", K, "-s", STORE]),
        ("store is a file", [BIN, "--key", K, "-s", A]),
        ("nan", [BIN, "--key", K, "-s", STORE, "--ttl-days", "nan"]),
        ("inf", [BIN, "--key", K, "-s", STORE, "--ttl-days", "inf"]),
        ("out of range", [BIN, "--key", K, "-s", STORE, "--replicas", "0"]),
        ("out of range", [BIN, "--key", K, "-s", STORE, "--slice-size", "0"]),
        ("out of range", [BIN, "--key", K, "-s", STORE, "--chunk-size", "0"]),
        ("missing key", [BIN, "--key", MISSING, "-s", STORE]),
        ("key is a directory", [BIN, "--key", DIR, "-s", STORE]),
        ("key is not a key", [BIN, "--key", A, "-s", STORE]),
        ("meta in a missing folder", [BIN, "--key", K, "-s", STORE, "--meta", "{d}/nodir/x.meta"]),
        ("meta is the input", [BIN, "--key", K, "-s", STORE, "--meta", BIN]),
        ("meta is the key", [BIN, "--key", K, "-s", STORE, "--meta", K]),
    ],
    "storage start": [
        ("missing key", ["--key", MISSING, "-L", L, "-d", "{d}/node"]),
        ("out of range", ["--key", K, "-L", L, "-d", "{d}/node", "--listen", "127.0.0.1:99999"]),
        ("malformed address", ["--key", K, "-L", L, "-d", "{d}/node", "--listen", "nowhere"]),
        ("nan", ["--key", K, "-L", L, "-d", "{d}/node", "--heartbeat", "nan"]),
        ("data dir is a file", ["--key", K, "-L", L, "-d", BIN]),
        ("non-UTF-8 config", ["--config", NONUTF8]),
    ],
    "task publish": [
        ("missing key", ["--key", MISSING, "-L", L, "--algo", "linear", "--kind", "train", "--files", "f1,f2",
                         "--executors", "e1,e2", "--label", "y", "--id-column", "id"]),
        ("wrong choice", ["--key", K, "-L", L, "--algo", "bogus", "--kind", "train", "--files", "f1,f2",
                          "--executors", "e1,e2", "--label", "y", "--id-column", "id"]),
        ("empty item", ["--key", K, "-L", L, "--algo", "linear", "--kind", "train", "--files", "f1,",
                        "--executors", "e1,e2", "--label", "y", "--id-column", "id"]),
        ("nan", ["--key", K, "-L", L, "--algo", "linear", "--kind", "train", "--files", "f1,f2",
                 "--executors", "e1,e2", "--label", "y", "--id-column", "id", "-p", "alpha=nan"]),
        ("unknown files", ["--key", K, "-L", L, "--algo", "linear", "--kind", "train", "--files", f"{FID},{FID}",
                           "--executors", "e1,e2", "--label", "y", "--id-column", "id"]),
    ],
    "task start": [
        ("unknown id", [FID, "--key", K, "-L", L]),
        ("ledger went back", [FID, "--key", "{d}/other.key", "-L", L]),
        ("missing ledger", [FID, "--key", K, "-L", "{d}/missing.db"]),
    ],
    "task list": [
        ("wrong choice", ["-L", L, "--status", "maybe"]),
        ("malformed node id", ["-L", L, "--requester", "zz"]),
        ("ledger is empty", ["-L", EMPTY]),
    ],
    "task show": [
        ("unknown id", [FID, "-L", L]),
        ("key is not a key", [FID, "-L", L, "--key", A]),
    ],
    "task result": [
        ("unknown id", [FID, "--key", K, "-L", L, "-o", "{d}/out.csv"]),
        ("out is a directory", [FID, "--key", K, "-L", L, "-o", DIR]),
        ("out is the key", [FID, "--key", K, "-L", L, "-o", K]),
    ],
    "executor start": [
        ("missing key", ["--key", MISSING, "-L", L, "-d", "{d}/ex"]),
        ("nan", ["--key", K, "-L", L, "-d", "{d}/ex", "--poll", "nan"]),
        ("out of range", ["--key", K, "-L", L, "-d", "{d}/ex", "--max-tasks", "0"]),
        ("out of range", ["--key", K, "-L", L, "-d", "{d}/ex", "--listen", "127.0.0.1:99999"]),
        ("non-UTF-8 config", ["--config", NONUTF8]),
    ],
    "vfl evaluate": [
        ("missing", ["--data-a", MISSING, "--data-b", B, "--label", "y", *VFL]),
        ("non-UTF-8", ["--data-a", NONUTF8, "--data-b", B, "--label", "y", *VFL]),
        ("missing label", ["--data-a", A, "--data-b", B, "--label", "nope", *VFL]),
        ("wrong choice", ["--data-a", A, "--data-b", B, "--label", "y", "--method", "bogus", *VFL]),
        ("out of range", ["--data-a", A, "--data-b", B, "--label", "y", "--test-size", "1.5", *VFL]),
        ("out of range", ["--data-a", A, "--data-b", B, "--label", "y", "--method", "kfold", "--k", "1", *VFL]),
        ("nan", ["--data-a", A, "--data-b", B, "--label", "y", "--alpha", "nan", *VFL]),
        ("option of another model", ["--data-a", A, "--data-b", B, "--label", "y", "--positive-class", "3", *VFL]),
    ],
    "vfl predict": [
        ("missing model", ["--model-a", MISSING, "--model-b", MISSING, "--data-a", A, "--data-b", B]),
        ("model is not a model", ["--model-a", BIN, "--model-b", BIN, "--data-a", A, "--data-b", B]),
        ("model is a directory", ["--model-a", DIR, "--model-b", DIR, "--data-a", A, "--data-b", B]),
        ("non-UTF-8 model", ["--model-a", NONUTF8, "--model-b", NONUTF8, "--data-a", A, "--data-b", B]),
        ("nan", ["--model-a", BIN, "--model-b", BIN, "--data-a", A, "--data-b", B, "--threshold", "nan"]),
        ("out is the input", ["--model-a", BIN, "--model-b", BIN, "--data-a", A, "--data-b", B, "--out", A]),
    ],
    "vfl train": [
        ("missing", ["--data-a", MISSING, "--data-b", B, "--label", "y", *VFL]),
        ("empty", ["--data-a", EMPTY, "--data-b", B, "--label", "y", *VFL]),
        ("directory", ["--data-a", DIR, "--data-b", B, "--label", "y", *VFL]),
        ("non-UTF-8", ["--data-a", NONUTF8, "--data-b", B, "--label", "y", *VFL]),
        ("missing label", ["--data-a", A, "--data-b", B, "--label", "nope", *VFL]),
        ("label not numeric", ["--data-a", A, "--data-b", "{d}/b_text.csv", "--label", "y", *VFL]),
        ("feature not numeric", ["--data-a", "{d}/a_text.csv", "--data-b", B, "--label", "y", *VFL]),
        ("nan feature", ["--data-a", "{d}/a_nan.csv", "--data-b", B, "--label", "y", *VFL]),
        ("duplicate ids", ["--data-a", "{d}/a_dup.csv", "--data-b", B, "--label", "y", *VFL]),
        ("no feature column", ["--data-a", "{d}/a_nofeat.csv", "--data-b", B, "--label", "y", *VFL]),
        ("no feature column", ["--data-a", "{d}/a_nofeat.csv", "--data-b", B, "--label", "y", *VFL, "--mode", "fast"]),
        ("features overflow float64 sums", ["--data-a", "{d}/a_huge.csv", "--data-b", B, "--label", "y", *VFL]),
        ("labels overflow float64 sums", ["--data-a", A, "--data-b", "{d}/b_huge.csv", "--label", "y", *VFL,
                                         "--mode", "fast"]),
        ("wrong choice", ["--data-a", A, "--data-b", B, "--label", "y", "--model", "bogus", *VFL]),
        ("wrong choice", ["--data-a", A, "--data-b", B, "--label", "y", "--mode", "bogus", *VFL]),
        ("out of range", ["--data-a", A, "--data-b", B, "--label", "y", *VFL, "--epochs", "0"]),
        ("nan", ["--data-a", A, "--data-b", B, "--label", "y", *VFL, "--alpha", "nan"]),
        ("out of range", ["--data-a", A, "--data-b", B, "--label", "y", *VFL, "--alpha", "-1"]),
        ("out of range", ["--data-a", A, "--data-b", B, "--label", "y", *VFL, "--val-fraction", "1.5"]),
        ("target without prediction", ["--data-a", A, "--data-b", B, "--label", "y", *VFL, "--target", A]),
        ("missing target", ["--data-a", A, "--data-b", B, "--label", "y", *VFL, "--predict-a", A,
                            "--predict-b", B, "--target", MISSING]),
        ("save dir is a file", ["--data-a", A, "--data-b", B, "--label", "y", *VFL, "--save-dir", BIN]),
        ("out is the input", ["--data-a", A, "--data-b", B, "--label", "y", *VFL, "--predict-a", A,
                              "--predict-b", "{d}/pb.csv", "--out", "{d}/pb.csv"]),
        ("option of another model", ["--data-a", A, "--data-b", B, "--label", "y", *VFL, "--positive-class", "3"]),
        ("target of other ids (after training)", ["--data-a", A, "--data-b", B, "--label", "y", *VFL,
                                                  "--predict-a", A, "--predict-b", "{d}/pb.csv",
                                                  "--target", "{d}/t_other_ids.csv", "--save-dir", "{d}/m",
                                                  "--plot", "{d}/curve.png"]),
    ],
}

#: node commands, whose success would serve until stopped (and which set up logging and signal
#: handlers for the whole process): their cases run as real processes. Everything else runs
#: in-process (``monitor`` and ``storage demo`` refuse bad input before they start anything).
SUBPROCESS = {"dataowner start", "storage start", "executor start"}
#: a few more cases through a real process, to check the in-process view matches the real one
SUBPROCESS_CASES = {("psi", "nothing listening"), ("ledger init", "missing folder"), ("storage put", "nan"),
                    ("bench", "not a -k expression")}  # (the last runs pytest: not inside this one)


def _commands() -> list[str]:
    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path)

    return sorted(walk(typer.main.get_command(app), []))


def test_every_command_has_rows():
    missing = [c for c in _commands() if not CASES.get(c)]
    assert not missing, f"add bad-input rows to tests/test_bad_input.py for: {missing}"
    assert not set(CASES) - set(_commands()), "rows for commands that no longer exist"


# -- the world every case runs in ------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files a user would have: keys, a ledger, a replica store with one file, CSVs, and broken ones."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    d = tmp_path_factory.mktemp("world")
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet:
        assert main(["keys", "new", str(d / "owner.key")]) == 0
        assert main(["keys", "new", str(d / "other.key")]) == 0
        assert main(["ledger", "init", "-L", str(d / "ledger.db")]) == 0
    _mark_above(d)
    (d / "dir").mkdir()
    (d / "empty.csv").write_bytes(b"")
    (d / "nonutf8.csv").write_bytes(b"id,x\n\xff\xfe,1\n")
    (d / "data.bin").write_bytes(os.urandom(20_000))
    (d / "ids.csv").write_text("id\n" + "".join(f"u{i}\n" for i in range(30)))
    rows = range(24)
    (d / "a.csv").write_text("id,x1,x2\n" + "".join(f"u{i},{i % 5},{(i * 7) % 3}\n" for i in rows))
    (d / "b.csv").write_text("id,x3,y\n" + "".join(f"u{i},{i % 4},{2 * i + 1}\n" for i in rows))
    (d / "b_text.csv").write_text("id,x3,y\n" + "".join(f"u{i},{i % 4},v{i}\n" for i in rows))
    (d / "a_text.csv").write_text("id,x1,x2\n" + "".join(f"u{i},{i % 5},w\n" for i in rows))
    (d / "a_nan.csv").write_text("id,x1,x2\n" + "".join(f"u{i},{i % 5},nan\n" for i in rows))
    (d / "a_nofeat.csv").write_text("id\n" + "".join(f"u{i}\n" for i in rows))
    (d / "a_huge.csv").write_text("id,x1,x2\n" + "".join(f"u{i},{i % 5},1e308\n" for i in rows))
    (d / "b_huge.csv").write_text("id,x3,y\n" + "".join(f"u{i},{i % 4},1.5e308\n" for i in rows))
    (d / "pb.csv").write_text("id,x3\n" + "".join(f"u{i},{i % 4}\n" for i in rows))
    (d / "t_other_ids.csv").write_text("id,y\n" + "".join(f"v{i},{i}\n" for i in rows))
    (d / "a_dup.csv").write_text("id,x1,x2\n" + "".join(f"u{i // 2},{i % 5},{i % 3}\n" for i in rows))
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (d / "rsa.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    with quiet:
        assert main(["storage", "put", str(d / "data.bin"), "--key", str(d / "owner.key"), "-s", str(d / "store"),
                     "--meta", str(d / "good.meta"), "--slice-size", "8192", "--replicas", "2",
                     "--chunk-size", "1024"]) == 0
    meta = bytearray((d / "good.meta").read_bytes())
    meta[len(meta) // 2] ^= 1
    (d / "tampered.meta").write_bytes(bytes(meta))
    _tampered_ledger(d)
    _dnn_folders(d)
    return d


def _dnn_folders(d: Path) -> None:
    """PaddleDTX DNN folders (``dtx mpc dnn``): one with a NaN feature, one with a header-only file."""
    files = {"train_dataA.csv": "id,a\n1,0.1\n2,0.2\n", "train_dataB.csv": "id,b,MEDV\n1,0.3,1\n2,0.4,2\n",
             "train_dataC.csv": "id,c\n1,0.5\n2,0.6\n", "predict_dataA.csv": "id,a\n3,0.1\n",
             "predict_dataB.csv": "id,b\n3,0.3\n", "predict_dataC.csv": "id,c\n3,0.5\n",
             "targetValues.csv": "originId,MEDV\n3,1.5\n"}
    for name, change in (("dnn_nan", ("train_dataB.csv", "id,b,MEDV\n1,nan,1\n2,0.4,2\n")),
                         ("dnn_empty", ("train_dataC.csv", "id,c\n"))):
        (d / name).mkdir()
        for f, text in {**files, change[0]: change[1]}.items():
            (d / name / f).write_text(text)


def _mark_above(d: Path) -> None:
    """other.key's ledger mark says it saw block 99 of the world's ledger: a ledger that went back."""
    from dtxfast.ledger import open_ledger
    from dtxfast.ledger.watermark import HighWaterMark

    led = open_ledger(str(d / "ledger.db"))
    HighWaterMark.for_key(d / "other.key", led.chain_id).record(led.chain_id, 99, bytes(32))
    led.close()


def _tampered_ledger(d: Path) -> None:
    """A copy of the ledger with one more block, whose row was then deleted from the file."""
    import sqlite3

    from dtxfast.ledger import NodeIdentity, RegisterNode, open_ledger

    shutil.copy(d / "ledger.db", d / "tampered.db")
    led = open_ledger(str(d / "tampered.db"))
    ident = NodeIdentity.load(str(d / "owner.key"))
    led.submit(ident, RegisterNode(role="storage", address="http://127.0.0.1:1"))
    led.close()
    con = sqlite3.connect(d / "tampered.db")  # the tip block's row deleted (issue 15)
    con.execute("delete from blocks where height = (select max(height) from blocks)")
    con.commit()
    con.close()


def _tree(d: Path) -> dict[str, str]:
    out = {}
    for root, dirs, files in os.walk(d):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), d)] = "dir"
        for name in files:
            p = os.path.join(root, name)
            out[os.path.relpath(p, d)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def _run_inprocess(argv: list[str], timeout: float = 60,
                   out: io.StringIO | None = None) -> tuple[int, str, BaseException | None]:
    result: dict[str, object] = {}
    err = io.StringIO()

    def target() -> None:
        try:
            result["rc"] = main(argv)
        except BaseException as exc:  # a traceback the user would have seen
            result["exc"] = exc

    saved = sys.stderr, sys.stdout
    sys.stderr, sys.stdout = err, (io.StringIO() if out is None else out)
    try:
        t = threading.Thread(target=target, daemon=True)
        t.start()
        t.join(timeout)
    finally:
        sys.stderr, sys.stdout = saved
    if t.is_alive():
        pytest.fail(f"dtx {' '.join(argv)} was still running after {timeout} s (bad input accepted?)")
    return int(result.get("rc", -1)), err.getvalue(), result.get("exc")  # type: ignore[arg-type]


def _run_process(argv: list[str], cwd: Path, timeout: float = 60) -> tuple[int, str, None]:
    try:
        p = subprocess.run([sys.executable, "-m", "dtxfast", *argv], capture_output=True, text=True,
                           timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dtx {' '.join(argv)} was still running after {timeout} s (bad input accepted?)")
    return p.returncode, p.stderr, None


def _params():
    for cmd, cases in sorted(CASES.items()):
        for i, (kind, args) in enumerate(cases):
            yield pytest.param(cmd, kind, args, id=f"{cmd.replace(' ', '-')}:{kind.replace(' ', '-')}:{i}")


@pytest.mark.parametrize(("cmd", "kind", "args"), list(_params()))
def test_bad_input(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cmd: str, kind: str,
                   args: list[str]) -> None:
    d = tmp_path / "w"
    shutil.copytree(world, d, symlinks=True)
    monkeypatch.chdir(d)
    argv = [*cmd.split(), *(a.replace("{d}", str(d)) for a in args)]
    before = _tree(d)
    if cmd in SUBPROCESS or (cmd, kind) in SUBPROCESS_CASES:
        rc, err, exc = _run_process(argv, d)
    else:
        rc, err, exc = _run_inprocess(argv)
    assert exc is None, f"dtx {' '.join(argv)} raised {type(exc).__name__}: {exc}"
    assert rc != 0, f"dtx {' '.join(argv)} exited 0 on bad input ({kind}); stderr: {err!r}"
    assert "Traceback" not in err, err
    lines = err.splitlines()  # not stripped: a blank line (a progress bar's leftover) counts
    assert len(lines) == 1, f"want exactly one line on stderr, got {len(lines)}: {err!r}"
    assert lines[0].startswith("dtx: error: "), lines[0]
    assert _tree(d) == before, f"dtx {' '.join(argv)} changed files: " + ", ".join(
        sorted(k for k in set(before) | set(_tree(d)) if before.get(k) != _tree(d).get(k)))


def test_vfl_predict_refuses_swapped_files_and_parts_of_two_trainings(tmp_path: Path) -> None:
    """Model parts record their party's column names and the training they come from (issue 15:
    swapped files of the same column count used to predict nonsense with exit 0)."""
    rows = range(30)
    (tmp_path / "a.csv").write_text("id,age\n" + "".join(f"u{i},{i % 7}\n" for i in rows))
    (tmp_path / "b.csv").write_text("id,income,y\n" + "".join(f"u{i},{i % 5},{3 * i + 1}\n" for i in rows))
    (tmp_path / "pb.csv").write_text("id,income\n" + "".join(f"u{i},{i % 5}\n" for i in rows))
    quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
    for run in ("m1", "m2"):
        with quiet[0], quiet[1]:
            assert main(["vfl", "train", "--data-a", str(tmp_path / "a.csv"), "--data-b", str(tmp_path / "b.csv"),
                         "--label", "y", *VFL, "--save-dir", str(tmp_path / run)]) == 0
    m1a, m1b, m2b = (str(tmp_path / m / f) for m, f in (("m1", "model_a.json"), ("m1", "model_b.json"),
                                                         ("m2", "model_b.json")))
    a, pb = str(tmp_path / "a.csv"), str(tmp_path / "pb.csv")
    base = ["vfl", "predict", "--psi-bits", "1024"]
    rc, err, exc = _run_inprocess([*base, "--model-a", m1a, "--model-b", m1b, "--data-a", a, "--data-b", pb])
    assert (rc, exc) == (0, None), err
    rc, err, exc = _run_inprocess([*base, "--model-a", m1a, "--model-b", m1b, "--data-a", pb, "--data-b", a])
    assert exc is None and rc != 0 and err.count("\n") == 1
    assert "trained on columns age; this file has income" in err
    rc, err, exc = _run_inprocess([*base, "--model-a", m1a, "--model-b", m2b, "--data-a", a, "--data-b", pb])
    assert exc is None and rc != 0 and "two different trainings" in err and err.count("\n") == 1


def _flags(cmd: str) -> list[str]:
    """The option names of every flag of ``dtx <cmd>`` (``--help`` included)."""
    from dtxfast.cli import command

    node = command()
    for word in cmd.split():
        node = node.commands[word]  # type: ignore[attr-defined]
    names = ["--help"]
    for p in node.params:
        if p.param_type_name == "option" and getattr(p, "is_flag", False):
            names += [*p.opts, *p.secondary_opts]
    return names


@pytest.mark.parametrize("cmd", ["", *_commands()])
def test_help_of_every_command(cmd: str) -> None:
    """``--help`` works for every command (a help text with ``[/CHAIN]`` once crashed rich's markup),
    and shows flags as flags: no value placeholder beside them (typer printed ``--quick <bool>``),
    while options that take a value keep theirs."""
    import re

    out = io.StringIO()
    rc, err, exc = _run_inprocess([*cmd.split(), "--help"], out=out)
    assert exc is None, f"dtx {cmd} --help raised {type(exc).__name__}: {exc}"
    assert rc == 0 and err == ""
    text = out.getvalue()
    assert "<bool>" not in text
    for flag in _flags(cmd):
        rows = [line for line in text.splitlines() if re.search(rf"(^|[\s│,]){re.escape(flag)}(\s|$)", line)]
        assert rows, f"dtx {cmd} --help does not list {flag}"
        assert not any(re.search(rf"{re.escape(flag)}\s+(-\S+\s+)?<", line) for line in rows), rows
    if cmd == "bench":
        assert re.search(r"-k\s+<str>", text)  # a value-taking option keeps its placeholder


def test_expired_file_is_audited_with_a_notice(tmp_path: Path) -> None:
    """An expired file is still readable from a local store, but the user is told (issue 15)."""
    from dtxfast.ledger import NodeIdentity
    from dtxfast.storage import DataOwner, DirectoryReplicaStore

    ident = NodeIdentity.generate()
    ident.save(str(tmp_path / "k.key"))
    store = tmp_path / "store"
    meta = DataOwner(ident.private_key).upload(io.BytesIO(os.urandom(5000)), DirectoryReplicaStore(store),
                                               name="old.bin", slice_size=4096, replicas=2, chunk_size=512,
                                               now=1_000_000_000, expires_at=1_000_086_400)
    (tmp_path / "old.meta").write_bytes(meta.to_bytes())
    rc, err, exc = _run_inprocess(["storage", "audit", str(tmp_path / "old.meta"), "-s", str(store), "--k", "3"])
    assert (rc, exc) == (0, None), err
    assert err.strip() == f"dtx: note: file {meta.file_id_hex} expired on 2001-09-10 01:46 UTC; storage nodes may drop it"


def test_vfl_predict_prints_class_labels_in_the_files_order(tmp_path: Path) -> None:
    """One-vs-rest logistic predictions print the class (or "not <class>"), never True/False, and
    rows follow the label party's file, not ids sorted as strings (u10 before u2) (issue 15)."""
    rows = range(30)
    kinds = ["cat", "dog", "fox"]
    (tmp_path / "a.csv").write_text("id,w\n" + "".join(f"u{i},{i % 3}\n" for i in rows))
    (tmp_path / "b.csv").write_text("id,h,y\n" + "".join(f"u{i},{(i * 7) % 5},{kinds[i % 3]}\n" for i in rows))
    (tmp_path / "pb.csv").write_text("id,h\n" + "".join(f"u{i},{(i * 7) % 5}\n" for i in rows))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["vfl", "train", "--data-a", str(tmp_path / "a.csv"), "--data-b", str(tmp_path / "b.csv"),
                     "--label", "y", "--model", "logistic", "--positive-class", "cat", *VFL,
                     "--save-dir", str(tmp_path / "m")]) == 0
    out = tmp_path / "pred.csv"
    rc, err, exc = _run_inprocess(["vfl", "predict", "--psi-bits", "1024", "--model-a", str(tmp_path / "m/model_a.json"),
                                   "--model-b", str(tmp_path / "m/model_b.json"), "--data-a", str(tmp_path / "a.csv"),
                                   "--data-b", str(tmp_path / "pb.csv"), "--out", str(out)])
    assert (rc, exc) == (0, None), err
    lines = out.read_text().strip().splitlines()
    assert lines[0] == "id,prediction,probability"
    assert [line.split(",")[0] for line in lines[1:]] == [f"u{i}" for i in rows]
    assert {line.split(",")[1] for line in lines[1:]} <= {"cat", "not cat"}
