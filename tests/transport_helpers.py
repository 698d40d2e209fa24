"""Helpers of the transport tests: seeded node keys and a TCP relay that can record or tamper.

The relay sits between a dialling node and a listening one on loopback; it forwards bytes both
ways, keeps a copy of everything (the eavesdropper's view) and can flip one byte of the
server-to-client stream once a given number of bytes has passed (an on-path attacker who alters
the ciphertext).
"""

from __future__ import annotations

import socket
import threading

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
