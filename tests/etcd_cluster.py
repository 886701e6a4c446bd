"""Real etcd clusters for tests: Debian's etcd 3.4 members on 127.0.0.1, and etcdctl.

``EtcdCluster(base, members=3, tls=False)`` picks a client and a peer port per member,
starts the members (``e0``, ``e1``, ...) as plain processes in their own sessions, and
waits until every endpoint answers ``etcdctl endpoint health``. Tests then kill, restart,
stop and start members to lose and regain quorum, and talk to the cluster through
``etcdctl`` (or their own client, at ``endpoints``). Everything lives under ``base``::

    base/e0/          a member's data dir (kept across kill and restart)
    base/e0.log       its stdout and stderr, appended to on every start
    base/certs/       with tls: ca.crt, server.crt (client and peer TLS of every member),
                      client.crt, and the certs of make_client_cert under clients/

``close()`` (and ``__exit__``) SIGKILLs and reaps every member; a finalizer does the same
if a test drops the object without closing it. Failures raise ``EtcdClusterError`` with
the tails of the members' logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

HEALTH_TIMEOUT = 10.0  # s, for start, restart and start_all
ETCDCTL_TIMEOUT = 15.0  # s, for one etcdctl call
LOG_TAIL = 12  # lines of each member's log in an error

# Fast elections (the defaults are 100 ms and 1 s), no automatic compaction (tests compact
# on purpose), cheap bcrypt so that every authenticated etcdctl call stays quick.
_TUNING = (
    "--heartbeat-interval=50",
    "--election-timeout=500",
    "--auto-compaction-retention=0",
    "--bcrypt-cost=4",
    "--logger=zap",
    "--log-outputs=stderr",
)


class EtcdClusterError(RuntimeError):
    """A member did not come up, or an etcdctl call failed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _free_ports(n: int) -> list[int]:
    # All sockets held at once, so that the ports of one cluster are distinct.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                 for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def _env(*drop_prefixes: str) -> dict[str, str]:
    # etcd reads ETCD_* and etcdctl ETCDCTL_* variables as flags: none from the caller.
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)}
    env["ETCDCTL_API"] = "3"
    return env


def _openssl(*args: str | Path) -> None:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True,
                            timeout=30, check=False)
    if result.returncode != 0:
        raise EtcdClusterError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _new_key_args(key: Path, cn: str) -> tuple[str | Path, ...]:
    return ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-days", "2", "-subj", f"/CN={cn}" if cn else "/O=etcd-test")


def _accepts(m: _Member) -> bool:
    port = int(m.client_url.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class _Member:
    name: str
    client_url: str
    peer_url: str
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None


def _reap(members: Iterable[_Member]) -> None:
    for m in members:
        if m.proc is not None:
            m.proc.kill()  # a no-op once the process has been reaped
            m.proc.wait(timeout=30)
            m.proc = None


class EtcdCluster:
    """``members`` etcd processes on 127.0.0.1 under ``base``; see the module docstring."""

    def __init__(self, base: Path, *, members: int = 3, tls: bool = False) -> None:
        if members < 1:
            raise ValueError(f"members must be at least 1, not {members}")
        self.base = base
        self.tls = tls
        self.token = f"test-{uuid.uuid4().hex[:12]}"
        self.root_password: str | None = None
        self.ca: Path | None = None
        self.client_cert: Path | None = None
        self.client_key: Path | None = None
        self._server_cert: Path | None = None
        self._server_key: Path | None = None
        base.mkdir(parents=True, exist_ok=True)
        if tls:
            self._make_ca_and_server()
            self.client_cert, self.client_key = self._sign("", base / "certs" / "client")
        scheme = "https" if tls else "http"
        ports = _free_ports(2 * members)
        self._members = [
            _Member(name=f"e{i}", client_url=f"{scheme}://127.0.0.1:{ports[2 * i]}",
                    peer_url=f"{scheme}://127.0.0.1:{ports[2 * i + 1]}",
                    data_dir=base / f"e{i}", log=base / f"e{i}.log")
            for i in range(members)
        ]
        self.endpoints: list[str] = [m.client_url for m in self._members]
        self._initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self._members)
        self._finalizer = weakref.finalize(self, _reap, self._members)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        """Start every member as a new cluster and wait until all are healthy."""
        if any(m.proc is not None for m in self._members):
            raise EtcdClusterError("start: the cluster is already running")
        deadline = time.monotonic() + HEALTH_TIMEOUT
        try:
            # One after the other: a new member asks every peer whether it is bootstrapped
            # before it serves its own peer port, and two members asking each other at
            # once each wait 1 s per peer for the answer.
            for m in self._members:
                self._spawn(m, state="new")
                self._wait_serving_peers(m, deadline)
            self._wait_healthy(range(len(self._members)), deadline)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """SIGKILL and reap every member; idempotent."""
        _reap(self._members)

    def kill(self, i: int) -> None:
        """SIGKILL member ``i`` and reap it; its data dir stays for ``restart``."""
        _reap([self._members[i]])

    def freeze(self, i: int) -> None:
        """SIGSTOP member ``i``: it keeps its connections open and answers nothing (a
        hung host); ``thaw`` or ``close`` (SIGKILL works on a stopped process) ends it."""
        proc = self._members[i].proc
        if proc is not None:
            proc.send_signal(signal.SIGSTOP)

    def thaw(self, i: int) -> None:
        proc = self._members[i].proc
        if proc is not None:
            proc.send_signal(signal.SIGCONT)

    def restart(self, i: int) -> None:
        """Start the stopped member ``i`` again on its data dir; wait until it is healthy.

        Healthy means it commits through a leader, so the running members with it must
        make a quorum: after ``stop_all``, use ``start_all``.
        """
        m = self._members[i]
        if m.proc is not None:
            raise EtcdClusterError(f"restart: {m.name} is running")
        self._spawn(m, state="existing")
        self._wait_healthy([i])

    def stop_all(self) -> None:
        """SIGKILL every member (quorum lost); the data dirs stay for ``start_all``."""
        _reap(self._members)

    def start_all(self) -> None:
        """Start every stopped member on its data dir; wait until all members are healthy."""
        for m in self._members:
            if m.proc is None:
                self._spawn(m, state="existing")
        self._wait_healthy(range(len(self._members)))

    def _spawn(self, m: _Member, *, state: str) -> None:
        argv = [
            "etcd", f"--name={m.name}", f"--data-dir={m.data_dir}",
            f"--listen-client-urls={m.client_url}", f"--advertise-client-urls={m.client_url}",
            f"--listen-peer-urls={m.peer_url}", f"--initial-advertise-peer-urls={m.peer_url}",
            f"--initial-cluster={self._initial_cluster}",
            f"--initial-cluster-token={self.token}", f"--initial-cluster-state={state}",
            *_TUNING,
        ]
        if self.tls:
            argv += [
                f"--cert-file={self._server_cert}", f"--key-file={self._server_key}",
                f"--trusted-ca-file={self.ca}", "--client-cert-auth",
                f"--peer-cert-file={self._server_cert}", f"--peer-key-file={self._server_key}",
                f"--peer-trusted-ca-file={self.ca}", "--peer-client-cert-auth",
            ]
        with m.log.open("ab") as log:
            log.write(f"==== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            m.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, env=_env("ETCD"),
                                      start_new_session=True)

    def _wait_serving_peers(self, m: _Member, deadline: float) -> None:
        context = None
        if self.tls:
            # Peers check a peer's cert against its address: the server cert has the SAN.
            assert self._server_cert is not None and self._server_key is not None
            context = ssl.create_default_context(cafile=self.ca)
            context.load_cert_chain(self._server_cert, self._server_key)
        # Straight to 127.0.0.1, whatever http_proxy says.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=context))
        while True:
            self._check_running([m])
            try:
                with opener.open(f"{m.peer_url}/version", timeout=1):
                    return
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise EtcdClusterError(f"{m.name} does not serve its peer port after "
                                           f"{HEALTH_TIMEOUT:g}s: {exc}{self._log_tails()}"
                                           ) from exc
            time.sleep(0.02)

    def _wait_healthy(self, indices: Iterable[int], deadline: float | None = None) -> None:
        members = [self._members[i] for i in indices]
        endpoints = ",".join(m.client_url for m in members)
        if deadline is None:
            deadline = time.monotonic() + HEALTH_TIMEOUT
        last = ""
        while True:
            self._check_running(members)
            # etcdctl's gRPC dial backs off for 1 s after a refused connection: probe only
            # once every client port accepts.
            if not all(map(_accepts, members)):
                if time.monotonic() >= deadline:
                    raise EtcdClusterError(f"a client port is still closed after "
                                           f"{HEALTH_TIMEOUT:g}s{self._log_tails()}")
                time.sleep(0.02)
                continue
            result = self._run(["endpoint", "health", "--dial-timeout=1s",
                                "--command-timeout=1s"], endpoints=endpoints, user=None,
                               input=None, timeout=5)
            if result.returncode == 0:
                return
            last = (result.stderr or result.stdout).strip()
            if time.monotonic() >= deadline:
                raise EtcdClusterError(
                    f"{', '.join(m.name for m in members)} not healthy after "
                    f"{HEALTH_TIMEOUT:g}s; last: {last}{self._log_tails()}")
            time.sleep(0.1)

    def _check_running(self, members: Iterable[_Member]) -> None:
        for m in members:
            if m.proc is None or m.proc.poll() is not None:
                code = None if m.proc is None else m.proc.returncode
                raise EtcdClusterError(f"{m.name} is not running (exit status {code})"
                                       f"{self._log_tails()}")

    def _log_tails(self) -> str:
        parts = []
        for m in self._members:
            try:
                lines = m.log.read_text(errors="replace").splitlines()[-LOG_TAIL:]
            except FileNotFoundError:
                lines = ["(no log)"]
            parts.append(f"\n--- {m.log} (last {LOG_TAIL} lines)\n" + "\n".join(
                line if len(line) <= 400 else line[:400] + "..." for line in lines))
        return "".join(parts)

    # -- etcdctl -----------------------------------------------------------------------------

    def etcdctl(self, *args: str, user: str | None = None, input: str | None = None) -> str:
        """Run ``etcdctl ARGS`` against every endpoint; its stdout.

        ``user`` is ``NAME:PASSWORD`` (``--user``); once ``enable_auth`` ran, root's is the
        default. With tls, the client cert identifies the caller.
        """
        result = self._run(list(args), endpoints=",".join(self.endpoints), user=user,
                           input=input, timeout=ETCDCTL_TIMEOUT)
        if result.returncode != 0:
            raise EtcdClusterError(f"etcdctl {' '.join(args)}: exit status "
                                   f"{result.returncode}: {result.stderr.strip()}")
        return result.stdout

    def _run(self, args: Sequence[str], *, endpoints: str, user: str | None,
             input: str | None, timeout: float) -> subprocess.CompletedProcess[str]:
        argv = ["etcdctl", f"--endpoints={endpoints}"]
        if self.tls:
            argv += [f"--cacert={self.ca}", f"--cert={self.client_cert}",
                     f"--key={self.client_key}"]
        if user is None and self.root_password is not None:
            user = f"root:{self.root_password}"
        if user is not None:
            argv.append(f"--user={user}")
        try:
            return subprocess.run([*argv, *args], input=input, capture_output=True, text=True,
                                  env=_env("ETCDCTL"), timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise EtcdClusterError(f"etcdctl {' '.join(args)}: no answer in {timeout:g}s"
                                   ) from exc

    def compact(self) -> int:
        """Compact to the current revision; that revision."""
        header = json.loads(self.etcdctl("get", "compact-probe", "-w", "json"))
        revision = int(header["header"]["revision"])
        try:
            self.etcdctl("compact", str(revision))
        except EtcdClusterError as exc:
            # Nothing was written since the last compaction to this revision: already done.
            if "required revision has been compacted" not in str(exc):
                raise
        return revision

    def enable_auth(self) -> str:
        """Create user root (random password, role root), turn auth on; root's password.

        From then on ``etcdctl`` calls without ``user`` run as root.
        """
        password = secrets.token_urlsafe(16)
        self.etcdctl("user", "add", "root", f"--new-user-password={password}",
                     "--interactive=false")
        self.etcdctl("user", "grant-role", "root", "root")
        self.etcdctl("auth", "enable")
        self.root_password = password
        return password

    # -- certificates ------------------------------------------------------------------------

    def make_client_cert(self, cn: str) -> tuple[Path, Path]:
        """A client cert and key with common name ``cn``, signed by the cluster's CA."""
        if not self.tls:
            raise EtcdClusterError("make_client_cert: the cluster runs without tls")
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", cn)
        return self._sign(cn, self.base / "certs" / "clients" / stem, server=False)

    def _make_ca_and_server(self) -> None:
        certs = self.base / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        self.ca = certs / "ca.crt"
        _openssl("req", "-x509", *_new_key_args(certs / "ca.key", "etcd-test-ca"),
                 "-out", self.ca, "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        # One cert for both ends of peer TLS, and the server end of client TLS.
        self._server_cert, self._server_key = self._sign("etcd-server", certs / "server",
                                                         server=True)

    def _sign(self, cn: str, stem: Path, *, server: bool = False) -> tuple[Path, Path]:
        assert self.ca is not None
        stem.parent.mkdir(parents=True, exist_ok=True)
        cert, key = stem.with_name(stem.name + ".crt"), stem.with_name(stem.name + ".key")
        usage = "serverAuth,clientAuth" if server else "clientAuth"
        extra = ("-addext", "subjectAltName=IP:127.0.0.1") if server else ()
        _openssl("req", "-x509", *_new_key_args(key, cn), "-out", cert,
                 "-CA", self.ca, "-CAkey", self.ca.with_suffix(".key"),
                 "-addext", "basicConstraints=critical,CA:FALSE",
                 "-addext", f"extendedKeyUsage={usage}", *extra)
        return cert, key
