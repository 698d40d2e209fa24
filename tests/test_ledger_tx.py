"""Transactions: one canonical byte form, strict decoding, signatures; node identities and key
files; the docstring examples of the ledger package."""

from __future__ import annotations

import os

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ledger_helpers import ident

from dtxfast.errors import InvalidProof, InvalidSignature, MalformedInput, ParameterError
from dtxfast.ledger import (
    NodeIdentity,
    PublishTask,
    RegisterNode,
    SignedTx,
    TaskParty,
    decode_tx,
    seal_to,
    sign_tx,
)
from dtxfast.ledger.tx import UnsignedTx, encode_payload, kinds, signing_message

CHAIN = bytes(range(32))
ME = ident("tx-tests")

params = st.dictionaries(
    st.text(max_size=10),
    st.one_of(st.text(max_size=20), st.integers(-(2**62), 2**62), st.booleans(),
              st.floats(allow_nan=False)),
    max_size=5,
)


@given(params=params, name=st.text(max_size=30), ts=st.integers(0, 2**53))
def test_round_trip_and_one_canonical_form(params, name, ts):
    body = PublishTask(task_type="train", algorithm="lr", name=name, params=params,
                       parties=[TaskParty(ME.node_id, ["ab" * 16])])
    stx = sign_tx(ME, body, chain_id=CHAIN, ts_ms=ts, nonce=bytes(16))
    again = sign_tx(ME, body, chain_id=CHAIN, ts_ms=ts, nonce=bytes(16))
    assert stx == again  # deterministic bytes, deterministic Ed25519 signature
    tx = decode_tx(stx.encode())
    assert tx.body == body and tx.ts_ms == ts and tx.sender_id == ME.node_id
    assert encode_payload(tx) == stx.payload


def test_dict_order_does_not_change_bytes():
    a = PublishTask(task_type="train", algorithm="x", params={"a": 1, "b": 2},
                    parties=[TaskParty(ME.node_id, [])])
    b = PublishTask(task_type="train", algorithm="x", params={"b": 2, "a": 1},
                    parties=[TaskParty(ME.node_id, [])])
    sa = sign_tx(ME, a, chain_id=CHAIN, ts_ms=1, nonce=bytes(16))
    sb = sign_tx(ME, b, chain_id=CHAIN, ts_ms=1, nonce=bytes(16))
    assert sa.payload == sb.payload


def test_non_canonical_bytes_are_refused():
    stx = sign_tx(ME, RegisterNode(role="storage", address="a"), chain_id=CHAIN, ts_ms=5)
    tx = stx.unsigned()
    # the same content with the map keys in another order is a different byte string: refused
    as_dict = msgspec.to_builtins(tx, builtin_types=(bytes,))
    reordered = msgspec.msgpack.encode(dict(reversed(list(as_dict.items()))))
    assert reordered != stx.payload
    with pytest.raises(MalformedInput):
        SignedTx(reordered, ME.sign(signing_message(reordered))).unsigned()
    # an integer encoded wider than needed is refused too
    wide = stx.payload.replace(b"\xa5ts_ms\x05", b"\xa5ts_ms\xcc\x05")
    assert wide != stx.payload
    with pytest.raises(MalformedInput):
        SignedTx(wide, ME.sign(signing_message(wide))).unsigned()


def test_unknown_fields_version_and_kind_are_refused():
    good = sign_tx(ME, RegisterNode(role="storage"), chain_id=CHAIN, ts_ms=5).unsigned()
    for bad in (UnsignedTx(2, CHAIN, good.sender, good.nonce, 5, good.body),):
        payload = encode_payload(bad)
        with pytest.raises(MalformedInput, match="version"):
            SignedTx(payload, ME.sign(signing_message(payload))).unsigned()
    for payload in (
        msgspec.msgpack.encode({**msgspec.to_builtins(good, builtin_types=(bytes,)), "extra": 1}),
        msgspec.msgpack.encode({**msgspec.to_builtins(good, builtin_types=(bytes,)),
                                "body": {"kind": "no_such_kind"}}),
        b"\x00garbage",
    ):
        with pytest.raises(MalformedInput):
            SignedTx(payload, bytes(64)).unsigned()
    with pytest.raises(MalformedInput):  # a field out of range is refused already when signing
        sign_tx(ME, RegisterNode(role="storage", address="x" * 600), chain_id=CHAIN)
    with pytest.raises(MalformedInput):
        sign_tx(ME, RegisterNode(role="miner"), chain_id=CHAIN)  # type: ignore[arg-type]


@given(pos=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_any_flipped_bit_is_caught(pos, bit):
    stx = sign_tx(ME, RegisterNode(role="executor", address="10.1.2.3:4"), chain_id=CHAIN,
                  ts_ms=123, nonce=bytes(16))
    raw = bytearray(stx.encode())
    raw[pos % len(raw)] ^= 1 << bit
    with pytest.raises((MalformedInput, InvalidSignature)):
        decode_tx(bytes(raw))


def test_every_kind_is_documented_and_has_a_rule():
    from dtxfast.ledger import contract

    for tag, cls in kinds().items():
        if tag.startswith(("test_", "doc_")):
            continue
        assert cls.__doc__, tag
        assert cls in contract._RULES, tag


# --- identities and key files ----------------------------------------------------------------


def test_key_file_round_trip_and_permissions(tmp_path):
    me = NodeIdentity.generate()
    path = me.save(tmp_path / "k.key")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert NodeIdentity.load(path).public_key_bytes == me.public_key_bytes
    with pytest.raises(ParameterError):
        me.save(path)
    NodeIdentity.generate().save(path, overwrite=True)
    assert NodeIdentity.load(path).node_id != me.node_id
    for mode in (0o644, 0o640, 0o604):
        path.chmod(mode)
        with pytest.raises(ParameterError, match="chmod 600"):
            NodeIdentity.load(path)
    path.chmod(0o600)
    path.write_text('{"version": 1, "kind": "ed25519", "seed": "zz", "node_id": "x"}')
    with pytest.raises(MalformedInput):
        NodeIdentity.load(path)
    other = NodeIdentity.generate()
    path.write_text(f'{{"version": 1, "kind": "ed25519", "seed": "{other.private_key.to_bytes().hex()}",'
                    f' "node_id": "{me.node_id}"}}')
    with pytest.raises(MalformedInput, match="does not match"):
        NodeIdentity.load(path)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp files left


def test_sealing_opens_only_for_the_recipient():
    alice, bob = NodeIdentity.generate(), NodeIdentity.generate()
    box = seal_to(alice.public_key, b"secret material")
    assert alice.unseal(box) == b"secret material"
    assert seal_to(alice.public_key, b"secret material") != box  # fresh ephemeral key each time
    with pytest.raises(InvalidProof):
        bob.unseal(box)
    tampered = bytearray(box)
    tampered[40] ^= 1
    with pytest.raises(InvalidProof):
        alice.unseal(bytes(tampered))
    with pytest.raises(MalformedInput):
        alice.unseal(box[:20])


def test_fast_signer_matches_pycryptodome():
    me = NodeIdentity.generate()
    for msg in (b"", b"x", os.urandom(1000)):
        assert me.sign(msg) == me.private_key.sign(msg)


def test_only_added_kinds_can_be_removed():
    from dtxfast.ledger.tx import Heartbeat, TxBody, kinds, register_kind, unregister_kind

    with pytest.raises(ParameterError):
        unregister_kind(Heartbeat)

    class Probe(TxBody, frozen=True, tag="test_probe"):
        n: int = 0

    from dtxfast.ledger import contract

    register_kind(Probe)
    contract.rule(Probe)(lambda state, tx, tx_id: None)
    assert kinds()["test_probe"] is Probe and Probe in contract._RULES
    unregister_kind(Probe)
    assert "test_probe" not in kinds() and Probe not in contract._RULES
    register_kind(Probe)  # and it can come back
    unregister_kind(Probe)


def test_ledger_works_without_the_openssl_accelerator(monkeypatch):
    from dtxfast.crypto import signatures
    from dtxfast.ledger import Heartbeat, MemoryLedger, identity

    monkeypatch.setattr(signatures, "_OSSL", [None])
    monkeypatch.setattr(identity, "_fast_signer", lambda seed: None)
    me = NodeIdentity.generate()
    assert me._sign == me.private_key.sign  # the pycryptodome path
    led = MemoryLedger()
    led.submit(me, RegisterNode(role="storage"))
    stx = led.sign(me, Heartbeat())
    with pytest.raises(InvalidSignature):
        led.append(SignedTx(stx.payload, stx.signature[:-1] + bytes([stx.signature[-1] ^ 1])))
    led.append(stx)
    assert led.verify_chain().entries == 2
    assert signatures.check_signatures([b"\x00" * 31], [bytes(64)], [b""]) == [False]
