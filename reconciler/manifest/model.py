"""The manifest format v1: pydantic models at the edge of the program.

The loader (``manifest.loader``) parses YAML into these models; everything past it holds
them as frozen, validated values. Host paths (``rootfs``, ``bundle``, a bind mount's
``source``) are resolved against the manifest file's directory through the validation
context key ``base_dir``, as Compose does.

``spec_hash`` is the identity of everything that needs a new container to change: it
leaves out what can be changed live (mounts, resources, run state, labels, annotations).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import signal
from collections.abc import Sequence
from enum import Enum
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field, ValidationInfo

from reconciler.manifest import probes, quantity
from reconciler.manifest.base import _Model as _Model  # kube, network, policy: model._Model

API_VERSION = "reconciler/v1"
HASH_VERSION = "v1"

NAME_RE = _NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_RE = re.compile(r"^[^=\x00]+$")
_IMAGE_RE = re.compile(
    r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
CAPABILITIES = frozenset(
    """CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
    LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
    SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
    SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
    MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
    CHECKPOINT_RESTORE""".split()
)


def _host_path(value: str, info: ValidationInfo) -> str:
    if not value or "\x00" in value:
        raise ValueError("must be a non-empty host path")
    base = (info.context or {}).get("base_dir")
    if not os.path.isabs(value):
        if base is None:
            raise ValueError(f"relative path {value!r} needs a manifest file to resolve against")
        value = os.path.join(base, value)
    return os.path.normpath(value)


def _container_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path inside the container, got {value!r}")
    if "\x00" in value:
        raise ValueError("must not contain NUL")
    parts = value.split("/")
    if ".." in parts:
        raise ValueError(f"must not contain '..', got {value!r}")
    return os.path.normpath(value) if value != "/" else value


def _quantity_text(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be a quantity such as 64Mi or 500m, not a boolean")
    if isinstance(value, int | float):
        return str(value)
    return value


def _quantity(value: str) -> str:
    if quantity.parse(value) <= 0:
        raise ValueError(f"must be greater than zero, got {value!r}")
    return value


def _ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None
    return value


IPAddress = Annotated[str, pydantic.AfterValidator(_ip_address)]
HostPath = Annotated[str, pydantic.AfterValidator(_host_path)]
ContainerPath = Annotated[str, pydantic.AfterValidator(_container_path)]
Quantity = Annotated[
    str,
    pydantic.BeforeValidator(_quantity_text),
    pydantic.AfterValidator(_quantity),
    pydantic.WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": r"^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[A-Za-z]*)$"},
                   {"type": "number", "exclusiveMinimum": 0}]}
    ),
]
_Lax = pydantic.Strict(False)
StringMap = dict[str, str]


class RestartPolicy(str, Enum):
    """When to start a container again after its process exits: Always (on any exit),
    OnFailure (on a non-zero exit) or Never."""

    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"


class RunState(str, Enum):
    """The run state to keep a container in: Running, Paused (frozen) or Stopped."""

    RUNNING = "Running"
    PAUSED = "Paused"
    STOPPED = "Stopped"


class PullPolicy(str, Enum):
    """When to pull an image into the local store: IfNotPresent (only when missing),
    Always, or Never (the local store only)."""

    IF_NOT_PRESENT = "IfNotPresent"
    ALWAYS = "Always"
    NEVER = "Never"


class Metadata(_Model):
    """The container's name, labels and annotations."""

    name: str = Field(description="The container's name, unique across all manifests: a "
                                  "DNS-1123 label ([a-z0-9-], 1..63 characters). Its runc "
                                  "containers are NAME.GENERATION (web.1).")
    labels: StringMap = Field(
        default_factory=dict, description="Free-form key/value pairs for selecting and "
                                          "listing containers. Changed live, never restarts "
                                          "the container. Default {}.")
    annotations: StringMap = Field(
        default_factory=dict, description="Free-form notes, not interpreted (but "
                                          "reconciler.io/restartedAt, which `reconciler "
                                          "restart` sets). Changed live. Default {}.")

    @pydantic.field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > 63 or not _NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a DNS-1123 label: use 1 to 63 lowercase letters, digits"
                " and '-', starting and ending with a letter or digit"
            )
        return value


class EnvVar(_Model):
    """An environment variable of the container's process."""

    name: str = Field(description="The variable's name: non-empty, without '='.")
    value: str = Field("", description="The value (a string: quote numbers); default empty. "
                                       "It wins over the image's value and over an earlier "
                                       "entry of the same name.")

    @pydantic.field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _ENV_RE.match(value):
            raise ValueError(f"{value!r} is not a valid variable name (non-empty, no '=')")
        return value


class User(_Model):
    """The numeric user and groups the process runs as."""

    uid: int = Field(0, ge=0, le=2**32 - 2,
                     description="User ID, 0 to 4294967294; default 0 (root).")
    gid: int = Field(0, ge=0, le=2**32 - 2,
                     description="Primary group ID, 0 to 4294967294; default 0.")
    additional_gids: list[Annotated[int, Field(ge=0, le=2**32 - 2)]] = Field(
        default_factory=list, description="Supplementary group IDs; default [].")


class BindMount(_Model):
    """A host file or directory bind-mounted into the container."""

    type: Literal["bind"] = Field(description="bind: mount a host path.")
    source: HostPath = Field(
        description="The host file or directory to mount; a relative path is resolved "
                    "against the manifest file's directory. Checked when the container is "
                    "created, not by validation.")
    destination: ContainerPath = Field(
        description="Where it appears in the container: an absolute path without '..', "
                    "not '/', and not the destination of another mount.")
    read_only: bool = Field(False, description="Mount it read-only; default false.")


class TmpfsMount(_Model):
    """A new, empty tmpfs (memory-backed) mounted into the container."""

    type: Literal["tmpfs"] = Field(description="tmpfs: mount a new in-memory filesystem.")
    destination: ContainerPath = Field(
        description="Where the tmpfs appears in the container: an absolute path without "
                    "'..', not '/', and not the destination of another mount.")
    size_limit: Quantity | None = Field(
        None, description="Maximum size, e.g. 64Mi; unset: the kernel's default (half "
                          "the RAM).")
    read_only: bool = Field(False, description="Mount it read-only; default false.")


Mount = Annotated[BindMount | TmpfsMount, Field(discriminator="type")]


class Resources(_Model):
    """Limits on the container's cgroup, each optional; changed on the running container."""

    memory: Quantity | None = Field(
        None, description="Memory limit in bytes, e.g. 64Mi (rounded up to a byte); unset: "
                          "no limit.")
    cpu: Quantity | None = Field(
        None, description="CPU limit in cores, e.g. 500m or 1.5 (a CFS quota); unset: no "
                          "limit.")
    pids: int | None = Field(None, ge=1, description="Maximum number of processes (at least "
                                                     "1); unset: no limit.")

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else quantity.to_bytes(self.memory)

    @property
    def cpu_millicores(self) -> int | None:
        return None if self.cpu is None else quantity.to_millicores(self.cpu)


def _capability(value: str) -> str:
    name = value.upper().removeprefix("CAP_")
    if name != "ALL" and name not in CAPABILITIES:
        raise ValueError(f"{value!r} is not a Linux capability (e.g. NET_ADMIN, SYS_TIME)")
    return name


Capability = Annotated[str, pydantic.AfterValidator(_capability)]


class Capabilities(_Model):
    """Linux capabilities to add to or drop from the default set (Docker's), written
    NET_ADMIN or CAP_NET_ADMIN in any case, or ALL."""

    add: list[Capability] = Field(
        default_factory=list, description="Capabilities to grant besides the default set; "
                                          "ALL grants every one not dropped. Default [].")
    drop: list[Capability] = Field(
        default_factory=list, description="Capabilities to take from the default set; ALL "
                                          "leaves only those added. Default [].")


class SeccompType(str, Enum):
    """The kind of seccomp filter: RuntimeDefault, Unconfined or Localhost."""

    RUNTIME_DEFAULT = "RuntimeDefault"
    UNCONFINED = "Unconfined"
    LOCALHOST = "Localhost"


class SeccompProfile(_Model):
    """Kubernetes' ``securityContext.seccompProfile``: the default profile (the daemon's,
    native architecture only), none, or a profile file on this host."""

    type: Annotated[SeccompType, _Lax] = Field(
        description="RuntimeDefault (the daemon's profile, native architecture only), "
                    "Unconfined (no filter), or Localhost (localhostProfile).")
    localhost_profile: str | None = Field(
        None, description="Localhost only: a Docker/Podman-format profile file, relative to "
                          "the daemon's --seccomp-root, or an absolute path.")

    @pydantic.model_validator(mode="after")
    def _localhost(self) -> SeccompProfile:
        if self.type is SeccompType.LOCALHOST:
            path = self.localhost_profile
            if not path or "\x00" in path or ".." in path.split("/"):
                raise ValueError("type Localhost needs localhostProfile: a file name under the "
                                 "daemon's --seccomp-root (no '..'), or an absolute path")
        elif self.localhost_profile is not None:
            raise ValueError(f"localhostProfile is only for type Localhost, not {self.type.value}")
        return self


def _signal(value: str) -> str:
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name not in signal.Signals.__members__:
        raise ValueError(f"{value!r} is not a signal name (e.g. SIGTERM, SIGINT, SIGQUIT)")
    return name


PortProtocol = Literal["TCP", "UDP", "SCTP"]


class Attachment(_Model):
    """One network a ``kind: Container`` joins."""

    name: str = Field(description="A network's name (``default``, or a Network manifest's).")

    @pydantic.field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > 63 or not _NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a network name (a DNS-1123 label)")
        return value


class Port(_Model):
    """A container port published on the host (the CNI portmap plugin: iptables DNAT)."""

    container_port: int = Field(ge=1, le=65535, description="The port in the container.")
    host_port: int = Field(ge=1, le=65535, description="The port on the host.")
    host_ip: IPAddress | None = Field(None, alias="hostIP",
                                      description="Publish on this host address only; "
                                                  "default: every address, loopback included.")
    protocol: PortProtocol = Field("TCP", description="TCP (default), UDP or SCTP.")

    @property
    def key(self) -> tuple[int, str, str]:
        return self.host_port, self.protocol, self.host_ip or ""


def check_ports(ports: Sequence[Port]) -> None:
    """No host port twice (by port, protocol and address; an unset address is every one)."""
    seen: dict[tuple[int, str], list[str]] = {}
    for i, p in enumerate(ports):
        ips = seen.setdefault((p.host_port, p.protocol), [])
        ip = "" if p.host_ip in (None, "0.0.0.0", "::") else str(ipaddress.ip_address(p.host_ip))  # noqa: S104
        if ip in ips or "" in ips or (ip == "" and ips):
            raise ValueError(f"ports[{i}]: host port {p.host_port}/{p.protocol} is published"
                             " twice")
        ips.append(ip)


class Dependency(_Model):
    """Another object this one waits for (compose's depends_on)."""

    name: str = Field(description="A Container's name, or pod/NAME (pod/NAMESPACE/NAME) for "
                                  "a v1 Pod.")
    condition: Literal["Started", "Ready", "Completed"] = Field(
        "Started", description="Started (its containers run), Ready (they are READY) or "
                               "Completed (they exited 0); default Started.")
    restart: bool = Field(False, description="Restart this object when that one is "
                                             "restarted or made again; default false.")

    @pydantic.field_validator("name")
    @classmethod
    def _ref(cls, value: str) -> str:
        parts = value.split("/")
        if parts[0] == "pod" and len(parts) in (2, 3):
            names = parts[1:]
        elif len(parts) == 1:
            names = parts
        else:
            names = []
        if not names or not all(len(n) <= 63 and _NAME_RE.match(n) for n in names):
            raise ValueError(f"{value!r} is not a Container's name, pod/NAME or "
                             "pod/NAMESPACE/NAME")
        return value


class UpdateLock(_Model):
    """A file the app holds while a restart would hurt it (balena's updates.lock)."""

    path: ContainerPath = Field(description="The lock file, a path inside the container "
                                            "(e.g. in a volume it writes).")
    timeout_seconds: int | None = Field(
        None, ge=1, description="How long a held lock may delay a disruptive change; "
                                "unset: for as long as it is held.")


class UpdateStrategy(_Model):
    """How a change that needs a new instance is made."""

    type: Literal["Recreate", "MakeBeforeBreak"] = Field(
        "Recreate", description="Recreate (default): stop the old, then make the new. "
                                "MakeBeforeBreak: make the new beside the old, move its ports "
                                "and name to it once it is ready, then stop the old.")
    progress_deadline_seconds: int = Field(
        600, ge=1, le=86400, description="MakeBeforeBreak: a new instance not ready by then "
                                         "is deleted and the old one keeps running "
                                         "(UpdateFailed); default 600.")


class Spec(_Model):
    """What to run and how. Exactly one of rootfs, bundle and image. mounts, resources and
    state are changed on the running container; any other change replaces the container
    with a new instance."""

    rootfs: HostPath | None = Field(
        None, description="A host directory holding the root filesystem, relative to the "
                          "manifest file's directory. One of rootfs, bundle, image.")
    bundle: HostPath | None = Field(
        None, description="An OCI bundle directory on the host, relative to the manifest "
                          "file's directory. One of rootfs, bundle, image.")
    image: str | None = Field(
        None, description="An image from the local image store, e.g. busybox:latest or "
                          "NAME@sha256:...; its entrypoint, cmd, env, workingDir, user and "
                          "stop signal are the defaults. One of rootfs, bundle, image.")
    image_pull_policy: Annotated[PullPolicy, _Lax] = Field(
        PullPolicy.IF_NOT_PRESENT,
        description="When to pull image: IfNotPresent (default), Always or Never.")
    command: list[str] | None = Field(
        None, description="The program and its first arguments; replaces the image's "
                          "entrypoint, as in Kubernetes. If given, non-empty with a non-empty "
                          "first item.")
    args: list[str] | None = Field(
        None, description="Arguments after command (or after the image's entrypoint); "
                          "replaces the image's cmd.")
    env: list[EnvVar] = Field(
        default_factory=list, description="Environment variables, over the image's (a later "
                                          "entry wins); PATH and HOSTNAME get defaults. "
                                          "Default [].")
    working_dir: ContainerPath | None = Field(
        None, description="The process's working directory, an absolute container path; "
                          "default: the image's, else /.")
    user: User | None = Field(
        None, description="The numeric user and groups the process runs as; default: the "
                          "image's user, else root (0:0).")
    supplemental_groups: list[Annotated[int, Field(ge=0, le=2**32 - 2)]] = Field(
        default_factory=list, description="More groups for the process, added to those of "
                                          "the user it runs as (the manifest's or the image's).")
    hostname: str | None = Field(
        None, description="The container's hostname, a DNS-1123 label; default: the "
                          "container's name.")
    mounts: list[Mount] = Field(
        default_factory=list, description="Bind and tmpfs mounts; no two at one "
                                          "destination, none at '/'. Changed on the running "
                                          "container. Default [].")
    resources: Resources = Field(
        default_factory=lambda: Resources(),
        description="Memory, CPU and pids limits; changed on the running container. "
                    "Default: no limits.")
    restart_policy: Annotated[RestartPolicy, _Lax] = Field(
        RestartPolicy.ALWAYS,
        description="Whether to start the container again when its process exits: Always "
                    "(default, on any exit), OnFailure (non-zero exit) or Never.")
    state: Annotated[RunState, _Lax] = Field(
        RunState.RUNNING,
        description="The run state to keep the container in: Running (default), Paused or "
                    "Stopped. Changed on the running container.")
    stop_signal: Annotated[str, pydantic.AfterValidator(_signal)] = Field(
        "SIGTERM", description="The signal that asks the process to stop (TERM, sigterm and "
                               "SIGTERM are the same); default SIGTERM, or the image's "
                               "StopSignal when not given.")
    tty: bool = Field(False, description="Give the process a terminal (conmon holds the "
                                         "pty; the log is what the process prints on it).")
    stdin: bool = Field(False, description="Keep the process's stdin open (it never reads "
                                           "end-of-file) rather than /dev/null.")
    pre_stop: list[str] | None = Field(
        None, description="A command run inside the container before its stop signal, "
                          "within the grace period (Kubernetes' lifecycle.preStop.exec).")
    termination_grace_period_seconds: int = Field(
        10, ge=0, le=3600, description="Seconds to wait after the stop signal before SIGKILL, "
                                       "0 to 3600; default 10 (Kubernetes' is 30).")
    host_network: bool = Field(
        False, description="Share the host's network namespace instead of getting a private "
                           "one; default false.")
    privileged: bool = Field(
        False, description="Every capability, no seccomp filter, no masked or read-only "
                           "/proc and /sys paths, and every host device: the host's root in "
                           "all but namespaces. A daemon policy allows it only with "
                           "allow.privileged. Default false.")
    host_users: bool = Field(
        True, description="false: a user namespace of its own, its root an unprivileged "
                          "host uid from a range the daemon gives this object alone "
                          "(Kubernetes' hostUsers). Not with hostNetwork. Default true.")
    networks: list[Attachment] | None = Field(
        None, description="The networks it joins (each gives an interface, eth0 first, and "
                          "an address kept for as long as the object exists); unset: the "
                          "default network; []: loopback only. Changed on the running "
                          "container. Not with hostNetwork.")
    ports: list[Port] = Field(
        default_factory=list, description="Container ports published on the host; with "
                                          "hostNetwork, hostPort must equal containerPort. "
                                          "Changed on the running container. Default [].")
    depends_on: list[Dependency] = Field(
        default_factory=list, description="Objects to wait for before this one is made: "
                                          "created in order, deleted in reverse order. "
                                          "Changed without a restart. Default [].")
    update_strategy: UpdateStrategy = Field(
        default_factory=UpdateStrategy,
        description="Recreate (default) or MakeBeforeBreak, with its progressDeadlineSeconds."
                    " Changed without a restart.")
    update_lock: UpdateLock | None = Field(
        None, description="While this file exists in the container (and the PID it holds, "
                          "if any, is alive), a recreate, a restart for a change, a stop or "
                          "a delete waits; `reconciler unlock NAME --force` or "
                          "timeoutSeconds overrides it. Changed without a restart.")
    liveness_probe: probes.Probe | None = Field(
        None, description="Kubernetes' livenessProbe: failureThreshold failures in a row "
                          "stop the container (its probe's or the spec's grace), and the "
                          "restart policy restarts it. Changed on the running container.")
    readiness_probe: probes.Probe | None = Field(
        None, description="Kubernetes' readinessProbe: whether the container is READY; "
                          "without one, a running container is. Changed on the running "
                          "container.")
    startup_probe: probes.Probe | None = Field(
        None, description="Kubernetes' startupProbe: holds the other probes until it "
                          "succeeds; failureThreshold failures stop the container as a "
                          "liveness failure does. Changed on the running container.")
    read_only_root_filesystem: bool = Field(
        False, description="Mount the root filesystem read-only; default false.")
    capabilities: Capabilities = Field(
        default_factory=Capabilities,
        description="Capabilities to add to or drop from the default set (Docker's); "
                    "default: the default set.")
    allow_privilege_escalation: bool = Field(
        False, description="Let a process gain privileges (setuid binaries, file "
                           "capabilities); false (the default, unlike Kubernetes) sets "
                           "no_new_privs.")
    seccomp_profile: SeccompProfile | None = Field(
        None, description="The seccomp filter; unset means RuntimeDefault.")

    @pydantic.field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not _IMAGE_RE.match(value):
            raise ValueError(f"{value!r} is not an image reference (e.g. busybox:latest)")
        return value

    @pydantic.field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 63 or not _NAME_RE.match(value.lower())):
            raise ValueError(f"{value!r} is not a valid hostname (a DNS-1123 label)")
        return value

    @pydantic.field_validator("command")
    @classmethod
    def _command(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not value[0]):
            raise ValueError("must name a program: a non-empty list with a non-empty first item")
        return value

    @pydantic.model_validator(mode="after")
    def _root_source(self) -> Spec:
        given = [k for k in ("rootfs", "bundle", "image") if getattr(self, k) is not None]
        if len(given) != 1:
            what = "none" if not given else " and ".join(given)
            raise ValueError(f"needs exactly one root source of rootfs, bundle, image; got {what}")
        seen: set[str] = set()
        for mount in self.mounts:
            if mount.destination in seen:
                raise ValueError(f"two mounts at destination {mount.destination!r}")
            if mount.destination == "/":
                raise ValueError("a mount cannot replace the root '/'")
            seen.add(mount.destination)
        if self.host_network and self.networks:
            raise ValueError("networks: a container with hostNetwork joins no other network")
        if not self.host_users and self.host_network:
            raise ValueError("hostUsers: false needs a network namespace of its own, not"
                             " hostNetwork")
        if self.privileged and not self.host_users:
            raise ValueError("privileged: a privileged container runs with the host's users,"
                             " not hostUsers: false")
        if self.privileged and "allow_privilege_escalation" in self.model_fields_set \
                and not self.allow_privilege_escalation:
            raise ValueError("privileged: allowPrivilegeEscalation cannot be false in a"
                             " privileged container (Kubernetes refuses it too)")
        for i, p in enumerate(self.ports):
            if self.host_network and p.host_port != p.container_port:
                raise ValueError(f"ports[{i}]: with hostNetwork, hostPort must equal"
                                 f" containerPort {p.container_port}")
        check_ports(self.ports)
        for field, probe in (("livenessProbe", self.liveness_probe),
                             ("readinessProbe", self.readiness_probe),
                             ("startupProbe", self.startup_probe)):
            if probe is None:
                continue
            if isinstance(probe.port, str):
                raise ValueError(f"{field}: port {probe.port!r} must be a number (a "
                                 "Container has no named ports)")
            if field != "readinessProbe" and probe.success_threshold != 1:
                raise ValueError(f"{field}: successThreshold must be 1")
            if field == "readinessProbe" and probe.termination_grace_period_seconds:
                raise ValueError("readinessProbe: terminationGracePeriodSeconds is not "
                                 "allowed (a readiness failure stops nothing)")
        names = [a.name for a in self.networks or ()]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"networks: {name!r} is named twice")
        return self


class Container(_Model):
    """One ``kind: Container`` document."""

    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion",
                                                  description="Must be reconciler/v1.")
    kind: Literal["Container"] = Field(description="Must be Container.")
    metadata: Metadata = Field(description="Its name, labels and annotations.")
    spec: Spec = Field(description="What to run and how.")

    @property
    def name(self) -> str:
        return self.metadata.name


# Fields that can change on a running container; they do not count in the spec hash.
# The one table of what changes in place (same container, same init PID): JSON-pointer
# prefixes of the manifest. Everything else in a manifest needs a new instance.
LIVE_PATHS = ("/spec/mounts", "/spec/resources", "/spec/state", "/spec/networks",
              "/spec/ports", "/spec/livenessProbe", "/spec/readinessProbe",
              "/spec/startupProbe", "/spec/dependsOn", "/spec/updateLock",
              "/spec/updateStrategy", "/metadata/labels",
              "/metadata/annotations")
LIVE_SPEC_FIELDS = frozenset(  # field names (model_dump's exclude), not the camelCase keys
    name for name, f in Spec.model_fields.items()
    if f"/spec/{f.alias or name}" in LIVE_PATHS)


def canonical_json(container: Container) -> str:
    """The manifest as recorded and compared: compact JSON, defaults left out, keys sorted.
    Equal text means nothing to change live."""
    return json.dumps(container.model_dump(mode="json", exclude_defaults=True),
                      sort_keys=True, separators=(",", ":"))


# The one annotation that is not live: ``reconciler restart NAME`` sets it (as ``kubectl
# rollout restart`` sets kubectl.kubernetes.io/restartedAt) to get a new instance with
# nothing else changed; in the file, so a daemon restart does not repeat it.
RESTARTED_AT = "reconciler.io/restartedAt"


def identity(container: Container) -> dict[str, Any]:
    """The part of a manifest whose change needs a new container, as plain JSON."""
    spec = container.spec.model_dump(mode="json", exclude_defaults=True,
                                     exclude=set(LIVE_SPEC_FIELDS))
    doc: dict[str, Any] = {"name": container.metadata.name, "spec": spec}
    restarted = container.metadata.annotations.get(RESTARTED_AT)
    if restarted is not None:  # absent: the hash of every other manifest is unchanged
        doc["restartedAt"] = restarted
    return doc


def spec_hash(container: Container, *, extra: dict[str, Any] | None = None) -> str:
    """A versioned, stable hash of ``identity`` (plus e.g. a resolved image digest).

    ``exclude_defaults`` keeps the hash unchanged when a later version adds a field with
    a default, or when a manifest spells out a default value.
    """
    doc = identity(container)
    if extra:
        doc["extra"] = extra
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return f"{HASH_VERSION}-{hashlib.sha256(blob).hexdigest()[:20]}"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of one document, for editors and CI linters."""
    schema = Container.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "reconciler Container manifest (reconciler/v1)"
    return schema
