"""Secret-shared-model two-party VFL (``mode="ss"``, the default): pure L2 state machines.

The two parties of :mod:`dtxfast.protocols.vfl` (feature party A, label party B, each with its own
Paillier key pair) train the same linear or logistic model as in fast mode, but *no party ever
holds a weight, a gradient, a residual, a score or a loss term of the model in the clear*: each
such value ``x`` exists only as two integer shares ``x = x_A + x_B`` (fixed point), one per party,
in the style of FATE's SSHE-LR and of CAESAR (Chen et al., KDD 2021): Paillier for the products
that cross parties, additive shares for everything else.

Fixed point and shares
----------------------
Features are standardized by their owner and encoded ``X_int = round(X * 2^20)``
(:data:`~dtxfast.protocols.vfl.config.FEATURE_FRAC_BITS`, public, per run); weights, scores and
residuals carry :data:`WEIGHT_FRAC_BITS` = 24 fractional bits. Shares are integers (not residues
of a ring): a share is the secret plus a mask drawn uniformly with :data:`STAT_BITS` = 64 bits more
than a public bound of the secret, so one share is within ``2^-64`` (statistical distance) of a
share of any other secret in the bound, and shares never wrap: a share is truncated locally
(``x >> k`` at each party) with an error of at most one unit in the last place, never a failure.
The public bounds: scores ``|z| < 2^24`` (:data:`SCORE_BOUND_BITS`, standardized units);
gradients and loss terms from those. Beyond them (a diverging model) hiding degrades gracefully
(the masks still cover all but the top bits); correctness never depends on them.

Messages of one batch of ``m`` rows (both parties send one message per round)
------------------------------------------------------------------------------
Notation: A holds its shares ``a_A`` of A's weights ``w_A`` and ``b_A`` of B's weights ``w_B``; B
holds ``a_B``, ``b_B`` (``w_A = a_A + a_B``, ``w_B = b_A + b_B``; all zero at the start, so the
initial weights are public zeros). ``[[v]]_P`` is ``v`` under P's key. Roles are symmetric except
for the labels, so only A's side is written out.

1. ``SHARE``: A sends ``[[b_A]]_A`` (its share of the *peer's* weights, under its own key).
2. ``SCORE``: A computes ``[[w_A]]_B = [[a_B]]_B + a_A`` and the masked partial scores
   ``[[u_A + rho]]_B`` (``u_A = X_A w_A``, fresh mask ``rho`` per row), *packed*: slot ``j`` of a
   ciphertext holds row ``j`` of a group of ``per = (n_bits - 1) // SCORE_SLOT_BITS`` rows (15 at
   2048-bit keys, 7 at 1024), so the message has ``ceil(m / per)`` ciphertexts. A gets them from
   one Pippenger multi-exponentiation per group, of the group's rows side by side against
   ``[[w_A]], [[w_A 2^k]], ..., [[w_A 2^(k (per - 1))]]`` (``k = SCORE_SLOT_BITS``), adds the packed
   masks and re-randomizes with statistically hiding randomness. B decrypts and cuts the slots:
   ``u_A + rho`` per row, its share of ``u_A`` (A keeps ``-rho``). Each ``rho`` is
   ``2^(k-2) + U`` with ``U`` uniform of ``k - 1`` bits, 64 bits more than the bound of ``u_A``,
   so a slot is hidden exactly as an unpacked value was (within ``2^-64``) and stays in
   ``[0, 2^k)`` for every ``|u_A| < 2^(k-2)``: packing changes the message's length, not what B
   learns. Now ``z = u_A + u_B`` is shared; each party truncates its share by ``2^20``.
2a. Logistic with the saturating sigmoid (``sigmoid="clip"``, the default of this mode:
   ``f(z) = clip(1/2 + z/4, 0, 1)``), on shares with :mod:`dtxfast.protocols.compare`: each party
   keeps :data:`CMP_FRAC_BITS` = 12 fractional bits of its share of ``z`` (locally; the sum is
   off by at most ``2^-12``) and reduces the shares of ``2 - z`` and ``z + 2`` mod
   ``2^CMP_BITS`` (``CMP_BITS`` = 38: exact ring shares, and the top bit is the sign for every
   ``|z| < 2^25``). ``COMPARE`` (first): each party's IKNP matrix for this batch's random OTs
   (16 bytes per OT; per compared value 37 + 66 + 1 OTs sent by A and 66 + 1 by B); in the
   first batch of a run
   ``SHARE`` and ``SCORE`` also carry the two rounds of 128 base OTs each way. ``COMPARE``
   (7 rounds): the sign bits ``[z > 2]`` and ``[z < -2]`` of every row, as a carry circuit with
   bit triples from the OTs; the bits stay XOR-shared. ``SELECT`` (2 rounds): the multiplexer
   gives integer shares of ``f = [z > 2] + [-2 <= z <= 2] (1/2 + z/4)`` (masks of
   ``STAT_BITS`` = 64 bits more than the shares' public bound). No comparison bit is ever
   opened: each message is an OT matrix, an opened Beaver difference or derandomization bit
   (uniform), or an OT message the receiver opens to a statistically masked value.
3. ``RESIDUAL``: each party forms its share of the residual from its share of ``z`` (linear:
   ``d = z - t``, B subtracts the labels; logistic, Taylor: ``d = z/4 + 1/2 - t``; logistic,
   clip: ``d = f - t``) and sends it under its own key: A sends ``[[d_A]]_A``.
4. ``GRADIENT``: A computes ``[[g_A]]_B = X_A^T ([[d_B]]_B + d_A)`` and sends ``[[g_A + gamma]]_B``
   (fresh mask, statistically hiding re-randomization). B decrypts: its share of A's gradient;
   A keeps ``-gamma``. Both update their shares of both weight vectors locally
   (``w <- w - alpha (g / m + lambda w)``, exact rational arithmetic on the integer shares).
   With ``amplitude > 0`` A also sends one ciphertext ``[[2 d_A . d_B + |d_A|^2 + lambda]]_B``:
   B's share of the batch's ``|d|^2``.
5. ``EPOCH`` (only with ``amplitude > 0``, once per epoch): each party sends its share of the
   epoch's ``sum |d|^2``; both compute the epoch loss (the Taylor/MSE data loss, without the
   regularization term; logistic: ``ln 2 - 1/2 + 2 mean(d^2)``, the Taylor loss where ``f`` is
   not clipped) and apply the stop rule.
6. ``FINAL`` (once, at the end): each party sends its share of the *peer's* weights in the clear,
   so each party obtains its own weights - and only its own.

What each party learns
----------------------
Besides the public configuration, shapes and keys: every plaintext a party receives (its
decryptions in steps 2 and 4, the peer's shares in steps 5 and 6, the values it opens in the
comparison's and the multiplexer's OTs in step 2a) is either a uniformly masked value
(statistically independent of the other party's data, within ``2^-64`` per value), a uniform bit
(the comparison's rounds), or a declared output: the epoch losses when ``amplitude > 0`` was asked for, and at the end its own
weights. Every ciphertext it receives is under the peer's key (semantically secure) or was
re-randomized with statistically hiding randomness before it decrypted it. In particular the
feature party never learns a label, a residual or a gradient, at any batch size and in the
first batch too; the label party never learns a partial score or a loss term of the other
party. Semi-honest parties are assumed. Prediction (:mod:`dtxfast.protocols.vfl.prediction`) is
unchanged: the label party learns the scores of the rows it predicts (the output it asked for).

Cost per batch and party: ``d + 1`` encryptions (step 1), ``d (per - 1)`` powers by ``2^k`` and an
``m / per x d per`` multi-exponentiation (step 2), ``m / per`` statistically hiding
re-randomizations and ``m / per`` decryptions (step 2), ``m`` encryptions (step 3), a ``d x m``
multi-exponentiation and ``d`` decryptions (step 4). The comparison (step 2a) adds per row
342 random OTs (208 sent by A, 134 by B; IKNP, hashed with fixed-key AES), about 5.7 KB on the
wire (5.5 KB of them OT matrices) and 10 message rounds per batch, and no Paillier operation; a
run adds the 128 base OTs each way once (16.5 KB).

Examples
--------
>>> import numpy as np
>>> from dtxfast.crypto.paillier import generate_keypair
>>> from dtxfast.protocols.vfl import SharedFeatureParty, SharedLabelParty, TrainingConfig, plain_train_glm
>>> from dtxfast.vfl.runner import train_in_process
>>> rng = np.random.default_rng(0)
>>> XA, XB = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
>>> y = XA @ [1.0, -1.0] + XB @ [0.5, 2.0]
>>> cfg = TrainingConfig(alpha=0.3, max_epochs=20, batch_size=0)
>>> a = SharedFeatureParty(XA, cfg, key_bits=1024); b = SharedLabelParty(XB, y, cfg, key_bits=1024)
>>> run = train_in_process(a, b)
>>> wa, wb, _ = plain_train_glm(XA, XB, y, cfg)  # the same algorithm, centrally, in floats
>>> bool(np.allclose(a.weights, wa, atol=1e-5) and np.allclose(b.weights, wb, atol=1e-5))
True
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from ...crypto.paillier import (
    EncryptedVector,
    PaillierPrivateKey,
    PaillierPublicKey,
    concatenate,
    matmul,
    pack_ints,
    unpack_slots,
)
from ...errors import MalformedInput, ParameterError, ProtocolError, StateError
from ..compare import Multiplexer, OTPool, SignBit
from ._messages import MsgType, pack, pack_signed, unpack, unpack_signed
from .config import FEATURE_FRAC_BITS, TrainingConfig, batch_schedule
from .training import _ROLE_FEATURE, _ROLE_LABEL, _FeatureRole, _LabelRole, _PartyBase

if TYPE_CHECKING:
    from ...compute import ComputeBackend

__all__ = [
    "CMP_BITS",
    "CMP_FRAC_BITS",
    "SCORE_BOUND_BITS",
    "SCORE_SLOT_BITS",
    "STAT_BITS",
    "WEIGHT_FRAC_BITS",
    "SharedFeatureParty",
    "SharedLabelParty",
]

#: fractional bits of the weights, scores and residuals (shares are integers at this scale)
WEIGHT_FRAC_BITS = 24
#: statistical security of every mask and share: ``2^-STAT_BITS`` distance per value
STAT_BITS = 64
#: public bound on a score ``|z|`` in standardized units (``2^24``), which the masks cover
SCORE_BOUND_BITS = 24
_FX = FEATURE_FRAC_BITS
_FW = WEIGHT_FRAC_BITS
_LN2 = math.log(2.0)
#: bits of the uniform part of a partial score's mask (the score's bound, both scales, STAT_BITS)
_SCORE_MASK_BITS = SCORE_BOUND_BITS + _FX + _FW + STAT_BITS
#: width of one slot of a packed ``SCORE`` ciphertext (the masked score plus one bit of offset)
SCORE_SLOT_BITS = _SCORE_MASK_BITS + 1
#: fractional bits of the scores compared with the sigmoid's bounds +-2 (``sigmoid="clip"``): each
#: party drops the others of its share locally (the sum is off by at most one unit, 2^-12)
CMP_FRAC_BITS = 12
#: the ring ``2^CMP_BITS`` of the comparison: exact for ``|z| < 2^(CMP_BITS - 1 - CMP_FRAC_BITS) - 2``,
#: which covers the public score bound ``2^SCORE_BOUND_BITS``
CMP_BITS = SCORE_BOUND_BITS + CMP_FRAC_BITS + 2
_CLIP_BOUND = 2 << CMP_FRAC_BITS  # z = 2 at the comparison's scale
#: public bound of a party's share of ``1/2 + z/4`` (its share of ``z`` is under ``2^(SCORE_SLOT_BITS - FX)``)
_MUX_VALUE_BITS = SCORE_SLOT_BITS - _FX + 1


def _ints(values: Any) -> np.ndarray:
    return np.array([int(v) for v in values], dtype=object)


#: source of the masks (the OS CSPRNG; tests of the transcript's distribution fix it to a seeded PRNG)
_randbits = secrets.randbits


def _mask(count: int, bits: int) -> list[int]:
    return [_randbits(bits) for _ in range(count)]


def _signed_list(res: list[int], n: int) -> list[int]:
    half = n // 2
    return [v - n if v > half else v for v in res]


def _dot_big(coeffs: list[int], ev: EncryptedVector) -> EncryptedVector:
    """``sum_i c_i [[x_i]]`` for big signed integers ``c_i`` (63-bit limbs, one product each)."""
    mags = [abs(c) for c in coeffs]
    signs = [-1 if c < 0 else 1 for c in coeffs]
    top = max([v.bit_length() for v in mags] + [1])
    out: EncryptedVector | None = None
    limb = 0
    while limb * 63 < top:
        row = np.array([s * ((v >> (63 * limb)) & ((1 << 63) - 1)) for s, v in zip(signs, mags)], dtype=np.int64)
        part = matmul(row[None, :], ev)
        if limb:
            part = part * (1 << (63 * limb))
        out = part if out is None else out + part
        limb += 1
    assert out is not None
    return out


class _SharedParty(_PartyBase):
    """Common machinery of both roles of the secret-shared protocol (a lockstep state machine)."""

    _meta = {"mode": "ss"}
    _weights_known_early = False  # a party learns its weights only in the final round

    def __init__(
        self,
        X: Any,
        config: TrainingConfig,
        *,
        key_bits: int = 2048,
        keypair: tuple[PaillierPublicKey, PaillierPrivateKey] | None = None,
        compute: ComputeBackend | None = None,
    ) -> None:
        super().__init__(X, config, key_bits=key_bits, keypair=keypair, compute=compute)

    def _check_mode(self, config: TrainingConfig) -> None:
        if config.mode != "ss":
            raise ParameterError("the secret-shared parties need a TrainingConfig with mode='ss'")

    def _init_state(self, Z: np.ndarray) -> None:
        self._k = Z.shape[1]
        #: this party's own weights (standardized units); known only after training (``FINAL``)
        self.weights = np.zeros(self._k)
        self._own: list[int] = [0] * self._k  # this party's share of its own weights
        self._peer: list[int] = []  # this party's share of the peer's weights
        self._score_mask: list[int] = []
        self._grad_mask: list[int] = []
        self._d: list[int] = []
        self._loss_share = 0
        self._want_loss = self.config.amplitude > 0
        self._alpha = Fraction(self.config.alpha)
        cfg = self.config
        self._decay = self._alpha * Fraction(cfg.reg_param) if cfg.reg_mode == "l2" else Fraction(0)
        #: logistic with the saturating sigmoid: a secure comparison per row and bound (OT-based)
        self._clip = cfg.model == "logistic" and cfg.sigmoid == "clip"
        self._pool: OTPool | None = OTPool() if self._clip else None
        self._sign: SignBit | None = None
        self._mux: Multiplexer | None = None
        self._y: list[int] = []
        self._ots = (0, 0)

    # -- public surface ---------------------------------------------------------------------------
    def receive(self, data: bytes) -> bytes | None:
        """Process the peer's message; return the next message, or None when training is over."""
        handler = {
            "hello": self._on_hello,
            "share": self._on_share,
            "score": self._on_score,
            "residual": self._on_residual,
            "gradient": self._on_gradient,
            "compare_ext": self._on_compare_ext,
            "compare": self._on_compare,
            "select1": self._on_select1,
            "select2": self._on_select2,
            "epoch": self._on_epoch,
            "final": self._on_final,
        }.get(self._state)
        if handler is None:
            raise StateError(f"no message expected in state {self._state!r}")
        return handler(data)

    # -- helpers ----------------------------------------------------------------------------------
    def _msg(self, data: bytes, mtype: MsgType, sections: int) -> Any:
        msg = unpack(data, mtype)
        if msg.epoch != self.epoch or msg.batch != self._bidx:
            raise ProtocolError(
                f"message for epoch {msg.epoch} batch {msg.batch}, expected epoch {self.epoch} batch {self._bidx}"
            )
        if len(msg.sections) != sections:
            raise MalformedInput(f"malformed {mtype.name}: {len(msg.sections)} sections, expected {sections}")
        return msg

    def _vector(self, section: bytes, key: PaillierPublicKey, count: int, what: str) -> EncryptedVector:
        ev = EncryptedVector.from_bytes(section, key)
        if len(ev) != count:
            raise ProtocolError(f"{what} has {len(ev)} values, expected {count}")
        if ev.exponent != 0:
            raise ProtocolError(f"{what} must carry integers (exponent 0), not exponent {ev.exponent}")
        return ev

    def _decrypt_signed(self, ev: EncryptedVector) -> list[int]:
        return _signed_list(self._sk.raw_decrypt(ev), self.public_key.n)

    def _pack(self, mtype: MsgType, sections: list[bytes]) -> bytes:
        return pack(mtype, self.epoch, self._bidx, sections)

    # -- steps ------------------------------------------------------------------------------------
    def _on_hello(self, data: bytes) -> bytes:
        weights = self._accept_hello(data)
        self._peer = [0] * weights
        self._start_epoch()
        return self._share()

    def _start_epoch(self) -> None:
        self._batches = batch_schedule(self.n, self.config, self.epoch)
        self._bidx = 0
        self._loss_share = 0

    def _setting_up(self) -> bool:
        """The first batch of a run with the comparison: the base OTs ride on SHARE and SCORE."""
        return self._clip and self.epoch == 0 and self._bidx == 0

    def _share(self) -> bytes:
        self._state = "share"
        ev = self.compute.encrypt(self.public_key, _ints(self._peer))
        sections = [ev.to_bytes()]
        if self._setting_up():
            assert self._pool is not None
            sections.append(self._pool.setup_message())
        return self._pack(MsgType.SHARE, sections)

    def _on_share(self, data: bytes) -> bytes:
        setup = self._setting_up()
        msg = self._msg(data, MsgType.SHARE, 2 if setup else 1)
        assert self.peer_key is not None
        peer_share = self._vector(msg.sections[0], self.peer_key, self._k, "SHARE")
        w_enc = peer_share + _ints(self._own)  # [[w_own]]_peer
        idx = self._batches[self._bidx]
        # [[X w_own]]_peer (scale 2^(FX + FW)), ``per`` rows packed per ciphertext: row j of a group
        # goes to slot j, i.e. it multiplies [[w_own * 2^(k j)]]; one multi-exponentiation per group
        k = SCORE_SLOT_BITS
        per = self.peer_key.slots(k)
        rows = self._X[idx]
        groups = -(-len(idx) // per)
        grouped = np.zeros((groups * per, rows.shape[1]), dtype=np.int64)
        grouped[: len(idx)] = rows
        shifted = [w_enc]
        for _ in range(per - 1):
            shifted.append(shifted[-1] * (1 << k))
        u = self.compute.matmul(grouped.reshape(groups, per * rows.shape[1]), concatenate(shifted))
        # each slot carries u + 2^(k-2) + U with U uniform of k-1 bits: in [0, 2^k) for |u| < 2^(k-2)
        self._score_mask = [(1 << (k - 2)) + r for r in _mask(len(idx), _SCORE_MASK_BITS)]
        out = (u + pack_ints(self._score_mask, k, per)).rerandomize(statistical=True)
        sections = [out.to_bytes()]
        if setup:
            assert self._pool is not None
            sections.append(self._pool.setup_reply(msg.sections[1]))
        self._state = "score"
        return self._pack(MsgType.SCORE, sections)

    def _on_score(self, data: bytes) -> bytes:
        setup = self._setting_up()
        msg = self._msg(data, MsgType.SCORE, 2 if setup else 1)
        if setup:
            assert self._pool is not None
            self._pool.setup_finish(msg.sections[1])
        idx = self._batches[self._bidx]
        k = SCORE_SLOT_BITS
        per = self.public_key.slots(k)
        ev = self._vector(msg.sections[0], self.public_key, -(-len(idx) // per), "SCORE")
        got = unpack_slots(self._sk.raw_decrypt(ev), k, per, len(idx))  # the peer's masked partial scores
        z = [(g - r) >> _FX for g, r in zip(got, self._score_mask)]  # my share of z, scale 2^FW
        self._score_mask = []
        if self._clip:
            return self._start_compare(z)
        return self._send_residual(self._residual_share(idx, z))

    def _send_residual(self, d: list[int]) -> bytes:
        self._d = d
        self._state = "residual"
        return self._pack(MsgType.RESIDUAL, [self.compute.encrypt(self.public_key, _ints(self._d)).to_bytes()])

    # -- the saturating sigmoid: f = [z > 2] + [-2 <= z <= 2] (1/2 + z/4), on shares ------------
    def _start_compare(self, z: list[int]) -> bytes:
        """Ring shares of ``2 - z`` and ``z + 2`` (their sign bits are ``[z > 2]``, ``[z < -2]``);
        this party's share of ``y = 1/2 + z/4``; the OT extension for the batch."""
        assert self._pool is not None
        first = self.role == "feature"
        m = len(z)
        mod = (1 << CMP_BITS) - 1
        zc = [v >> (_FW - CMP_FRAC_BITS) for v in z]
        c = _CLIP_BOUND if first else 0
        vals = [(c - v) & mod for v in zc] + [(v + c) & mod for v in zc]
        self._cmp_in = np.array(vals, dtype=np.uint64)
        half = 0 if first else 1 << (_FW - 1)
        self._y = [(v >> 2) + half for v in z]
        sent = SignBit.ots_needed(2 * m, CMP_BITS)  # by the first party, by the second
        self._ots = (sent[0] + 2 * m, sent[1] + 2 * m)  # and one each way per multiplexed value
        mine = 0 if first else 1
        self._state = "compare_ext"
        return self._pack(MsgType.COMPARE, [self._pool.extend(self._ots[1 - mine])])

    def _on_compare_ext(self, data: bytes) -> bytes:
        msg = self._msg(data, MsgType.COMPARE, 1)
        assert self._pool is not None
        self._pool.accept(msg.sections[0], self._ots[0 if self.role == "feature" else 1])
        self._sign = SignBit(self._pool, self.role == "feature", self._cmp_in, CMP_BITS)
        self._state = "compare"
        return self._pack(MsgType.COMPARE, [self._sign.message()])

    def _on_compare(self, data: bytes) -> bytes:
        msg = self._msg(data, MsgType.COMPARE, 1)
        assert self._sign is not None and self._pool is not None
        out = self._sign.receive(msg.sections[0])
        if out is not None:
            return self._pack(MsgType.COMPARE, [out])
        bits = self._sign.result
        assert bits is not None
        self._sign = None
        m = len(self._y)
        first = self.role == "feature"
        hi, lo = bits[:m], bits[m:]
        mid = hi ^ lo ^ np.uint8(1 if first else 0)  # [-2 <= z <= 2] = 1 ^ [z > 2] ^ [z < -2]
        one = [(1 << _FW) if first else 0] * m  # the public 1 (at scale 2^FW), held by the first party
        self._mux = Multiplexer(self._pool, np.concatenate([hi, mid]), one + self._y, _MUX_VALUE_BITS)
        self._y = []
        self._state = "select1"
        return self._pack(MsgType.SELECT, [self._mux.message()])

    def _on_select1(self, data: bytes) -> bytes:
        msg = self._msg(data, MsgType.SELECT, 1)
        assert self._mux is not None
        self._state = "select2"
        return self._pack(MsgType.SELECT, [self._mux.receive(msg.sections[0])])

    def _on_select2(self, data: bytes) -> bytes:
        msg = self._msg(data, MsgType.SELECT, 1)
        assert self._mux is not None
        shares = self._mux.finish(msg.sections[0])
        self._mux = None
        m = len(shares) // 2
        f = [a + b for a, b in zip(shares[:m], shares[m:])]  # my share of f(z), scale 2^FW
        return self._send_residual(self._clip_residual(self._batches[self._bidx], f))

    def _on_residual(self, data: bytes) -> bytes:
        msg = self._msg(data, MsgType.RESIDUAL, 1)
        assert self.peer_key is not None
        idx = self._batches[self._bidx]
        peer_d = self._vector(msg.sections[0], self.peer_key, len(idx), "RESIDUAL")
        d_enc = peer_d + _ints(self._d)  # [[d]]_peer
        g = self.compute.matmul(np.ascontiguousarray(self._X[idx].T), d_enc)  # [[X^T d]]_peer, scale 2^(FX + FW)
        bits = len(idx).bit_length() + 2 * SCORE_BOUND_BITS + _FX + _FW + STAT_BITS
        self._grad_mask = _mask(self._k, bits)
        out = (g + _ints(self._grad_mask)).rerandomize(statistical=True)
        sections = [out.to_bytes()]
        if self._want_loss:
            own_sq = sum(v * v for v in self._d)
            if self.role == "feature":
                lam = _mask(1, 2 * (SCORE_BOUND_BITS + _FW) + len(idx).bit_length() + STAT_BITS)[0]
                cross = _dot_big([2 * v for v in self._d], peer_d) + (own_sq + lam)
                sections.append(cross.rerandomize(statistical=True).to_bytes())
                self._loss_share += -lam
            else:
                self._loss_share += own_sq
        self._state = "gradient"
        return self._pack(MsgType.GRADIENT, sections)

    def _on_gradient(self, data: bytes) -> bytes:
        with_loss = self._want_loss and self.role == "label"
        msg = self._msg(data, MsgType.GRADIENT, 2 if with_loss else 1)
        m = len(self._batches[self._bidx])
        ev = self._vector(msg.sections[0], self.public_key, self.peer_weights, "GRADIENT")
        peer_grad = self._decrypt_signed(ev)  # my share of the peer's gradient
        if with_loss:
            self._loss_share += self._decrypt_signed(self._vector(msg.sections[1], self.public_key, 1, "loss"))[0]
        own_grad = [-r for r in self._grad_mask]  # my share of my own gradient
        self._grad_mask = []
        self._own = self._update(self._own, own_grad, m, self.role == "label")
        self._peer = self._update(self._peer, peer_grad, m, self.role == "feature")
        self._bidx += 1
        if self._bidx < len(self._batches):
            return self._share()
        if self._want_loss:
            self._state = "epoch"
            return self._pack(MsgType.EPOCH, [pack_signed([self._loss_share])])
        self.history.append(float("nan"))
        return self._next_epoch()

    def _update(self, shares: list[int], grad: list[int], m: int, last_is_intercept: bool) -> list[int]:
        """``w <- w - alpha (g / m + lambda w)`` on one party's shares (exact, floor division)."""
        step = self._alpha / (m << _FX)
        num, den = step.numerator, step.denominator
        dn, dd = self._decay.numerator, self._decay.denominator
        out = []
        last = len(shares) - 1
        for j, (w, g) in enumerate(zip(shares, grad)):
            w = w - (g * num) // den
            if dn and not (last_is_intercept and j == last):
                w = w - (shares[j] * dn) // dd
            out.append(w)
        return out

    def _on_epoch(self, data: bytes) -> bytes:
        msg = unpack(data, MsgType.EPOCH)
        if msg.epoch != self.epoch or len(msg.sections) != 1:
            raise ProtocolError("EPOCH message for another epoch, or malformed")
        (peer,) = unpack_signed(msg.sections[0], 1)
        total = Fraction(self._loss_share + peer, self.n << (2 * _FW))  # mean d^2
        if self.config.model == "linear":
            loss = float(total / 2)
        else:
            loss = _LN2 - 0.5 + float(2 * total)
        self.history.append(loss)
        return self._next_epoch()

    def _next_epoch(self) -> bytes:
        self.epoch += 1
        h = self.history
        stop = len(h) >= self.config.max_epochs
        if self._want_loss:
            stop = stop or not math.isfinite(h[-1])
            stop = stop or (len(h) >= 2 and abs(h[-1] - h[-2]) < self.config.amplitude)
        if stop:
            self._state = "final"
            self._bidx = 0
            return self._pack(MsgType.FINAL, [pack_signed(self._peer)])
        self._start_epoch()
        return self._share()

    def _on_final(self, data: bytes) -> None:
        msg = unpack(data, MsgType.FINAL)
        if msg.epoch != self.epoch or len(msg.sections) != 1:
            raise ProtocolError("FINAL message for another epoch, or malformed")
        peer_share = unpack_signed(msg.sections[0], self._k)
        self.weights = np.array([float(Fraction(a + b, 1 << _FW)) for a, b in zip(self._own, peer_share)])
        self._peer = []
        self._state = "done"
        return None

    # -- role specifics ---------------------------------------------------------------------------
    def _residual_share(self, idx: np.ndarray, z: list[int]) -> list[int]:
        raise NotImplementedError

    def _clip_residual(self, idx: np.ndarray, f: list[int]) -> list[int]:
        return f


class SharedFeatureParty(_FeatureRole, _SharedParty):
    """The party with feature columns only, in the secret-shared protocol.

    Parameters
    ----------
    X : array (n, d)
        This party's aligned feature rows.
    config : TrainingConfig
        ``mode="ss"``; must be the same at both parties (checked through its digest).
    key_bits : int, default 2048
        Size of this party's fresh Paillier key (ignored when ``keypair`` is given).
    keypair : (PaillierPublicKey, PaillierPrivateKey), optional
    compute : ComputeBackend, optional
        Where this party's encryptions and multi-exponentiations run (public keys only; the
        private key never leaves the party); default :func:`dtxfast.compute.default_compute`.
    """

    role = "feature"
    _role_code = _ROLE_FEATURE

    def _residual_share(self, idx: np.ndarray, z: list[int]) -> list[int]:
        if self.config.model == "linear":
            return z
        return [v >> 2 for v in z]



class SharedLabelParty(_LabelRole, _SharedParty):
    """The party with feature columns and the labels, in the secret-shared protocol; owns the intercept.

    Parameters
    ----------
    X, y, config, positive_class, threshold : as :class:`~dtxfast.protocols.vfl.LabelParty`
        (``config.mode="ss"``).
    key_bits, keypair, compute : as :class:`SharedFeatureParty`.
    """

    role = "label"
    _role_code = _ROLE_LABEL

    def _init_labels(self, y: Any, positive_class: Any, threshold: float) -> None:
        super()._init_labels(y, positive_class, threshold)
        config = self.config
        t = self.labels.target
        if config.model == "linear":
            self._offset = [-int(v) for v in np.rint(np.ldexp(t, _FW)).astype(np.int64)]
        else:
            self._offset = [int(v) for v in np.rint(np.ldexp(0.5 - t, _FW)).astype(np.int64)]
            self._target_fx = [int(v) << _FW for v in t.astype(np.int64)]

    def _clip_residual(self, idx: np.ndarray, f: list[int]) -> list[int]:
        t = self._target_fx
        return [v - t[i] for v, i in zip(f, idx.tolist())]

    def _residual_share(self, idx: np.ndarray, z: list[int]) -> list[int]:
        off = self._offset
        if self.config.model == "linear":
            return [v + off[i] for v, i in zip(z, idx.tolist())]
        return [(v >> 2) + off[i] for v, i in zip(z, idx.tolist())]
