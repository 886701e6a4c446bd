"""etcd's v3 API through its JSON gateway (``/v3/...``), with httpx: the calls a fleet needs.

    sources/etcd.py (desired state in)  ─┐
    daemon/fleet.py (status back)       ─┼─▶ etcdapi (this module) ─HTTP/JSON─▶ etcd
    cli/fleet.py (fleet apply/get/...)  ─┘

Why the gateway and httpx rather than a gRPC client: etcd serves the same v3 API as JSON
on its client port (``/v3/`` paths from etcd 3.4 on; its "gRPC gateway" page), so no
generated stubs, no grpcio (a large compiled dependency with its own pins), and httpx
gives what the asyncio gRPC clients on PyPI lack: client TLS certificates (aetcd 1.0 opens
only insecure channels) and a failover across endpoints we control. Keys and values are
base64 on the wire; every number is a decimal string (protobuf's JSON mapping).

Failover: requests go to one endpoint; a connection error, a timeout or a "no leader"
answer moves to the next, and only when every endpoint failed does a call raise
``Unavailable``. A watch is one streamed response; when its member goes away the stream
ends with ``Unavailable`` and the caller starts again from a fresh read.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx

from reconciler.errors import ReconcilerError

# gRPC status codes etcd answers with that mean "this member cannot serve now"
_RETRY_CODES = {4, 14}  # DeadlineExceeded, Unavailable
_AUTH_CODES = {16}  # Unauthenticated: a token that expired
_DENIED_CODES = {7}  # PermissionDenied


class EtcdError(ReconcilerError):
    """etcd refused a request or cannot be reached."""


class Unavailable(EtcdError):
    """No endpoint answered (down, partitioned, or without a leader). ``sent``: the request
    may have reached etcd (a timeout after sending), so a write may have happened."""

    def __init__(self, message: str, *, sent: bool = False) -> None:
        super().__init__(message)
        self.sent = sent


class Denied(EtcdError):
    """etcd's auth refused the request (wrong password, or a role without that key)."""


class Compacted(EtcdError):
    """A watch asked for revisions etcd has compacted away: read again, then watch."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"etcd compacted its history up to revision {revision}")
        self.revision = revision


@dataclass(frozen=True)
class Settings:
    """How to reach etcd: endpoints (URLs), TLS files, a user; ``timeout`` per request."""

    endpoints: tuple[str, ...]
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    user: str | None = None
    password: str | None = None
    timeout: float = 3.0

    def describe(self) -> str:
        return ",".join(self.endpoints)


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes
    mod_revision: int
    lease: int = 0


@dataclass(frozen=True)
class Event:
    """One change seen by a watch: ``value`` None for a delete."""

    key: str
    value: bytes | None
    mod_revision: int


def prefix_end(prefix: str) -> str:
    """The range end that makes ``[prefix, end)`` every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return raw.decode()


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _kv(raw: dict[str, Any]) -> KV:
    return KV(_unb64(raw.get("key")).decode(errors="replace"), _unb64(raw.get("value")),
              int(raw.get("mod_revision", 0)), int(raw.get("lease", 0)))


def put(key: str, value: bytes | str, *, lease: int = 0) -> dict[str, Any]:
    """A put for ``txn``."""
    req: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        req["lease"] = str(lease)
    return {"request_put": req}


def delete(key: str, *, prefix: bool = False) -> dict[str, Any]:
    """A delete of one key (or every key under it) for ``txn``."""
    req = {"key": _b64(key)}
    if prefix:
        req["range_end"] = _b64(prefix_end(key))
    return {"request_delete_range": req}


def get(prefix: str) -> dict[str, Any]:
    """A range read of every key under ``prefix`` for ``txn``."""
    return {"request_range": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}}


def unchanged_since(prefix: str, revision: int) -> dict[str, Any]:
    """A compare for ``txn``: no key under ``prefix`` was written after ``revision``."""
    return {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)), "target": "MOD",
            "result": "LESS", "mod_revision": str(revision + 1)}


class Client:
    """One connection pool to an etcd cluster; use as ``async with Client(settings)``."""

    def __init__(self, settings: Settings) -> None:
        if not settings.endpoints:
            raise EtcdError("no etcd endpoints given")
        self.settings = settings
        self._at = 0  # the endpoint that answered last
        self._token: str | None = None
        verify: ssl.SSLContext | bool = True
        if any(e.startswith("https:") for e in settings.endpoints) or settings.cacert:
            try:
                verify = ssl.create_default_context(cafile=settings.cacert)
                if settings.cert:
                    verify.load_cert_chain(settings.cert, settings.key)
            except (OSError, ssl.SSLError) as exc:
                raise EtcdError(f"etcd TLS files ({settings.cacert}, {settings.cert}, "
                                f"{settings.key}): {getattr(exc, 'strerror', None) or exc}"
                                ) from exc
        self._http = httpx.AsyncClient(
            verify=verify, timeout=httpx.Timeout(settings.timeout),
            limits=httpx.Limits(max_connections=16), trust_env=False)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- calls --------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The endpoint that answered last (where the next call goes first)."""
        return self.settings.endpoints[self._at]

    async def ranges(self, *prefixes: str) -> tuple[list[list[KV]], int]:
        """Every key under each prefix, all read at one revision (one transaction)."""
        answer = await self.call("/v3/kv/txn", {"success": [get(p) for p in prefixes]})
        kvs = [[_kv(kv) for kv in r.get("response_range", {}).get("kvs", [])]
               for r in answer.get("responses", [])]
        return kvs, int(answer["header"]["revision"])

    async def txn(self, success: Sequence[dict[str, Any]], *,
                  compare: Sequence[dict[str, Any]] = (),
                  failure: Sequence[dict[str, Any]] = ()) -> tuple[bool, int]:
        """One transaction: (whether the compares held, the revision after it)."""
        answer = await self.call("/v3/kv/txn", {"compare": list(compare),
                                                "success": list(success),
                                                "failure": list(failure)},
                                 write=any("request_range" not in op for op in success))
        return bool(answer.get("succeeded", False)), int(answer["header"]["revision"])

    async def grant(self, ttl: int) -> int:
        answer = await self.call("/v3/lease/grant", {"TTL": str(ttl)}, write=True)
        if answer.get("error"):
            raise EtcdError(f"etcd refused a lease: {answer['error']}")
        return int(answer["ID"])

    async def keepalive(self, lease: int) -> int:
        """Renew a lease; its TTL left, 0 if it has expired already."""
        answer = await self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(answer.get("result", answer).get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        await self.call("/v3/lease/revoke", {"ID": str(lease)})

    async def ping(self, url: str) -> None:
        """A linearizable read of nothing on ``url`` alone: it answers only while that
        member is alive and in the quorum (the watch's liveness check)."""
        await self._call_one(url, "/v3/kv/range", {"key": _b64("\0"), "count_only": True})

    async def watch(self, prefix: str, start_revision: int, *,
                    url: str | None = None) -> AsyncIterator[list[Event]]:
        """The changes under ``prefix`` from ``start_revision`` on, one list per message,
        from ``url`` (default: the endpoint that answered last).

        Raises ``Compacted`` when etcd no longer has ``start_revision``, ``Unavailable``
        when the stream cannot be opened, breaks, or says something unreadable."""
        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                   "start_revision": str(start_revision)}}
        url = url or self.endpoint
        await self._login(url)
        try:
            # hasleader: the member ends the watch when it loses its leader (a partition),
            # instead of going quiet while the majority moves on (etcd's WithRequireLeader)
            async with self._http.stream(
                "POST", url + "/v3/watch", json=body,
                headers={**self._headers(), "Grpc-Metadata-hasleader": "true"},
                timeout=httpx.Timeout(self.settings.timeout, read=None),
            ) as response:
                if response.status_code != 200:
                    text = (await response.aread()).decode(errors="replace")
                    self._raise(url, response.status_code, _json_or(text))
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    msg = json.loads(line)
                    if "error" in msg:
                        self._raise(url, 200, msg["error"])
                    result = msg.get("result", {})
                    if int(result.get("compact_revision", 0) or 0):
                        raise Compacted(int(result["compact_revision"]))
                    if result.get("canceled"):
                        raise Unavailable(f"etcd {url} ended the watch: "
                                          f"{result.get('cancel_reason') or 'canceled'}")
                    events = [Event(_unb64(e["kv"].get("key")).decode(errors="replace"),
                                    None if e.get("type") == "DELETE"
                                    else _unb64(e["kv"].get("value")),
                                    int(e["kv"].get("mod_revision", 0)))
                              for e in result.get("events", [])]
                    if events:
                        yield events
        except httpx.HTTPError as exc:
            self._away_from(url)
            raise Unavailable(f"etcd watch on {url}: {_words(exc, url, self.settings)}") from exc
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            self._away_from(url)  # a torn or odd line: this stream cannot be trusted
            raise Unavailable(f"etcd watch on {url}: unreadable answer ({exc})") from exc
        self._away_from(url)
        raise Unavailable(f"etcd {url} closed the watch")

    def _away_from(self, url: str) -> None:
        """The next call starts at the endpoint after ``url`` (once, however many say so)."""
        if self.endpoint == url:
            self._at = (self._at + 1) % len(self.settings.endpoints)

    # --- the plumbing -------------------------------------------------------------------

    async def call(self, path: str, body: dict[str, Any], *,
                   write: bool = False) -> dict[str, Any]:
        """POST ``body`` to ``path`` on the first endpoint that can answer. A ``write`` is
        not sent again to another endpoint once it may have reached one (a timeout after
        sending): it may have happened, and a second try could happen twice."""
        errors: list[str] = []
        n = len(self.settings.endpoints)
        for i in range(n):
            url = self.settings.endpoints[(self._at + i) % n]
            try:
                return await self._call_one(url, path, body)
            except Unavailable as exc:
                errors.append(exc.message)
                if write and exc.sent:
                    raise Unavailable(f"{exc.message} (the write may or may not have been"
                                      " made)", sent=True) from exc
                continue
        raise Unavailable("; ".join(errors))

    async def _call_one(self, url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in (1, 2):
            await self._login(url)
            try:
                response = await self._http.post(url + path, json=body, headers=self._headers())
            except httpx.HTTPError as exc:
                sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                raise Unavailable(f"etcd {url}: {_words(exc, url, self.settings)}",
                                  sent=sent) from exc
            answer = _json_or(response.text)
            if response.status_code == 200 and "code" not in answer:
                if "header" not in answer and "result" not in answer:  # not etcd's JSON
                    raise Unavailable(f"etcd {url}: unreadable answer: "
                                      f"{str(answer.get('error'))[:100]}", sent=True)
                self._at = self.settings.endpoints.index(url)
                return answer
            if attempt == 1 and int(answer.get("code", 0)) in _AUTH_CODES and self._token:
                self._token = None  # expired: log in again once
                continue
            self._raise(url, response.status_code, answer)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _login(self, url: str) -> None:
        s = self.settings
        if s.user is None or self._token is not None:
            return
        try:
            response = await self._http.post(url + "/v3/auth/authenticate",
                                             json={"name": s.user, "password": s.password or ""})
        except httpx.HTTPError as exc:
            raise Unavailable(f"etcd {url}: {_words(exc, url, self.settings)}") from exc
        answer = _json_or(response.text)
        if response.status_code != 200 or "token" not in answer:
            self._raise(url, response.status_code, answer)
        self._token = str(answer["token"])

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token} if self._token else {}

    def _raise(self, url: str, status: int, answer: dict[str, Any]) -> NoReturn:
        code = int(answer.get("code", 0) or answer.get("grpc_code", 0) or 0)
        words = answer.get("message") or answer.get("error") or f"HTTP {status}"
        if "CommonName of client" in str(words):
            words = (f"{words} (etcd refuses a client certificate with a Common Name on its"
                     " JSON API: use one without CN; a node is known by its --etcd-user)")
        if code in _DENIED_CODES or "permission denied" in str(words) \
                or "authentication failed" in str(words):
            raise Denied(f"etcd {url}: {words}")
        if code in _RETRY_CODES or status >= 500:
            raise Unavailable(f"etcd {url}: {words}")
        raise EtcdError(f"etcd {url}: {words}")


def _json_or(text: str) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        doc = json.loads(text)
        if isinstance(doc, dict):
            return doc
    return {"error": text.strip()[:200]}


def _words(exc: httpx.HTTPError, url: str, settings: Settings) -> str:
    text = str(exc) or type(exc).__name__
    if (isinstance(exc, httpx.ReadError) and url.startswith("https:") and not settings.cert
            and not str(exc)):
        return "the connection was closed (does etcd want a client certificate? --etcd-cert)"
    if isinstance(exc, httpx.ConnectError) and text in ("All connection attempts failed",
                                                        "ConnectError"):
        return "cannot connect (refused or unreachable)"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {settings.timeout:g} s"
    return text
