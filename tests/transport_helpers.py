"""Helpers of the transport tests: seeded node keys and a TCP relay that can record or tamper.

The relay sits between a dialling node and a listening one on loopback; it forwards bytes both
ways, keeps a copy of everything (the eavesdropper's view) and can flip one byte of the
server-to-client stream once a given number of bytes has passed (an on-path attacker who alters
the ciphertext).
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import threading
from typing import Any

from dtxfast.ledger.identity import NodeIdentity
from dtxfast.transport.tls import parse_address


def seed(i: int) -> bytes:
    return bytes([i]) * 32


def ident(i: int) -> NodeIdentity:
    return NodeIdentity.from_seed(seed(i))


def keys(*ids: NodeIdentity) -> dict[str, bytes]:
    return {i.node_id: i.public_key_bytes for i in ids}


class Relay:
    """Forward every connection to ``target``; record the bytes; optionally flip one s->c byte."""

    def __init__(self, target: str, *, flip_s2c_after: int | None = None) -> None:
        self.target = parse_address(target)
        self.flip_after = flip_s2c_after
        self.recorded = bytearray()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._srv.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                c, _ = self._srv.accept()
            except OSError:
                return
            u = socket.create_connection(self.target)
            with self._lock:
                self._socks += [c, u]
            threading.Thread(target=self._pump, args=(c, u, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, s2c: bool) -> None:
        passed = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if s2c and self.flip_after is not None and passed <= self.flip_after < passed + len(data):
                    data = bytearray(data)
                    data[self.flip_after - passed] ^= 0x01
                    data = bytes(data)
                passed += len(data)
                with self._lock:
                    self.recorded += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self._srv.close()
        with self._lock:
            for s in self._socks:
                s.close()


def run_ledger_parties(ledger_path: str, party_main: Any, names: list[str], extra: list[Any], *,
                       timeout: float = 240.0) -> dict[int, Any]:
    """Run ``party_main(index, name, channel, extra[index])`` in one spawned process per party.

    Each process registers its node (seeded key, role ``executor``) with its listening address on
    the SQLite ledger at ``ledger_path``, waits until every party is registered, opens the TLS
    channel of the session with peers looked up on the ledger (keys and addresses), runs the
    party and reports what ``party_main`` returns. Every process is stopped at the end.
    """
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    gates = [ctx.Queue() for _ in names]
    procs = [ctx.Process(target=_ledger_party, args=(i, ledger_path, names, party_main, extra[i], gates[i], results),
                         daemon=True) for i in range(len(names))]
    for p in procs:
        p.start()
    try:
        ids = {}
        for _ in names:
            kind, i, value = results.get(timeout=timeout)
            if kind == "error":
                raise AssertionError(f"party {names[i]} failed: {value}")
            ids[i] = value
        for g in gates:
            g.put([ids[i] for i in range(len(names))])
        out: dict[int, Any] = {}
        for _ in names:
            kind, i, value = results.get(timeout=timeout)
            if kind == "error":
                raise AssertionError(f"party {names[i]} failed: {value}")
            out[i] = value
        return out
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(5)


def _ledger_party(index: int, ledger_path: str, names: list[str], party_main: Any, extra: Any,
                  gate: Any, results: Any) -> None:
    from dtxfast.ledger import RegisterNode, SQLiteLedger
    from dtxfast.transport.tls import LedgerDirectory, Peer, TlsNode

    try:
        me = ident(40 + index)
        led = SQLiteLedger(ledger_path)
        node = TlsNode(me, LedgerDirectory(led, roles={"executor"}))
        led.submit(me, RegisterNode(role="executor", address=node.address))
        results.put(("registered", index, me.node_id))
        ids = gate.get(timeout=120)
        peers = {n: Peer(ids[k]) for k, n in enumerate(names)}  # addresses from the ledger
        ch = node.open_channel("task-1", names[index], peers, timeout=60)
        try:
            value = party_main(index, names[index], ch, extra)
        finally:
            ch.close()
            node.close()
            led.close()
        results.put(("done", index, value))
    except BaseException as exc:  # reported to the test, which fails with it
        results.put(("error", index, f"{type(exc).__name__}: {exc}"))
