"""Network probes made from the daemon into a container's network namespace.

    daemon.probes (when and what) ─▶ probe (this module) ─▶ a socket in the container's
        network namespace: tcpSocket, httpGet (HTTP/HTTPS), grpc (the health protocol)

No process is started inside the container: a thread of the daemon enters the
container's network namespace (``setns(2)``, which moves only the calling thread), opens
a socket there, and goes back before it returns to the pool. The connection, its
request and its reply then happen in that thread with a deadline. Exec probes are the
runtime's (``runc exec``: the container's own namespaces, cgroup, capabilities and
seccomp), not this module's.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_LIMIT = anyio.CapacityLimiter(16)  # probe threads at once (each bounded by its timeout)
_OUTPUT = 1024  # bytes of a reply kept for the event


@dataclass(frozen=True)
class Result:
    ok: bool
    message: str  # what a person reads in the event: the status, the error, the output


@contextlib.contextmanager
def _in_netns(pid: int) -> Iterator[None]:
    """This thread in ``pid``'s network namespace, and back (or the process dies: a pool
    thread left in a container's namespace would probe the wrong place later)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"cannot enter the network namespace of {pid}: "
                                   f"{os.strerror(err)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:  # never returns to the pool misplaced
                os.abort()
    finally:
        os.close(own)


def _connect(pid: int, host: str, port: int, deadline: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with _in_netns(pid):
        sock = socket.socket(family, socket.SOCK_STREAM)  # a socket of that namespace
    try:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _socket_in(pid: int, host: str) -> socket.socket:
    """A non-blocking socket of ``pid``'s network namespace, made by this thread (the
    event loop's) in a few microseconds: setns, socket(2), setns back; nothing else runs
    between."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with _in_netns(pid):
        sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


async def _aconnect(pid: int, host: str, port: int) -> socket.socket:
    sock = _socket_in(pid, host)
    try:
        with contextlib.suppress(BlockingIOError):
            sock.connect((host, port))
        await anyio.wait_writable(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
    except BaseException:
        sock.close()
        raise
    return sock


async def on_loop(fn: Callable[..., Any], *args: Any, timeout: float) -> Result:
    """An async probe on the event loop (no thread: tcp, plain http), bounded by
    ``timeout``; a timeout or an error is a failure."""
    try:
        with anyio.fail_after(timeout):
            result: Result = await fn(*args)
            return result
    except TimeoutError:
        return Result(False, f"timed out after {timeout:g}s")
    except OSError as exc:
        return Result(False, exc.strerror or str(exc))
    except Exception as exc:
        return Result(False, f"{type(exc).__name__}: {exc}".rstrip(": "))


async def tcp_async(pid: int, host: str, port: int) -> Result:
    (await _aconnect(pid, host, port)).close()
    return Result(True, f"connected to {host}:{port}")


async def http_async(pid: int, host: str, port: int, path: str,
                     headers: Sequence[tuple[str, str]]) -> Result:
    """Plain HTTP GET on the event loop (HTTPS goes through ``http`` in a thread)."""
    sock = await _aconnect(pid, host, port)
    try:
        request = _request(host, port, path, headers)
        while request:
            await anyio.wait_writable(sock)
            request = request[sock.send(request):]
        data = b""
        while b"\r\n" not in data and len(data) < 8192:
            await anyio.wait_readable(sock)
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    return _reply(data)


def _request(host: str, port: int, path: str, headers: Sequence[tuple[str, str]]) -> bytes:
    names = {k.lower() for k, _ in headers}
    lines = [f"GET {path or '/'} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"Host: {host}:{port}")
    if "user-agent" not in names:
        lines.append("User-Agent: reconciler-probe")
    if "accept" not in names:
        lines.append("Accept: */*")
    lines += [f"{k}: {v}" for k, v in headers] + ["Connection: close", "", ""]
    return "\r\n".join(lines).encode()


def _reply(data: bytes) -> Result:
    """Kubernetes' rule: a status from 200 to 399 is success."""
    status_line = data.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP reply: {status_line[:80]!r}")
    code = int(parts[1])
    body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
    text = f"HTTP {code}" + (f": {body[:_OUTPUT].decode(errors='replace').strip()}"
                             if code >= 400 and body.strip() else "")
    return Result(200 <= code < 400, text)


async def run(fn: Callable[..., Result], *args: Any, timeout: float) -> Result:
    """``fn(*args, deadline)`` in a probe thread; a timeout or an OSError is a failure."""
    deadline = time.monotonic() + timeout

    def call() -> Result:
        try:
            return fn(*args, deadline)
        except TimeoutError:
            return Result(False, f"timed out after {timeout:g}s")
        except OSError as exc:
            return Result(False, exc.strerror or str(exc))
        except Exception as exc:  # a reply we cannot parse (h2's ProtocolError, ...)
            return Result(False, f"{type(exc).__name__}: {exc}".rstrip(": "))

    return await anyio.to_thread.run_sync(call, limiter=_LIMIT)


def tcp(pid: int, host: str, port: int, deadline: float) -> Result:
    _connect(pid, host, port, deadline).close()
    return Result(True, f"connected to {host}:{port}")


def http(pid: int, host: str, port: int, path: str, scheme: str,
         headers: Sequence[tuple[str, str]], deadline: float) -> Result:
    """GET ``path``: a status from 200 to 399 is success (Kubernetes' rule; redirects are
    not followed). HTTPS checks no certificate, as the kubelet."""
    sock = _connect(pid, host, port, deadline)
    try:
        if scheme == "HTTPS":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=host)
        sock.sendall(_request(host, port, path, headers))
        data = b""
        while b"\r\n" not in data and len(data) < 8192:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    return _reply(data)


_GRPC_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def grpc(pid: int, host: str, port: int, service: str, deadline: float) -> Result:
    """``grpc.health.v1.Health/Check`` over HTTP/2 (h2, no TLS, as the kubelet's):
    SERVING is success."""
    import h2.config
    import h2.connection
    import h2.events

    sock = _connect(pid, host, port, deadline)
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        message = (b"\x0a" + _varint(len(service.encode())) + service.encode()
                   if service else b"")
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [
            (":method", "POST"), (":scheme", "http"), (":authority", f"{host}:{port}"),
            (":path", "/grpc.health.v1.Health/Check"), ("content-type", "application/grpc"),
            ("te", "trailers"), ("user-agent", "reconciler-probe")])
        conn.send_data(stream, b"\x00" + struct.pack(">I", len(message)) + message,
                       end_stream=True)
        sock.sendall(conn.data_to_send())
        body, trailers, done = b"", {}, False
        while not done:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                break
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length,
                                                   event.stream_id)
                elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    trailers.update({_text(k): _text(v) for k, v in event.headers})
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset |
                                h2.events.ConnectionTerminated):
                    done = True
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    status = trailers.get("grpc-status", "")
    if status not in ("", "0"):
        words = {"5": "NOT_FOUND (no such service)", "12": "UNIMPLEMENTED (no health"
                 " service)", "14": "UNAVAILABLE"}.get(status, "")
        detail = trailers.get("grpc-message", "") or words
        return Result(False, f"gRPC status {status}" + (f": {detail}" if detail else ""))
    serving = _health_status(body[5:]) if len(body) >= 5 else 0
    return Result(serving == 1, f"health status {_GRPC_STATUS.get(serving, serving)}")


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _health_status(message: bytes) -> int:
    """Field 1 (status, an enum: a varint) of a HealthCheckResponse; 0 if absent."""
    i = 0
    while i < len(message):
        tag = message[i]
        i += 1
        value, shift = 0, 0
        while i < len(message):
            b = message[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if tag == 0x08:
            return value
        if tag & 0x07 == 2:  # a length-delimited field: skip its bytes
            i += value
    return 0
