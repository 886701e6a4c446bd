"""runtime.probe: the network probes (tcpSocket, httpGet, grpc) and their pure helpers.

The probes enter a process's network namespace before they open a socket; given this
test process's own PID they enter the namespace they are already in (setns needs
CAP_SYS_ADMIN: root), and reach servers the test runs on 127.0.0.1 (ports the kernel
picks): ``http.server`` with a handler that answers per path and records what it got, a
bare socket for tcp and for replies that are not HTTP, and a real grpcio health server
(``grpcio-health-checking``) for the gRPC health protocol.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, ClassVar

import grpc as grpcio  # type: ignore[import-untyped]
import pytest
from grpc_health.v1 import (  # type: ignore[import-untyped]
    health,
    health_pb2,
    health_pb2_grpc,
)

from reconciler.runtime import probe

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="setns(2) needs root")

ME = os.getpid()
HOST = "127.0.0.1"


def soon(seconds: float = 2.0) -> float:
    return time.monotonic() + seconds


# -- pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "encoded"), [
    (0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
    (16383, b"\xff\x7f"), (16384, b"\x80\x80\x01"),
])
def test_varint(n: int, encoded: bytes) -> None:
    assert probe._varint(n) == encoded


@pytest.mark.parametrize("service", ["", "web", "x" * 127, "x" * 128, "grpc.health.v1." * 30])
def test_a_request_is_what_protobuf_makes(service: str) -> None:
    ours = b"\x0a" + probe._varint(len(service.encode())) + service.encode() if service else b""
    assert ours == health_pb2.HealthCheckRequest(service=service).SerializeToString()


@pytest.mark.parametrize("status", [0, 1, 2, 3])
def test_health_status_of_protobufs_response(status: int) -> None:
    blob = health_pb2.HealthCheckResponse(status=status).SerializeToString()
    assert probe._health_status(blob) == status


@pytest.mark.parametrize(("blob", "status"), [
    (b"", 0),
    (b"\x08\x01", 1),
    (b"\x08\x81\x01", 129),  # a varint of two bytes
    (b"\x12\x03abc\x08\x02", 2),  # a length-delimited field first: skipped
    (b"\x10\x05\x08\x01", 1),  # another varint field first: skipped
    (b"\x12\x03abc", 0),
    (b"\x08", 0),  # cut short: the value so far
])
def test_health_status(blob: bytes, status: int) -> None:
    assert probe._health_status(blob) == status


# -- servers -----------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]]  # the headers of each request (a class per server)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()} | {
            ":path": self.path})
        status, extra, body = {
            "/ok": (200, [], b"fine"),
            "/moved": (302, [("Location", "/ok")], b""),
            "/missing": (404, [], b"no such page\n"),
            "/broken": (500, [], b""),
        }.get(self.path.split("?")[0], (404, [], b""))
        head = [f"HTTP/1.1 {status} Whatever", f"Content-Length: {len(body)}",
                *(f"{k}: {v}" for k, v in extra), "", ""]
        self.wfile.write("\r\n".join(head).encode() + body)  # one write: one segment

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_http(tls: ssl.SSLContext | None = None
               ) -> Iterator[tuple[int, list[dict[str, str]]]]:
    class Handler(_Handler):
        seen: ClassVar[list[dict[str, str]]] = []

    server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], Handler.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def web() -> Iterator[tuple[int, list[dict[str, str]]]]:
    with serve_http() as got:
        yield got


@contextlib.contextmanager
def listening() -> Iterator[socket.socket]:
    """A socket that listens and accepts nothing (the kernel completes connections)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen(8)
        yield s


def closed_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


@contextlib.contextmanager
def answering(reply: bytes) -> Iterator[int]:
    """A server that answers one connection with ``reply`` and ends its side (FIN), then
    reads until the client closes (so that no unread byte turns the close into a RST)."""
    with listening() as s:
        def serve() -> None:
            with contextlib.suppress(OSError):
                conn, _ = s.accept()
                with conn:
                    conn.settimeout(2)
                    conn.recv(4096)
                    conn.sendall(reply)
                    conn.shutdown(socket.SHUT_WR)
                    while conn.recv(4096):
                        pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield s.getsockname()[1]
        thread.join(2)


# -- tcp ---------------------------------------------------------------------------------------


def test_tcp_connects() -> None:
    with listening() as s:
        port = s.getsockname()[1]
        assert probe.tcp(ME, HOST, port, soon()) == probe.Result(True,
                                                                 f"connected to {HOST}:{port}")


def test_tcp_refused_raises_and_run_says_so() -> None:
    port = closed_port()
    with pytest.raises(ConnectionRefusedError):
        probe.tcp(ME, HOST, port, soon())


@pytest.mark.anyio
async def test_run_turns_errors_into_failures() -> None:
    got = await probe.run(probe.tcp, ME, HOST, closed_port(), timeout=2)
    assert got == probe.Result(False, "Connection refused")


@pytest.mark.anyio
async def test_run_of_a_process_that_is_gone() -> None:
    got = await probe.run(probe.tcp, 2**31 - 1, HOST, 80, timeout=2)
    assert got == probe.Result(False, "No such file or directory")


@pytest.mark.anyio
async def test_run_times_out() -> None:
    with listening() as s:  # connects, then never says a word
        started = time.monotonic()
        got = await probe.run(probe.http, ME, HOST, s.getsockname()[1], "/", "HTTP", [],
                              timeout=0.3)
    assert got == probe.Result(False, "timed out after 0.3s")
    assert time.monotonic() - started < 2


# -- http --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "ok", "message"), [
    ("/ok", True, "HTTP 200"),
    ("/moved", True, "HTTP 302"),  # not followed: 3xx is success
    ("/missing", False, "HTTP 404: no such page"),
    ("/broken", False, "HTTP 500"),
])
def test_http_status(web: tuple[int, list[dict[str, str]]], path: str, ok: bool,
                     message: str) -> None:
    port, seen = web
    assert probe.http(ME, HOST, port, path, "HTTP", [], soon()) == probe.Result(ok, message)
    assert seen[-1][":path"] == path


def test_http_request_headers(web: tuple[int, list[dict[str, str]]]) -> None:
    port, seen = web
    probe.http(ME, HOST, port, "/ok?x=1", "HTTP", [("X-Probe", "yes"), ("Accept", "text/plain")],
               soon())
    (got,) = seen
    assert got[":path"] == "/ok?x=1"
    assert got["host"] == f"{HOST}:{port}"
    assert got["user-agent"] == "reconciler-probe"
    assert got["x-probe"] == "yes"
    assert got["accept"] == "text/plain"  # the probe's own, not */* beside it
    assert got["connection"] == "close"


def test_http_headers_may_replace_host_and_user_agent(
        web: tuple[int, list[dict[str, str]]]) -> None:
    port, seen = web
    probe.http(ME, HOST, port, "/ok", "HTTP", [("host", "web.local"), ("User-Agent", "kube")],
               soon())
    (got,) = seen
    assert (got["host"], got["user-agent"], got["accept"]) == ("web.local", "kube", "*/*")


def test_http_an_empty_path_is_slash(web: tuple[int, list[dict[str, str]]]) -> None:
    port, seen = web
    probe.http(ME, HOST, port, "", "HTTP", [], soon())
    assert seen[-1][":path"] == "/"


@pytest.mark.parametrize("reply", [b"hello\r\n", b"HTTP/1.1 abc\r\n\r\n", b""])
def test_http_a_reply_that_is_not_http(reply: bytes) -> None:
    with answering(reply) as port, pytest.raises(ValueError, match="not an HTTP reply"):
        probe.http(ME, HOST, port, "/", "HTTP", [], soon())


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context with a self-signed certificate (openssl makes it)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    d: Path = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=elsewhere", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    return ctx


def test_https_checks_no_certificate(tls: ssl.SSLContext) -> None:
    with serve_http(tls) as (port, seen):
        assert probe.http(ME, HOST, port, "/ok", "HTTPS", [], soon()) == probe.Result(
            True, "HTTP 200")
    assert seen[-1][":path"] == "/ok"


# -- grpc --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_health() -> Iterator[int]:
    """A grpcio health server: "" and "web" SERVING, "db" NOT_SERVING, "new" UNKNOWN."""
    server = grpcio.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    serving = health_pb2.HealthCheckResponse.SERVING
    servicer.set("", serving)
    servicer.set("web", serving)
    servicer.set("db", health_pb2.HealthCheckResponse.NOT_SERVING)
    servicer.set("new", health_pb2.HealthCheckResponse.UNKNOWN)
    port = server.add_insecure_port(f"{HOST}:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(None).wait()


@pytest.mark.parametrize(("service", "ok", "message"), [
    ("", True, "health status SERVING"),
    ("web", True, "health status SERVING"),
    ("db", False, "health status NOT_SERVING"),
    ("new", False, "health status UNKNOWN"),
    ("nope", False, "gRPC status 5: NOT_FOUND (no such service)"),  # no details from grpcio
])
def test_grpc_health(grpc_health: int, service: str, ok: bool, message: str) -> None:
    got = probe.grpc(ME, HOST, grpc_health, service, soon())
    assert (got.ok, got.message.lower()) == (ok, message.lower())


@pytest.mark.anyio
async def test_grpc_through_run(grpc_health: int) -> None:
    got = await probe.run(probe.grpc, ME, HOST, grpc_health, "web", timeout=2)
    assert got == probe.Result(True, "health status SERVING")


@pytest.mark.anyio
@pytest.mark.parametrize("reply", [
    pytest.param(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x", id="DATA on stream 0"),
    pytest.param(b"\x00\x00\x05\x04\x00\x00\x00\x00\x00hello", id="SETTINGS of 5 bytes"),
])
async def test_run_turns_a_malformed_http2_reply_into_a_failure(reply: bytes) -> None:
    with answering(reply) as port:
        got = await probe.run(probe.grpc, ME, HOST, port, "", timeout=2)
    assert not got.ok


@pytest.mark.anyio
async def test_grpc_to_a_server_that_is_not_grpc(web: tuple[int, list[dict[str, str]]]
                                                 ) -> None:
    """An HTTP/1.1 server refuses h2's preface and closes: no SERVING."""
    got = await probe.run(probe.grpc, ME, HOST, web[0], "", timeout=2)
    assert not got.ok
