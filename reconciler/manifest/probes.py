"""Probes: Kubernetes' liveness, readiness and startup probe models, for both kinds.

    manifest.model (kind: Container) and manifest.kube (v1 Pod) ─▶ probes (this module)
        ─▶ daemon.probes (runs them)

Pure pydantic models with Kubernetes' field names, defaults and checks. A v1 Pod's port
may be a name (the container's ``ports[].name``), resolved when the pod is expanded; a
``kind: Container``'s is a number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Annotated, ClassVar, Literal

import pydantic
from pydantic import Field

from reconciler.manifest.base import _Model

_HEADER_RE = re.compile(r"^[-!#$%&'*+.^_`|~0-9A-Za-z]+$")
_IANA_SVC_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a port number from 1 to 65535, got {value}")
    return value


def _port_name(value: str) -> str:
    """IANA_SVC_NAME: what Kubernetes allows as a named port."""
    if (len(value) > 15 or not _IANA_SVC_RE.match(value) or "--" in value
            or not any(c.isalpha() for c in value)):
        raise ValueError(f"{value!r} is not a port name: at most 15 lowercase letters, digits"
                         " and '-', with a letter, no '--', not starting or ending with '-'")
    return value


def _port_or_name(value: int | str) -> int | str:
    return _port(value) if isinstance(value, int) else _port_name(value)


def matching(pattern: re.Pattern[str], words: str, *, longest: int = 1 << 16
              ) -> Callable[[str], str]:
    """A validator: ``value`` matches ``pattern`` and is at most ``longest`` long."""
    def check(value: str) -> str:
        if len(value) > longest or not pattern.match(value):
            raise ValueError(f"{value!r} is not {words}")
        return value
    return check


HeaderName = Annotated[str, pydantic.AfterValidator(matching(_HEADER_RE, "an HTTP header name"))]
Port = Annotated[int, pydantic.AfterValidator(_port)]
PortName = Annotated[str, pydantic.AfterValidator(_port_name)]
PortOrName = Annotated[int | str, pydantic.AfterValidator(_port_or_name)]


def one_of(obj: pydantic.BaseModel, fields: Iterable[str], what: str) -> str:
    """The alias of the one field of ``fields`` that is set; a ValueError otherwise."""
    aliases = {n: type(obj).model_fields[n].alias or n for n in fields}
    given = [a for n, a in aliases.items() if getattr(obj, n) is not None]
    if len(given) != 1:
        names = ", ".join(aliases.values())
        got = " and ".join(given) if given else "none"
        raise ValueError(f"{what} needs exactly one of {names}; got {got}")
    return given[0]


class ExecAction(_Model):
    """A command run inside the container."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    command: list[str] = Field(description="Run in the container, not in a shell.")

    @pydantic.field_validator("command")
    @classmethod
    def _command(cls, value: list[str]) -> list[str]:
        if not value or not value[0]:
            raise ValueError("must name a program: a non-empty list with a non-empty first item")
        return value


class HTTPHeader(_Model):
    """A header sent with a probe's HTTP request."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    name: HeaderName = Field(description="The header's name, e.g. Accept.")
    value: str = Field(description="The header's value.")


_PORT = "A port number, or the name of one of the container's ports."


class HTTPGetAction(_Model):
    """A probe that sends an HTTP GET; a status from 200 to 399 is success."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"protocol"})

    path: str = Field("/", description="The request's path; default /.")
    port: PortOrName = Field(description=_PORT)
    host: str | None = Field(None, description="The host to connect to; default: the pod's "
                                               "IP.")
    scheme: Literal["HTTP", "HTTPS"] = Field("HTTP", description="HTTP (default) or HTTPS "
                                                                 "(certificate not checked).")
    http_headers: list[HTTPHeader] = Field(default_factory=list,
                                           description="Headers to send; default [].")


class TCPSocketAction(_Model):
    """A probe that opens a TCP connection; connecting is success."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    port: PortOrName = Field(description=_PORT)
    host: str | None = Field(None, description="The host to connect to; default: the pod's "
                                               "IP.")


class GRPCAction(_Model):
    """A probe that calls the gRPC health checking protocol; SERVING is success."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"mode"})

    port: Port = Field(description="A port number (not a name).")
    service: str | None = Field(None, description="The service name sent in the health "
                                                  "check request; default empty.")


class Probe(_Model):
    """A liveness, readiness or startup probe: exactly one of exec, httpGet, tcpSocket,
    grpc, with Kubernetes' fields and defaults."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    exec: ExecAction | None = Field(None, description="Run a command in the container; exit "
                                                      "status 0 is success.")
    http_get: HTTPGetAction | None = Field(None, description="Send an HTTP GET request.")
    tcp_socket: TCPSocketAction | None = Field(None, description="Open a TCP connection.")
    grpc: GRPCAction | None = Field(None, description="Call the gRPC health check.")
    initial_delay_seconds: int = Field(
        0, ge=0, description="Seconds after the container starts before the first probe; "
                             "default 0.")
    period_seconds: int = Field(10, ge=1, description="Seconds between probes, at least 1; "
                                                      "default 10.")
    timeout_seconds: int = Field(1, ge=1, description="Seconds before a probe counts as "
                                                      "failed, at least 1; default 1.")
    success_threshold: int = Field(1, ge=1, description="Successes in a row that count as "
                                   "success; default 1, and must be 1 for liveness and "
                                   "startup.")
    failure_threshold: int = Field(3, ge=1, description="Failures in a row that count as "
                                                        "failure; default 3.")
    termination_grace_period_seconds: int | None = Field(
        None, ge=1, description="The grace period when this probe fails, instead of the "
                                "pod's; not on a readiness probe.")

    @pydantic.model_validator(mode="after")
    def _one(self) -> Probe:
        one_of(self, ("exec", "http_get", "tcp_socket", "grpc"), "a probe")
        return self

    @property
    def port(self) -> int | str | None:
        handler = self.http_get or self.tcp_socket or self.grpc
        return handler.port if handler is not None else None
