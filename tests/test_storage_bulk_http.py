"""The storage client's bulk transport (:class:`dtxfast.storage.network._BlockingHttp`) against a
real HTTP server on loopback: signed requests, exact bodies, refusals keep their type, and a
kept-alive connection the server closed is reopened once with a fresh signature."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dtxfast.errors import InvalidProof, NotFound, ProtocolError, StateError, Unauthorized
from dtxfast.ledger import NodeIdentity
from dtxfast.storage.network import NodeStatus, NodeUnreachable, _BlockingHttp
from dtxfast.transport.http_auth import AuthError, RequestSigner, RequestVerifier

BODY = bytes(range(256)) * 40  # 10240 bytes
NODE = "aaaaaaaaaaaaaaaa"


class _Server:
    """A loopback HTTP/1.1 server that checks each request's signature (once, like a node) and
    answers as ``behaviour`` says: "ok", "short", "close-after" (answers, then drops the
    connection without saying so, as a node does with an idle one), or a status code."""

    def __init__(self, client: NodeIdentity) -> None:
        self.verifier = RequestVerifier(NODE, {client.node_id: client.public_key_bytes}.get)
        self.behaviour: Any = "ok"
        self.seen: list[tuple[str, str]] = []  # (method, verdict) per request that reached the server
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    outer.verifier.verify(self.command, self.path, dict(self.headers.items()), body)
                    outer.seen.append((self.command, "signed"))
                except AuthError as exc:
                    outer.seen.append((self.command, exc.reason))
                    self.send_response(exc.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                how = outer.behaviour
                if isinstance(how, int):
                    data = b'{"error": "no, because"}'
                    self.send_response(how)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                data = BODY
                if how == "short":
                    data = data[:-1]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if how == "close-after":
                    self.close_connection = True

            do_GET = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.node = NodeStatus(NODE, f"http://127.0.0.1:{self.httpd.server_address[1]}", "Green", True, 0)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def client() -> NodeIdentity:
    return NodeIdentity.generate()


@pytest.fixture
def server(client: NodeIdentity) -> Iterator[_Server]:
    srv = _Server(client)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def bulk(client: NodeIdentity) -> Iterator[_BlockingHttp]:
    b = _BlockingHttp(RequestSigner(client), timeout=10.0)
    try:
        yield b
    finally:
        b.close()


def _get(bulk: _BlockingHttp, server: _Server, size: int = len(BODY)) -> bytearray:
    out = bytearray(size)
    bulk.get_into(server.node, "0" * 32, 0, 0, memoryview(out))
    return out


def test_a_signed_get_lands_exact_in_the_buffer_and_reuses_its_connection(bulk, server):
    assert _get(bulk, server) == BODY
    assert _get(bulk, server) == BODY
    assert server.seen == [("GET", "signed"), ("GET", "signed")]
    assert sum(len(v) for v in bulk._idle.values()) == 1  # one connection served both


def test_a_connection_the_server_closed_is_reopened_once_with_a_fresh_signature(bulk, server):
    server.behaviour = "close-after"
    assert _get(bulk, server) == BODY
    server.behaviour = "ok"
    assert _get(bulk, server) == BODY  # the kept connection is dead: a new one, signed anew
    # every request that reached the server passed the replay check: none was sent twice
    assert server.seen == [("GET", "signed"), ("GET", "signed")]


def test_an_answer_of_another_length_is_an_invalid_proof(bulk, server):
    server.behaviour = "short"
    with pytest.raises(InvalidProof):
        _get(bulk, server)
    server.behaviour = "ok"
    with pytest.raises(InvalidProof):
        _get(bulk, server, size=len(BODY) + 1)  # the server sends fewer bytes than the ledger's size
    assert _get(bulk, server) == BODY  # and the client goes on


@pytest.mark.parametrize(("status", "error"), [(403, Unauthorized), (404, NotFound), (410, StateError),
                                                (409, ProtocolError)])
def test_refusals_keep_their_type_and_reason(bulk, server, status, error):
    server.behaviour = status
    with pytest.raises(error, match="no, because") as info:
        _get(bulk, server)
    assert not isinstance(info.value, NodeUnreachable)


def test_a_node_that_is_not_there_is_unreachable_without_a_retry(bulk, server):
    server.stop()
    with pytest.raises(NodeUnreachable):
        _get(bulk, server)
    assert server.seen == []


def test_after_close_no_connection_is_kept(bulk, server):
    assert _get(bulk, server) == BODY
    bulk.close()
    assert bulk._idle == {}
