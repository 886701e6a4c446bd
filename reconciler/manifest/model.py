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
import json
import os
import re
import signal
from enum import Enum
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo
from pydantic.alias_generators import to_camel

from reconciler.manifest import quantity

API_VERSION = "reconciler/v1"
HASH_VERSION = "v1"

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
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


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
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
    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"


class RunState(str, Enum):
    RUNNING = "Running"
    PAUSED = "Paused"
    STOPPED = "Stopped"


class PullPolicy(str, Enum):
    IF_NOT_PRESENT = "IfNotPresent"
    ALWAYS = "Always"
    NEVER = "Never"


class Metadata(_Model):
    name: str = Field(description="DNS-1123 label: [a-z0-9-], 1..63 characters.")
    labels: StringMap = Field(default_factory=dict)
    annotations: StringMap = Field(default_factory=dict)

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
    name: str
    value: str = ""

    @pydantic.field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _ENV_RE.match(value):
            raise ValueError(f"{value!r} is not a valid variable name (non-empty, no '=')")
        return value


class User(_Model):
    uid: int = Field(0, ge=0, le=2**32 - 2)
    gid: int = Field(0, ge=0, le=2**32 - 2)
    additional_gids: list[Annotated[int, Field(ge=0, le=2**32 - 2)]] = Field(default_factory=list)


class BindMount(_Model):
    type: Literal["bind"]
    source: HostPath
    destination: ContainerPath
    read_only: bool = False


class TmpfsMount(_Model):
    type: Literal["tmpfs"]
    destination: ContainerPath
    size_limit: Quantity | None = None
    read_only: bool = False


Mount = Annotated[BindMount | TmpfsMount, Field(discriminator="type")]


class Resources(_Model):
    memory: Quantity | None = Field(None, description="Memory limit, e.g. 64Mi.")
    cpu: Quantity | None = Field(None, description="CPU limit in cores, e.g. 500m or 1.5.")
    pids: int | None = Field(None, ge=1, description="Maximum number of processes.")

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
    add: list[Capability] = Field(default_factory=list)
    drop: list[Capability] = Field(default_factory=list)


class SeccompType(str, Enum):
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


class Spec(_Model):
    rootfs: HostPath | None = None
    bundle: HostPath | None = None
    image: str | None = None
    image_pull_policy: Annotated[PullPolicy, _Lax] = PullPolicy.IF_NOT_PRESENT
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[EnvVar] = Field(default_factory=list)
    working_dir: ContainerPath | None = None
    user: User | None = None
    supplemental_groups: list[Annotated[int, Field(ge=0, le=2**32 - 2)]] = Field(
        default_factory=list, description="More groups for the process, added to those of "
                                          "the user it runs as (the manifest's or the image's).")
    hostname: str | None = None
    mounts: list[Mount] = Field(default_factory=list)
    resources: Resources = Field(default_factory=lambda: Resources())
    restart_policy: Annotated[RestartPolicy, _Lax] = RestartPolicy.ALWAYS
    state: Annotated[RunState, _Lax] = RunState.RUNNING
    stop_signal: Annotated[str, pydantic.AfterValidator(_signal)] = "SIGTERM"
    tty: bool = Field(False, description="Give the process a terminal (conmon holds the "
                                         "pty; the log is what the process prints on it).")
    stdin: bool = Field(False, description="Keep the process's stdin open (it never reads "
                                           "end-of-file) rather than /dev/null.")
    pre_stop: list[str] | None = Field(
        None, description="A command run inside the container before its stop signal, "
                          "within the grace period (Kubernetes' lifecycle.preStop.exec).")
    termination_grace_period_seconds: int = Field(10, ge=0, le=3600)
    host_network: bool = False
    read_only_root_filesystem: bool = False
    capabilities: Capabilities = Field(default_factory=Capabilities)
    allow_privilege_escalation: bool = Field(
        False, description="Let a process gain privileges (setuid binaries, file "
                           "capabilities); false sets no_new_privs.")
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
        return self


class Container(_Model):
    """One ``kind: Container`` document."""

    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion")
    kind: Literal["Container"]
    metadata: Metadata
    spec: Spec

    @property
    def name(self) -> str:
        return self.metadata.name


# Fields that can change on a running container; they do not count in the spec hash.
# The one table of what changes in place (same container, same init PID): JSON-pointer
# prefixes of the manifest. Everything else in a manifest needs a new instance.
LIVE_PATHS = ("/spec/mounts", "/spec/resources", "/spec/state", "/metadata/labels",
              "/metadata/annotations")
LIVE_SPEC_FIELDS = frozenset(p.split("/")[2] for p in LIVE_PATHS if p.startswith("/spec/"))


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
