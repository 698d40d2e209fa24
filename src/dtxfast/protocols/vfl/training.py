"""The two training parties (pure state machines) and the plaintext reference they must match.

See :mod:`dtxfast.protocols.vfl` for the messages of one epoch and what each party learns.
"""

from __future__ import annotations

import math
import secrets
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ...crypto.paillier import (
    DEFAULT_FRAC_BITS,
    EncryptedVector,
    PaillierPrivateKey,
    PaillierPublicKey,
    concatenate,
    generate_keypair,
)
from ...errors import MalformedInput, ParameterError, ProtocolError, StateError
from ._messages import MsgType, pack, pack_ints, pack_signed, unpack, unpack_ints, unpack_signed
from .config import FEATURE_FRAC_BITS, Standardizer, TrainingConfig, batch_schedule, reg_gradient, reg_loss
from .model import ModelPart

if TYPE_CHECKING:
    from ...compute import ComputeBackend

__all__ = [
    "FeatureParty",
    "LabelEncoding",
    "LabelParty",
    "encode_labels",
    "plain_train_glm",
]

_HELLO_INFO = struct.Struct(">BIIH")  # role, rows, weights, public-key length follows
_ROLE_FEATURE, _ROLE_LABEL = 1, 2
_F64 = struct.Struct(">d")
_LN2 = math.log(2.0)


# -- label preparation (shared by the parties and the reference) ----------------------------------
class LabelEncoding:
    """How the label party turns its labels into the training target ``t``.

    Linear: ``t = (y - mean) / std``. Logistic: ``t = 1`` for the positive class, else 0.
    """

    def __init__(self, y: Any, model: str, positive_class: Any = None) -> None:
        y = np.asarray(y)
        if y.ndim != 1:
            raise ParameterError("labels must be a 1-D array")
        self.model = model
        self.y_mean, self.y_scale = 0.0, 1.0
        self.positive_class: Any = None
        self.negative_class: Any = None
        if model == "linear":
            yf = y.astype(np.float64)
            if not np.all(np.isfinite(yf)):
                raise ParameterError("regression labels must be finite numbers")
            with np.errstate(over="ignore", invalid="ignore"):
                self.y_mean = float(yf.mean())
                sd = float(yf.std())
            if not (math.isfinite(self.y_mean) and math.isfinite(sd)):
                raise ParameterError("regression labels are too large to standardize (the mean or spread "
                                     "overflows float64)")
            self.y_scale = sd if sd > 0 else 1.0
            self.target = (yf - self.y_mean) / self.y_scale
        else:
            classes = np.unique(y)
            if positive_class is None:
                if len(classes) != 2:
                    raise ParameterError("give positive_class when the labels do not have exactly two values")
                positive_class = classes[1]
            if not np.any(y == positive_class):
                raise ParameterError(f"positive class {positive_class!r} does not occur in the labels")
            self.positive_class = positive_class.item() if isinstance(positive_class, np.generic) else positive_class
            others = [c for c in classes if c != positive_class]
            if len(others) == 1:
                neg = others[0]
                self.negative_class = neg.item() if isinstance(neg, np.generic) else neg
            self.target = (y == positive_class).astype(np.float64)


def encode_labels(y: Any, model: str, positive_class: Any = None) -> LabelEncoding:
    """See :class:`LabelEncoding`."""
    return LabelEncoding(y, model, positive_class)


# Public keys seen in this process, by their bytes: a key's fixed-base obfuscator table (built on
# first use, about a second at 2048 bits) then serves every training with that key, including the
# peer's key in an in-process run (it is the other party's own key object). Public data only.
_KEY_CACHE: OrderedDict[bytes, PaillierPublicKey] = OrderedDict()
_KEY_CACHE_SIZE = 8
_KEY_LOCK = threading.Lock()


def _shared_key(pk: PaillierPublicKey, data: bytes | None = None) -> PaillierPublicKey:
    data = pk.to_bytes() if data is None else data
    with _KEY_LOCK:
        hit = _KEY_CACHE.get(data)
        if hit is not None:
            _KEY_CACHE.move_to_end(data)
            return hit
        _KEY_CACHE[data] = pk
        while len(_KEY_CACHE) > _KEY_CACHE_SIZE:
            _KEY_CACHE.popitem(last=False)
        return pk


def _signed(v: int, n: int) -> int:
    return v - n if v > n // 2 else v


# -- the parties -----------------------------------------------------------------------------------
class _PartyBase:
    """What every training party of both modes does alike: validate and encode its features,
    hold its key pair, say hello and check the peer's hello, and build its model part.

    A subclass sets ``role`` / ``_role_code``, checks the mode (:meth:`_check_mode`) and sets up
    its own state (:meth:`_init_state`, before the key pair is made, so a bad argument costs no
    key generation); ``_meta`` is added to the model part's metadata.
    """

    role = ""
    _role_code = 0
    _meta: dict[str, Any] = {}
    #: the weights a party holds in the clear (``model_part`` refuses before ``done`` otherwise)
    _weights_known_early = True

    def __init__(
        self,
        X: Any,
        config: TrainingConfig,
        *,
        key_bits: int = 2048,
        keypair: tuple[PaillierPublicKey, PaillierPrivateKey] | None = None,
        compute: ComputeBackend | None = None,
        **state: Any,
    ) -> None:
        self._check_mode(config)
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ParameterError("a party's features must be a non-empty 2-D array")
        if not np.all(np.isfinite(X)):
            raise ParameterError("features must be finite numbers")
        self.config = config
        if compute is None:
            from ...compute import default_compute

            compute = default_compute()
        #: where this party's encryptions and multi-exponentiations run (see :mod:`dtxfast.compute`)
        self.compute = compute
        self.standardizer = Standardizer.fit(X)
        Z = self.standardizer.transform(X)
        if self.role == "label":
            Z = np.hstack([Z, np.ones((len(Z), 1))])
        if Z.size and float(np.max(np.abs(Z))) >= float(1 << 40):
            raise ParameterError("a standardized feature exceeds 2^40 (a column is almost constant with outliers)")
        # public per-run fixed point: the exponent of every vector sent is a constant, never the
        # magnitude of a batch
        self._X = np.rint(np.ldexp(Z, FEATURE_FRAC_BITS)).astype(np.int64)
        self.n = len(Z)
        self._init_state(Z, **state)
        self.public_key, self._sk = keypair if keypair is not None else generate_keypair(key_bits)
        _shared_key(self.public_key)
        self.peer_key: PaillierPublicKey | None = None
        self.peer_weights = 0
        #: mean loss of every finished epoch (both parties see the same values; NaN when not asked for)
        self.history: list[float] = []
        self.epoch = 0
        self._bidx = 0
        self._batches: list[np.ndarray] = []
        self._state = "new"

    def _check_mode(self, config: TrainingConfig) -> None:
        raise NotImplementedError

    def _init_state(self, Z: np.ndarray) -> None:
        raise NotImplementedError

    @property
    def done(self) -> bool:
        """Whether training has finished."""
        return self._state == "done"

    def hello(self) -> bytes:
        """First message: public key, shape and the digest of the configuration."""
        if self._state != "new":
            raise StateError("hello() was already sent")
        self._state = "hello"
        pkb = self.public_key.to_bytes()
        info = _HELLO_INFO.pack(self._role_code, self.n, len(self.weights), len(pkb))
        return pack(MsgType.HELLO, 0, 0, [info, pkb, self.config.digest()])

    def _accept_hello(self, data: bytes) -> int:
        """Check the peer's HELLO, adopt its public key; return its number of weights."""
        msg = unpack(data, MsgType.HELLO)
        if len(msg.sections) != 3 or len(msg.sections[0]) != _HELLO_INFO.size:
            raise MalformedInput("malformed HELLO")
        role, rows, weights, pklen = _HELLO_INFO.unpack(msg.sections[0])
        if role == self._role_code or role not in (_ROLE_FEATURE, _ROLE_LABEL):
            raise ProtocolError("the peer must play the other role")
        if rows != self.n:
            raise ProtocolError(f"the peer has {rows} aligned rows, this party {self.n}")
        if msg.sections[2] != self.config.digest():
            raise ProtocolError("the peer trains with a different configuration")
        if len(msg.sections[1]) != pklen or weights < 1:
            raise MalformedInput("malformed HELLO")
        self.peer_key = _shared_key(PaillierPublicKey.from_bytes(msg.sections[1]), bytes(msg.sections[1]))
        if self.peer_key == self.public_key:
            raise ProtocolError("the peer uses this party's own public key")
        self.peer_weights = weights
        return int(weights)

    def _part(self, **label: Any) -> ModelPart:
        if not self._weights_known_early and not self.done:
            raise StateError("the weights are known only when training has finished")
        return ModelPart(self.role, self.config.model, self.weights.copy(), self.standardizer.mean.copy(),
                         self.standardizer.scale.copy(), meta={"epochs": self.epoch, **self._meta}, **label)


class _FeatureRole:
    """The feature party's model part (mixed into both modes' feature parties)."""

    def model_part(self: Any) -> ModelPart:
        """This party's trained part (its weights and its own standardization)."""
        return self._part()  # type: ignore[no-any-return]


class _LabelRole:
    """The label party's constructor, labels, threshold and model part (mixed into both modes'
    label parties, before their mode's party class)."""

    labels: LabelEncoding
    threshold: float

    def __init__(self, X: Any, y: Any, config: TrainingConfig, *, positive_class: Any = None,
                 threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(X, config, **kwargs)  # type: ignore[call-arg]  # the mode's party class
        self._init_labels(y, positive_class, threshold)

    def _init_labels(self: Any, y: Any, positive_class: Any, threshold: float) -> None:
        self.labels = encode_labels(y, self.config.model, positive_class)
        if len(self.labels.target) != self.n:
            raise ParameterError("labels and features have different numbers of rows")
        if not 0.0 < threshold < 1.0:
            raise ParameterError("threshold must lie in (0, 1)")
        self.threshold = float(threshold)

    def model_part(self: Any) -> ModelPart:
        """This party's trained part: weights with intercept, standardizations, label encoding."""
        lab = self.labels
        return self._part(y_mean=lab.y_mean, y_scale=lab.y_scale,  # type: ignore[no-any-return]
                          positive_class=lab.positive_class, negative_class=lab.negative_class,
                          threshold=self.threshold)


class _Party(_PartyBase):
    """Common machinery of both roles in fast mode: a lockstep state machine (one message in, one out)."""

    def __init__(
        self,
        X: Any,
        config: TrainingConfig,
        *,
        key_bits: int = 2048,
        keypair: tuple[PaillierPublicKey, PaillierPrivateKey] | None = None,
        compute: ComputeBackend | None = None,
        initial_weights: Any = None,
    ) -> None:
        super().__init__(X, config, key_bits=key_bits, keypair=keypair, compute=compute,
                         initial_weights=initial_weights)

    def _check_mode(self, config: TrainingConfig) -> None:
        if config.mode != "fast":
            raise ParameterError("FeatureParty and LabelParty run mode='fast'; for mode='ss' use "
                                 "SharedFeatureParty and SharedLabelParty (or feature_party / label_party)")

    def _init_state(self, Z: np.ndarray, initial_weights: Any = None) -> None:
        self._Z = Z
        if initial_weights is None:
            # random, private initial weights: the first residual is not the labels (-t or 1/2 - t)
            rng = np.random.default_rng(secrets.randbits(128))
            initial_weights = rng.normal(scale=1.0 / math.sqrt(2.0 * Z.shape[1]), size=Z.shape[1])
        w0 = np.asarray(initial_weights, dtype=np.float64)
        if w0.shape != (Z.shape[1],) or not np.all(np.isfinite(w0)):
            raise ParameterError(f"initial_weights must be {Z.shape[1]} finite numbers")
        #: this party's initial weights (random unless given; private to this party)
        self.initial_weights = w0.copy()
        self.weights = w0.copy()
        self._want_loss = self.config.amplitude > 0
        self._loss_share = 0
        self._epoch_loss = 0.0
        self._u = np.zeros(0)
        self._own_term = np.zeros(0)
        self._mask: list[int] = []
        self._mask_exp = 0
        self._batch_loss: float | None = None

    def receive(self, data: bytes) -> bytes | None:
        """Process the peer's message; return the next message to send, or None when finished."""
        if self._state == "hello":
            return self._on_hello(data)
        if self._state == "partial":
            return self._on_partial(data)
        if self._state == "masked":
            return self._on_masked(data)
        if self._state == "unmasked":
            return self._on_unmasked(data)
        if self._state == "loss":
            return self._on_loss(data)
        raise StateError(f"no message expected in state {self._state!r}")

    # -- steps ------------------------------------------------------------------------------------
    def _check_batch(self, msg: Any) -> None:
        if msg.epoch != self.epoch or msg.batch != self._bidx:
            raise ProtocolError(
                f"message for epoch {msg.epoch} batch {msg.batch}, expected epoch {self.epoch} batch {self._bidx}"
            )

    def _on_hello(self, data: bytes) -> bytes:
        weights = self._accept_hello(data)
        widest = max(len(self.weights), weights)
        smallest = min(len(b) for b in batch_schedule(self.n, self.config, 0))
        if smallest <= widest:
            raise ParameterError(
                f"fast mode needs every batch larger than both parties' column counts: a batch of {smallest} rows "
                f"and {widest} columns would let the feature party solve its gradient for the residuals (the "
                f"labels); use a batch size whose batches all exceed {widest} rows, or mode='ss'")
        self._start_epoch()
        return self._partial()

    def _start_epoch(self) -> None:
        self._batches = batch_schedule(self.n, self.config, self.epoch)
        self._bidx = 0
        self._epoch_loss = 0.0
        self._loss_share = 0

    def _partial(self) -> bytes:
        idx = self._batches[self._bidx]
        self._u = self._Z[idx] @ self.weights
        self._own_term = self._residual_term(idx, self._u)
        ev = self.compute.encrypt(self.public_key, self._own_term)
        self._state = "partial"
        return pack(MsgType.PARTIAL, self.epoch, self._bidx, [ev.to_bytes()])

    def _on_partial(self, data: bytes) -> bytes:
        msg = unpack(data, MsgType.PARTIAL)
        self._check_batch(msg)
        assert self.peer_key is not None
        idx = self._batches[self._bidx]
        if len(msg.sections) != 1:
            raise MalformedInput("malformed PARTIAL")
        peer_enc = EncryptedVector.from_bytes(msg.sections[0], self.peer_key)
        if len(peer_enc) != len(idx):
            raise ProtocolError(f"PARTIAL has {len(peer_enc)} values, the batch has {len(idx)} rows")
        if peer_enc.exponent != DEFAULT_FRAC_BITS:
            raise ProtocolError(f"PARTIAL must carry the public exponent {DEFAULT_FRAC_BITS}, not {peer_enc.exponent}")
        # [[d]]_peer: the residual of this batch under the peer's key
        d_enc = peer_enc + self._own_term
        rows = self._X[idx].T
        with_loss = self.role == "feature" and self._want_loss
        if with_loss:
            u_int = np.rint(np.ldexp(self._u, FEATURE_FRAC_BITS)).astype(np.int64)
            rows = np.vstack([rows, u_int[None, :]])
        G = self.compute.matmul(np.ascontiguousarray(rows), d_enc)  # exponent: the public constant
        k = len(self.weights)
        n_peer = self.peer_key.n
        nsq = n_peer * n_peer
        self._mask = [secrets.randbelow(n_peer) for _ in range(k)]
        self._mask_exp = G.exponent
        masks = list(self._mask)
        if with_loss:
            # the loss term S_A = u_A . d - (a/2)|u_A|^2 + m reg(w_A), masked: the label party gets
            # S_A + lam (uniform mod n), this party keeps -lam; only the epoch's sum is revealed
            m = len(idx)
            corr = -0.5 * self.config.slope * float(self._u @ self._u) + m * reg_loss(self.weights, self.config)
            G = concatenate([G[:k], G[k:] + np.array([corr * float(1 << FEATURE_FRAC_BITS)])])
            lam = secrets.randbelow(n_peer)
            masks.append(lam)
            self._loss_share = (self._loss_share - lam) % n_peer
        mask = EncryptedVector.from_ciphertexts(self.peer_key, [(1 + r * n_peer) % nsq for r in masks], G.exponent, True)
        out = (G + mask).rerandomize(statistical=True)  # the key holder decrypts it
        self._state = "masked"
        return pack(MsgType.MASKED, self.epoch, self._bidx, [out.to_bytes()])

    def _on_masked(self, data: bytes) -> bytes:
        msg = unpack(data, MsgType.MASKED)
        self._check_batch(msg)
        if len(msg.sections) != 1:
            raise MalformedInput("malformed MASKED")
        ev = EncryptedVector.from_bytes(msg.sections[0], self.public_key)
        with_loss = self.role == "label" and self._want_loss
        expect = self.peer_weights + (1 if with_loss else 0)
        if len(ev) != expect:
            raise ProtocolError(f"MASKED has {len(ev)} values, expected {expect}")
        if ev.exponent != DEFAULT_FRAC_BITS:
            raise ProtocolError(f"MASKED must carry the public exponent {DEFAULT_FRAC_BITS}, not {ev.exponent}")
        res = self._sk.raw_decrypt(ev)
        width = (self.public_key.n.bit_length() + 7) // 8
        if with_loss:
            # this party's share of the batch loss sum, at scale 2^(exponent + FEATURE_FRAC_BITS)
            n = self.public_key.n
            own = self._own_loss_sum() * float(1 << (FEATURE_FRAC_BITS + ev.exponent))
            self._loss_share = (self._loss_share + res[-1] + int(own)) % n
        self._state = "unmasked"
        return pack(MsgType.UNMASKED, self.epoch, self._bidx, [pack_ints(res[: self.peer_weights], width)])

    def _on_unmasked(self, data: bytes) -> bytes | None:
        msg = unpack(data, MsgType.UNMASKED)
        self._check_batch(msg)
        assert self.peer_key is not None
        n_peer = self.peer_key.n
        k = len(self.weights)
        if len(msg.sections) != 1:
            raise MalformedInput("malformed UNMASKED")
        width = (n_peer.bit_length() + 7) // 8
        vals = unpack_ints(msg.sections[0], width, k)
        scale = float(1 << (self._mask_exp + FEATURE_FRAC_BITS))
        G = np.array([_signed((v - r) % n_peer, n_peer) / scale for v, r in zip(vals, self._mask)])
        self._mask = []
        m = len(self._batches[self._bidx])
        self.weights = self.weights - self.config.alpha * (G / m + self._reg_grad())
        self._bidx += 1
        if self._bidx < len(self._batches):
            return self._partial()
        if self._want_loss:
            self._state = "loss"
            return pack(MsgType.LOSS, self.epoch, self._bidx, [pack_signed([self._loss_share])])
        self.history.append(float("nan"))
        return self._next_epoch()

    def _on_loss(self, data: bytes) -> bytes | None:
        msg = unpack(data, MsgType.LOSS)
        if msg.epoch != self.epoch or len(msg.sections) != 1:
            raise ProtocolError("LOSS message for another epoch, or malformed")
        (peer,) = unpack_signed(msg.sections[0], 1)
        assert self.peer_key is not None
        n = self.public_key.n if self.role == "label" else self.peer_key.n  # the loss is under B's key
        if not 0 <= peer < n:
            raise MalformedInput("loss share out of range")
        total = _signed((self._loss_share + peer) % n, n)
        self.history.append(total / float(1 << (DEFAULT_FRAC_BITS + FEATURE_FRAC_BITS)) / self.n)
        return self._next_epoch()

    def _next_epoch(self) -> bytes | None:
        self.epoch += 1
        if _should_stop(self.history, self.config):
            self._state = "done"
            return None
        self._start_epoch()
        return self._partial()

    def _own_loss_sum(self) -> float:
        raise NotImplementedError

    # -- role specifics ---------------------------------------------------------------------------
    def _residual_term(self, idx: np.ndarray, u: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _reg_grad(self) -> np.ndarray:
        return reg_gradient(self.weights, self.config)



class FeatureParty(_FeatureRole, _Party):
    """The party with feature columns only (PaddleDTX's party A), fast mode.

    Parameters
    ----------
    X : array (n, d)
        This party's aligned feature rows.
    config : TrainingConfig
        ``mode="fast"``; must be the same at both parties (checked through its digest).
    key_bits : int, default 2048
        Size of this party's fresh Paillier key (ignored when ``keypair`` is given).
    keypair : (PaillierPublicKey, PaillierPrivateKey), optional
    compute : ComputeBackend, optional
        Where this party's encryptions and ``X.T @ [[d]]`` run (public keys only: the private key
        never leaves the party); default :func:`dtxfast.compute.default_compute`.
    initial_weights : array, optional
        Default: random (normal, standard deviation ``1 / sqrt(2 d)``), drawn privately.
    """

    role = "feature"
    _role_code = _ROLE_FEATURE

    def _residual_term(self, idx: np.ndarray, u: np.ndarray) -> np.ndarray:
        return self.config.slope * u


class LabelParty(_LabelRole, _Party):
    """The party with feature columns and the labels (PaddleDTX's party B); it owns the intercept.

    Parameters
    ----------
    X : array (n, d)
    y : array (n,)
        Labels: numbers (linear) or class values (logistic).
    config : TrainingConfig
    positive_class : label value, optional
        Logistic only: which label value is the positive class (default the larger of two).
    key_bits, keypair, compute : as :class:`FeatureParty`.
    threshold : float, default 0.5
        Logistic only: probability threshold stored in the model part.
    """

    role = "label"
    _role_code = _ROLE_LABEL

    def _residual_term(self, idx: np.ndarray, u: np.ndarray) -> np.ndarray:
        t = self.labels.target[idx]
        if self.config.model == "linear":
            return u - t
        return 0.25 * u + 0.5 - t

    def _reg_grad(self) -> np.ndarray:
        g = reg_gradient(self.weights, self.config)
        g[-1] = 0.0
        return g

    def _own_loss_sum(self) -> float:
        """This party's part of the batch's loss sum: ``S_B + m reg(w_B)``."""
        idx = self._batches[self._bidx]
        m = len(idx)
        u = self._u
        if self.config.model == "linear":
            s_own = 0.5 * float(self._own_term @ self._own_term)
        else:
            t = self.labels.target[idx]
            s_own = m * _LN2 - float((t - 0.5) @ u) + float(u @ u) / 8.0
        return s_own + m * reg_loss(self.weights[:-1], self.config)



def _should_stop(history: list[float], cfg: TrainingConfig) -> bool:
    if len(history) >= cfg.max_epochs:
        return True
    if cfg.amplitude <= 0:
        return False  # the loss is not computed (NaN)
    if len(history) >= 2 and abs(history[-1] - history[-2]) < cfg.amplitude:
        return True
    return not math.isfinite(history[-1])


# -- plaintext reference ---------------------------------------------------------------------------
def plain_train_glm(
    X_feature: Any, X_label: Any, y: Any, config: TrainingConfig, *, positive_class: Any = None,
    on_epoch: Callable[[int, float, np.ndarray, np.ndarray], None] | None = None,
    initial: tuple[Any, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """The same algorithm in plain numpy, centrally: what the federated run must reproduce.

    ``initial``: (feature party's, label party's) initial weights (fast mode draws random ones:
    pass ``(fa.initial_weights, lb.initial_weights)``); default zeros (secret-shared mode).

    Same standardization (each block with its own statistics), same label encoding, same batch
    schedule, same sigmoid approximation (``config.sigmoid``), same regularization and stop rule.

    ``on_epoch(epoch, loss, w_feature, w_label)`` is called after every epoch.

    Returns
    -------
    (weights of the feature party, weights of the label party with the intercept last, epoch losses)
    """
    cfg = config
    A = Standardizer.fit(X_feature).transform(X_feature)
    B = Standardizer.fit(X_label).transform(X_label)
    B = np.hstack([B, np.ones((len(B), 1))])
    t = encode_labels(y, cfg.model, positive_class).target
    n = len(A)
    wa, wb = np.zeros(A.shape[1]), np.zeros(B.shape[1])
    if initial is not None:
        wa, wb = np.array(initial[0], dtype=np.float64), np.array(initial[1], dtype=np.float64)
    history: list[float] = []
    for epoch in range(cfg.max_epochs):
        total = 0.0
        for idx in batch_schedule(n, cfg, epoch):
            m = len(idx)
            ua, ub = A[idx] @ wa, B[idx] @ wb
            z = ua + ub
            if cfg.model == "linear":
                d = z - t[idx]
                loss = 0.5 * float(d @ d) / m
            elif cfg.sigmoid == "clip":
                d = np.clip(0.25 * z + 0.5, 0.0, 1.0) - t[idx]
                loss = _LN2 - 0.5 + 2.0 * float(d @ d) / m  # the Taylor loss's form in d (equal where unclipped)
            else:
                d = 0.25 * z + 0.5 - t[idx]
                loss = _LN2 - float((t[idx] - 0.5) @ z) / m + float(z @ z) / (8.0 * m)
            loss += reg_loss(wa, cfg) + reg_loss(wb[:-1], cfg)
            total += loss * m / n
            ga = A[idx].T @ d / m + reg_gradient(wa, cfg)
            gb = B[idx].T @ d / m + reg_gradient(wb, cfg)
            gb[-1] -= reg_gradient(wb, cfg)[-1]
            wa = wa - cfg.alpha * ga
            wb = wb - cfg.alpha * gb
        history.append(total)
        if on_epoch is not None:
            on_epoch(epoch, total, wa, wb)
        if _should_stop(history, cfg):
            break
    return wa, wb, history
