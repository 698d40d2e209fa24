"""Fixed Paillier vectors (tests/vectors/paillier_1024.json), checked by independent code.

The file says where its numbers came from: standard-mode ciphertexts from python-paillier's
``raw_encrypt``, DJN ciphertexts from CPython's built-in ``pow``. Every backend must reproduce
them from the same plaintexts and randomness and decrypt them back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dtxfast.crypto.paillier import EncryptedVector

from paillier_helpers import BACKENDS, build_keys

VECTORS = json.loads((Path(__file__).parent / "vectors" / "paillier_1024.json").read_text())
P, Q = int(VECTORS["p"]), int(VECTORS["q"])


@pytest.fixture(scope="module", params=BACKENDS)
def vkeys(request):
    return build_keys(request.param, P, Q)


def test_djn_generator_matches(vkeys):
    assert vkeys.pk._djn_base() == int(VECTORS["h_s"])


def test_standard_mode_obfuscators_match_python_paillier(vkeys):
    pk, sk = vkeys.pk, vkeys.sk
    # each vector twice: batches of 10 take the 8-lane SIMD paths where the CPU has them
    rs = [int(v["r"]) for v in VECTORS["standard"]] * 2
    width = pk._ctx.wn + 1
    r_limbs = np.frombuffer(b"".join(r.to_bytes(width * 8, "little") for r in rs), dtype="<u8").reshape(len(rs), width)
    obf = pk._ctx.obf_standard(np.ascontiguousarray(r_limbs, dtype=np.uint64), 1)
    ms = [int(v["m"]) for v in VECTORS["standard"]] * 2
    m_limbs = np.frombuffer(b"".join(m.to_bytes(pk._ctx.wn * 8, "little") for m in ms), dtype="<u8").reshape(len(ms), -1)
    c = pk._ctx.encrypt(np.ascontiguousarray(m_limbs, dtype=np.uint64), obf, 1)
    ev = EncryptedVector(pk, c)
    assert ev.raw_ciphertexts() == [int(v["c"]) for v in VECTORS["standard"]] * 2
    assert sk.raw_decrypt(ev) == ms


def test_djn_obfuscators_match_builtin_pow(vkeys):
    pk, sk = vkeys.pk, vkeys.sk
    pk._ensure_table()
    exps = [int(v["a"]) for v in VECTORS["djn"]] * 2
    we = pk._djn_limbs
    e_limbs = np.frombuffer(b"".join(a.to_bytes(we * 8, "little") for a in exps), dtype="<u8").reshape(len(exps), we)
    obf = pk._ctx.obf_djn(np.ascontiguousarray(e_limbs, dtype=np.uint64), 2)
    ms = [int(v["m"]) for v in VECTORS["djn"]] * 2
    m_limbs = np.frombuffer(b"".join(m.to_bytes(pk._ctx.wn * 8, "little") for m in ms), dtype="<u8").reshape(len(ms), -1)
    c = pk._ctx.encrypt(np.ascontiguousarray(m_limbs, dtype=np.uint64), obf, 2)
    assert EncryptedVector(pk, c).raw_ciphertexts() == [int(v["c"]) for v in VECTORS["djn"]] * 2


def test_vectors_decrypt(vkeys):
    cs = [int(v["c"]) for v in VECTORS["djn"] + VECTORS["standard"]]
    ev = EncryptedVector.from_ciphertexts(vkeys.pk, cs)
    assert vkeys.sk.raw_decrypt(ev) == [int(v["m"]) for v in VECTORS["djn"] + VECTORS["standard"]]
