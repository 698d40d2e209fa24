"""A peer process for tests and benchmarks of the transport: a real second process on loopback.

:class:`PeerProcess` starts ``python -m``-style a spawned process that holds one :class:`TlsNode`
and obeys commands sent over a pipe: echo every message of a session back, sink N messages and
answer ``b"ok"``, run bare TLS / raw TCP / asyncio-TLS sinks (the benchmark's baselines), report
the node's refusals. Every process is stopped by :meth:`PeerProcess.stop` (killed if it does not
exit), so a fixture finalizer can always clean up.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import socket
import struct
import threading
from typing import Any

from ..errors import DtxError
from .tls import StaticDirectory, TlsNode, _Identity, _read_prelude, _send_prelude

__all__ = ["PeerProcess"]

_ACK = b"k"


def _echo(node: TlsNode, session: str, name: str, peers: dict[str, Any], timeout: float) -> None:
    try:
        ch = node.open_channel(session, name, peers, timeout=timeout)
    except (DtxError, OSError):  # nobody (or only impostors) came: the test side expects that
        return
    try:
        while True:
            for p in ch.peers:
                msg = ch.recv(p, timeout=None)
                if msg == b"!stop":
                    return
                ch.send(p, msg)
    except (DtxError, OSError):  # the test side closed or broke the link: nothing to echo any more
        return
    finally:
        ch.close()


def _sink(node: TlsNode, session: str, name: str, peers: dict[str, Any], timeout: float) -> None:
    """Answer b"ok" after every ``count`` messages; ``count`` is the first message (8 bytes)."""
    try:
        ch = node.open_channel(session, name, peers, timeout=timeout)
    except (DtxError, OSError):
        return
    (peer,) = ch.peers
    try:
        while True:
            head = ch.recv(peer)
            if head == b"!stop":
                return
            (count,) = struct.unpack(">Q", head)
            for _ in range(count):
                ch.recv(peer)
            ch.send(peer, b"ok")
    except (DtxError, OSError):
        return
    finally:
        ch.close()


def _stream_sink(sock: Any) -> None:
    """Baseline sink: per round, an 8-byte total, then that many bytes, then one ack byte."""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    try:
        while True:
            head = bytearray()
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    return
                head += chunk
            (total,) = struct.unpack(">Q", head)
            while total:
                n = sock.recv_into(view[: min(total, len(buf))])
                if not n:
                    return
                total -= n
            sock.sendall(_ACK)
    except OSError:
        return
    finally:
        sock.close()


def _baseline_server(ident: _Identity, kind: str, conn: Any) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    conn.send(("address", f"127.0.0.1:{srv.getsockname()[1]}"))
    sock, _ = srv.accept()
    srv.close()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if kind == "tcp":
        _stream_sink(sock)
        return
    peer_cert = _read_prelude(sock)
    _send_prelude(sock, ident.cert)
    tls = ident.context(True, peer_cert).wrap_socket(sock, server_side=True)
    if kind == "tls":
        _stream_sink(tls)
        return
    tls.close()  # pragma: no cover


async def _asyncio_sink(ident: _Identity, peer_cert: bytes, conn: Any) -> None:
    """Candidate stack: asyncio streams over the same TLS, framed messages, one ack per round."""
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(8)
                (count,) = struct.unpack(">Q", head)
                for _ in range(count):
                    (size,) = struct.unpack(">I", await reader.readexactly(4))
                    await reader.readexactly(size)
                writer.write(_ACK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ident.context(True, peer_cert))
    port = server.sockets[0].getsockname()[1]
    conn.send(("address", f"127.0.0.1:{port}"))
    async with server:
        await done.wait()


def _run_asyncio_sink(ident: _Identity, peer_cert: bytes, conn: Any) -> None:
    asyncio.run(_asyncio_sink(ident, peer_cert, conn))


def _main(conn: Any, seed: bytes, keys: dict[str, bytes]) -> None:
    from ..ledger.identity import NodeIdentity

    ident = NodeIdentity.from_seed(seed)
    node = TlsNode(ident, StaticDirectory(keys))
    conn.send(("ready", node.address, node.node_id))
    threads: list[threading.Thread] = []
    try:
        while True:
            try:
                cmd = conn.recv()
            except EOFError:
                return
            op, args = cmd[0], cmd[1:]
            if op == "stop":
                return
            if op in ("echo", "sink"):
                target = _echo if op == "echo" else _sink
                t = threading.Thread(target=target, args=(node, *args), daemon=True)
                t.start()
                threads.append(t)
            elif op in ("tls", "tcp"):
                t = threading.Thread(target=_baseline_server, args=(node._tls, op, conn), daemon=True)
                t.start()
                threads.append(t)
            elif op == "asyncio":
                t = threading.Thread(target=_run_asyncio_sink, args=(node._tls, args[0], conn), daemon=True)
                t.start()
                threads.append(t)
            elif op == "refusals":
                conn.send(("refusals", list(node.refusals)))
    finally:
        node.close()


class PeerProcess:
    """A second process holding one :class:`TlsNode` (node key from ``seed``), driven over a pipe.

    Parameters
    ----------
    seed : bytes
        The 32-byte seed of the peer's node key (:meth:`NodeIdentity.from_seed`).
    keys : dict of node id to public key
        The peer's directory (who it accepts).
    """

    def __init__(self, seed: bytes, keys: dict[str, bytes], *, start_timeout: float = 60.0) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_main, args=(child, seed, keys), daemon=True)
        self._proc.start()
        child.close()
        try:
            if not self._conn.poll(start_timeout):
                raise RuntimeError("the peer process did not start")
            _, self.address, self.node_id = self._conn.recv()
        except BaseException:
            self.stop()
            raise

    def command(self, *cmd: Any) -> None:
        """Send one command (``("echo", session, name, peers, timeout)``, ...)."""
        self._conn.send(cmd)

    def reply(self, timeout: float = 30.0) -> Any:
        """The next reply of the process (``("address", a)``, ``("refusals", [...])``)."""
        if not self._conn.poll(timeout):
            raise TimeoutError("the peer process did not answer")
        return self._conn.recv()

    def refusals(self) -> list[str]:
        """The refusal lines of the peer's node."""
        self.command("refusals")
        kind, lines = self.reply()
        assert kind == "refusals"
        return list(lines)

    def stop(self) -> None:
        """Ask the process to stop; kill it if it has not exited within a few seconds."""
        try:
            self._conn.send(("stop",))
        except (OSError, ValueError):
            pass
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._conn.close()

    def __enter__(self) -> PeerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
