"""Kubernetes v1 kinds at the edge: loader → kube models → core.pods (expansion into containers).

``Pod``, ``ConfigMap`` and ``Secret`` documents are accepted as written for a real cluster,
with Kubernetes' defaults and its own validation rules. A real Kubernetes field that
reconciler cannot honour is refused; each model lists those in ``UNSUPPORTED`` so the
loader can say "not supported" rather than "unknown field".
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import ConfigDict, Field
from pydantic.json_schema import models_json_schema

from reconciler.manifest import model, quantity
from reconciler.manifest import probes as _probes
from reconciler.manifest.probes import matching as _matching
from reconciler.manifest.probes import one_of as _one_of

# kube.X as before the probe models moved to manifest/probes.py (shared with our kind)
ExecAction = _probes.ExecAction
GRPCAction = _probes.GRPCAction
HeaderName = _probes.HeaderName
HTTPGetAction = _probes.HTTPGetAction
HTTPHeader = _probes.HTTPHeader
Port = _probes.Port
PortName = _probes.PortName
PortOrName = _probes.PortOrName
Probe = _probes.Probe
TCPSocketAction = _probes.TCPSocketAction

# --- names and small value types ------------------------------------------------------

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_LABEL_RE = re.compile(rf"^{_LABEL}$")
_DNS_SUBDOMAIN_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_QUALIFIED_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIG_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
_SYSCTL_RE = re.compile(r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$")
_MAX_OBJECT_BYTES = 1024 * 1024  # Kubernetes' limit on a ConfigMap's or Secret's data
_MAX_ANNOTATION_BYTES = 256 * 1024


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL_RE.match(value):
        raise ValueError(f"{value!r} is not a DNS-1123 label: use 1 to 63 lowercase letters,"
                         " digits and '-', starting and ending with a letter or digit")
    return value


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN_RE.match(value):
        raise ValueError(f"{value!r} is not a DNS-1123 subdomain: use at most 253 lowercase"
                         " letters, digits, '-' and '.', each part starting and ending with a"
                         " letter or digit")
    return value


def _qualified_name(key: str) -> str:
    """Kubernetes' label and annotation key: ``[prefix/]name``, prefix a DNS subdomain."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        raise ValueError(f"key {key!r}: the prefix before '/' must be a DNS subdomain"
                         " (e.g. example.com)")
    if len(name) > 63 or not _QUALIFIED_RE.match(name):
        raise ValueError(f"key {key!r}: the name must be 1 to 63 characters of letters, digits,"
                         " '-', '_' and '.', starting and ending with a letter or digit")
    return key


def _config_key(key: str) -> str:
    if len(key) > 253 or key in (".", "..") or not _CONFIG_KEY_RE.match(key):
        raise ValueError(f"key {key!r} is not valid: use 1 to 253 letters, digits, '-', '_'"
                         " and '.' (not '.' or '..')")
    return key


def _relative_path(value: str) -> str:
    """Kubernetes' rule for file paths inside a volume: relative, never climbing out."""
    if not value or value.startswith("/") or "\x00" in value:
        raise ValueError(f"must be a relative path, got {value!r}")
    if ".." in value.split("/"):
        raise ValueError(f"must not contain '..', got {value!r}")
    return value


def _file_path(value: str) -> str:
    # the kubelet keeps its own entries (..data, ..2024_01_01...) next to the files
    if _relative_path(value).startswith(".."):
        raise ValueError(f"must not start with '..', got {value!r}")
    return value


def _mode(value: int) -> int:
    if not 0 <= value <= 0o777:
        raise ValueError(f"must be a file mode from 0 to 0777 (octal 0644 is decimal 420),"
                         f" got {value}")
    return value


def _absolute(value: str) -> str:
    if not value.startswith("/") or "\x00" in value or ".." in value.split("/"):
        raise ValueError(f"must be an absolute path without '..', got {value!r}")
    return value


SysctlName = Annotated[str, pydantic.AfterValidator(_matching(
    _SYSCTL_RE, "a sysctl name (e.g. net.ipv4.ip_forward)", longest=253))]
DNSLabel = Annotated[str, pydantic.AfterValidator(_dns_label)]
DNSSubdomain = Annotated[str, pydantic.AfterValidator(_dns_subdomain)]
ConfigKey = Annotated[str, pydantic.AfterValidator(_config_key)]
RelativePath = Annotated[str, pydantic.AfterValidator(_relative_path)]
FilePath = Annotated[str, pydantic.AfterValidator(_file_path)]
AbsolutePath = Annotated[str, pydantic.AfterValidator(_absolute)]
Mode = Annotated[int, pydantic.AfterValidator(_mode)]
Id = Annotated[int, Field(ge=0, le=2**31 - 1)]


# --- metadata -------------------------------------------------------------------------


def _creation_timestamp(value: object) -> None:
    if value is not None:  # only the placeholder `kubectl create --dry-run -o yaml` writes
        raise ValueError("not supported by reconciler: only creationTimestamp: null (as"
                         " kubectl --dry-run writes it) is accepted; remove it")
    return None


class ObjectMeta(model._Model):
    """The object's name, namespace, labels and annotations."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({
        "generateName", "uid", "resourceVersion", "generation", "selfLink", "ownerReferences",
        "finalizers", "managedFields", "deletionTimestamp", "deletionGracePeriodSeconds",
    })

    name: DNSSubdomain = Field(description="The object's name; for a Pod a DNS-1123 label.")
    namespace: DNSLabel = Field("default", description="A DNS-1123 label; default 'default'.")
    labels: model.StringMap = Field(
        default_factory=dict, description="Key/value pairs under Kubernetes' key and value "
                                          "rules; given to every unit of a pod, changed live. "
                                          "Default {}.")
    annotations: model.StringMap = Field(
        default_factory=dict, description="Free-form notes under Kubernetes' key rules, 256 "
                                          "KiB in all; changed live. Default {}.")
    creation_timestamp: Annotated[None, pydantic.BeforeValidator(_creation_timestamp)] = Field(
        None, description="Only null, as written by kubectl --dry-run.")

    @pydantic.field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            _qualified_name(key)
            if len(text) > 63 or not _LABEL_VALUE_RE.match(text):
                raise ValueError(f"label {key!r}: value {text!r} must be empty or 1 to 63"
                                 " letters, digits, '-', '_' and '.', starting and ending"
                                 " with a letter or digit")
        return value

    @pydantic.field_validator("annotations")
    @classmethod
    def _annotations(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            _qualified_name(key)
        size = sum(len(k.encode()) + len(v.encode()) for k, v in value.items())
        if size > _MAX_ANNOTATION_BYTES:
            raise ValueError(f"annotations total {size} bytes; Kubernetes allows 256KiB")
        return value


class _Object(model._Model):
    """What the three kinds share: apiVersion v1, metadata, and the key ``ns/name``."""

    api_version: Literal["v1"] = Field(alias="apiVersion", description="Must be v1.")
    metadata: ObjectMeta = Field(
        description="Name and namespace (which only scopes names here), labels, annotations.")

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def key(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"


# --- ConfigMap and Secret -------------------------------------------------------------


def _check_keys(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        _config_key(key)
    return value


def _base64(value: dict[str, str], *, what: str) -> dict[str, bytes]:
    """Decoded values; Go's decoder (and so Kubernetes') skips line breaks."""
    out = {}
    for key, text in value.items():
        try:
            out[key] = base64.b64decode(text.replace("\n", "").replace("\r", ""), validate=True)
        except (binascii.Error, ValueError):
            # the value is left out of the message: it may be a secret
            raise ValueError(f"key {key!r}: not valid base64 ({what} values are"
                             " base64-encoded)") from None
    return out


def _check_size(items: dict[str, bytes], kind: str) -> None:
    size = sum(len(k) + len(v) for k, v in items.items())
    if size > _MAX_OBJECT_BYTES:
        raise ValueError(f"the data of a {kind} totals {size} bytes; Kubernetes allows 1MiB")


class ConfigMap(_Object):
    """A Kubernetes v1 ConfigMap: keys a pod of its namespace reads as files (a configMap
    volume) or as environment values."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    kind: Literal["ConfigMap"] = Field(description="Must be ConfigMap.")
    data: dict[ConfigKey, str] = Field(
        default_factory=dict, description="UTF-8 values by key (letters, digits, '-', '_', "
                                          "'.'); 1 MiB in all with binaryData. Default {}.")
    binary_data: dict[ConfigKey, str] = Field(
        default_factory=dict, description="Base64-encoded values by key; a key is in data "
                                          "or binaryData, not both. Default {}.")
    immutable: bool | None = Field(
        None, description="Accepted, not enforced: a changed immutable object is applied "
                          "like any other.")

    @pydantic.field_validator("binary_data")
    @classmethod
    def _binary(cls, value: dict[str, str]) -> dict[str, str]:
        _base64(value, what="binaryData")
        return value

    @pydantic.model_validator(mode="after")
    def _disjoint(self) -> ConfigMap:
        both = sorted(set(self.data) & set(self.binary_data))
        if both:
            raise ValueError(f"key {both[0]!r} is in both data and binaryData; use one")
        _check_size(self.items(), "ConfigMap")
        return self

    def items(self) -> dict[str, bytes]:
        """Every key with its bytes, as a volume file or an environment value gets them."""
        return {**{k: v.encode() for k, v in self.data.items()},
                **_base64(self.binary_data, what="binaryData")}


# Keys a Secret of a well-known type must have (Kubernetes' ValidateSecret).
_SECRET_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
}


class Secret(_Object):
    """A Kubernetes v1 Secret: keys a pod of its namespace reads as files (a secret volume,
    on a tmpfs) or as environment values. Its values never appear in messages (``repr``,
    ``str``, validation errors)."""

    model_config = ConfigDict(hide_input_in_errors=True)
    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    kind: Literal["Secret"] = Field(description="Must be Secret.")
    data: dict[ConfigKey, str] = Field(
        default_factory=dict, description="Base64-encoded values by key; 1 MiB in all with "
                                          "stringData. Default {}.")
    string_data: dict[ConfigKey, str] = Field(
        default_factory=dict, description="Plain-text values by key; a key here wins over "
                                          "the same key in data. Default {}.")
    type: str = Field("Opaque", min_length=1,
                      description="e.g. Opaque (default) or kubernetes.io/tls; a well-known "
                                  "type needs its keys. kubernetes.io/service-account-token "
                                  "is refused.")
    immutable: bool | None = Field(
        None, description="Accepted, not enforced: a changed immutable object is applied "
                          "like any other.")

    @pydantic.field_validator("data")
    @classmethod
    def _data(cls, value: dict[str, str]) -> dict[str, str]:
        _base64(value, what="Secret data")
        return value

    @pydantic.model_validator(mode="after")
    def _typed(self) -> Secret:
        if self.type == "kubernetes.io/service-account-token":
            raise ValueError("type kubernetes.io/service-account-token is not supported by"
                             " reconciler (it has no service accounts)")
        items = self.items()
        missing = [k for k in _SECRET_KEYS.get(self.type, ()) if k not in items]
        if missing:
            raise ValueError(f"a Secret of type {self.type} needs the key {missing[0]!r}")
        _check_size(items, "Secret")
        return self

    def items(self) -> dict[str, bytes]:
        """Every key with its bytes; a stringData key wins over the same data key."""
        return {**_base64(self.data, what="Secret data"),
                **{k: v.encode() for k, v in self.string_data.items()}}

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name in ("data", "string_data"):
                value = dict.fromkeys(value, "<hidden>")
            yield name, value


# --- environment ----------------------------------------------------------------------


def _env_name(value: str) -> str:
    # Kubernetes 1.34 relaxed the rule to any printable ASCII except '='
    if not value or any(not " " <= c <= "~" or c == "=" for c in value):
        raise ValueError(f"{value!r} is not a variable name: printable ASCII without '='")
    return value


class KeySelector(model._Model):
    """A key of a ConfigMap or Secret in the pod's namespace."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    name: DNSSubdomain = Field(
        description="The ConfigMap's (configMapKeyRef) or Secret's (secretKeyRef) name, in "
                    "the pod's namespace and any manifest file.")
    key: ConfigKey = Field(description="The key whose value the variable gets; a changed "
                                       "value recreates the container.")
    optional: bool = Field(False, description="true: a missing object or key leaves the "
                                              "variable out instead of holding the pod back. "
                                              "Default false.")


class ConfigMapKeySelector(KeySelector):
    """A key of a ConfigMap in the pod's namespace."""


class SecretKeySelector(KeySelector):
    """A key of a Secret in the pod's namespace (its value ends up in the container's
    config.json on disk: use a secret volume to keep it off disk)."""


_ENV_FIELDS = ("metadata.name", "metadata.namespace", "metadata.labels['KEY']",
               "metadata.annotations['KEY']", "status.podIP", "status.podIPs",
               "status.hostIP", "status.hostIPs")
_FILE_FIELDS = ("metadata.name", "metadata.namespace", "metadata.labels",
                "metadata.annotations", "metadata.labels['KEY']", "metadata.annotations['KEY']")
_KNOWN_FIELDS = ("metadata.uid", "spec.nodeName", "spec.serviceAccountName")
_SUBSCRIPT_RE = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")


def _field_path(path: str, supported: tuple[str, ...]) -> str:
    m = _SUBSCRIPT_RE.match(path)
    if m and f"metadata.{m.group(1)}['KEY']" in supported:
        _qualified_name(m.group(2))
        return path
    if path in supported:
        return path
    listed = ", ".join(supported)
    if path in _KNOWN_FIELDS:
        raise ValueError(f"fieldPath {path!r} is not supported by reconciler; supported: {listed}")
    raise ValueError(f"fieldPath {path!r} is not a field reconciler knows; supported: {listed}")


class ObjectFieldSelector(model._Model):
    """A field of the pod, read as an environment value or a downwardAPI file."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    field_path: str = Field(
        description="e.g. metadata.name, metadata.labels['app'] or (env only) status.podIP, "
                    "which is empty (127.0.0.1 with hostNetwork). metadata.uid and spec.* "
                    "are refused.")
    api_version: Literal["v1"] = Field("v1", alias="apiVersion",
                                       description="Only v1 (the default).")


class EnvVarSource(model._Model):
    """Where a variable's value comes from: exactly one of configMapKeyRef, secretKeyRef,
    fieldRef."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"resourceFieldRef", "fileKeyRef"})

    config_map_key_ref: ConfigMapKeySelector | None = Field(
        None, description="A key of a ConfigMap in the pod's namespace.")
    secret_key_ref: SecretKeySelector | None = Field(
        None, description="A key of a Secret in the pod's namespace; the value is in the "
                          "container's config.json on disk.")
    field_ref: ObjectFieldSelector | None = Field(
        None, description="A field of the pod: metadata.name, metadata.namespace, one label "
                          "or annotation, status.podIP(s), status.hostIP(s).")

    @pydantic.model_validator(mode="after")
    def _one(self) -> EnvVarSource:
        _one_of(self, ("config_map_key_ref", "secret_key_ref", "field_ref"), "valueFrom")
        if self.field_ref is not None:
            _field_path(self.field_ref.field_path, _ENV_FIELDS)
        return self


class KubeEnvVar(model._Model):
    """An environment variable of a pod's container."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    name: Annotated[str, pydantic.AfterValidator(_env_name)] = Field(
        description="The variable's name: printable ASCII without '=' (Kubernetes 1.34's "
                    "rule).")
    value: str | None = Field(
        None, description="The value, with $(VAR) expanded against the variables before it "
                          "($$ is a literal $); default empty.")
    value_from: EnvVarSource | None = Field(
        None, description="Take the value from a ConfigMap or Secret key or a field of the "
                          "pod instead of value.")

    @pydantic.model_validator(mode="after")
    def _value(self) -> KubeEnvVar:
        # Kubernetes' rule: an empty value may sit next to valueFrom, a non-empty one not
        if self.value and self.value_from is not None:
            raise ValueError(f"env {self.name!r}: give value or valueFrom, not both")
        return self


class ConfigMapEnvSource(model._Model):
    """A ConfigMap whose every key becomes a variable."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    name: DNSSubdomain = Field(
        description="The ConfigMap's (configMapRef) or Secret's (secretRef) name, in the "
                    "pod's namespace and any manifest file.")
    optional: bool = Field(False, description="true: a missing object adds no variables "
                                              "instead of holding the pod back. Default false.")


class SecretEnvSource(ConfigMapEnvSource):
    """A Secret whose every key becomes a variable (the values are in the container's
    config.json on disk)."""


class EnvFromSource(model._Model):
    """Every key of a ConfigMap or Secret as a variable: exactly one of configMapRef,
    secretRef. Keys that are not variable names are skipped."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    prefix: Annotated[str, pydantic.AfterValidator(_env_name)] | None = Field(
        None, description="Put before every key to make the variable's name; default none.")
    config_map_ref: ConfigMapEnvSource | None = Field(
        None, description="The ConfigMap whose keys become variables.")
    secret_ref: SecretEnvSource | None = Field(
        None, description="The Secret whose keys become variables.")

    @pydantic.model_validator(mode="after")
    def _one(self) -> EnvFromSource:
        _one_of(self, ("config_map_ref", "secret_ref"), "envFrom")
        return self


# --- volumes --------------------------------------------------------------------------


def _unique_paths(paths: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for path in paths:
        normal = posixpath.normpath(path)
        if normal in seen:
            raise ValueError(f"{what}: two files at path {path!r}")
        seen.add(normal)


class KeyToPath(model._Model):
    """One key of a ConfigMap or Secret as a file at a path of its own."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"user"})

    key: ConfigKey = Field(description="The key whose value the file holds.")
    path: FilePath = Field(description="The file's path in the volume: relative, without "
                                       "'..', not starting with '..'.")
    mode: Mode | None = Field(None, description="The file's mode, 0 to 0777 (octal 0644 is "
                                                "decimal 420); default: defaultMode.")


class _Projection(model._Model):
    """The keys of a ConfigMap or Secret as files."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    items: list[KeyToPath] = Field(default_factory=list, description="Keys to project; "
                                   "empty means every key, as a file of its name.")
    optional: bool = Field(False, description="true: a missing object (or key) is skipped "
                                              "instead of holding the pod back. Default false.")

    @pydantic.model_validator(mode="after")
    def _paths(self) -> _Projection:
        _unique_paths((i.path for i in self.items), "items")
        return self


class ConfigMapProjection(_Projection):
    """A ConfigMap's keys as files of a projected volume."""

    name: DNSSubdomain = Field(description="The ConfigMap's name, in the pod's namespace.")


class SecretProjection(_Projection):
    """A Secret's keys as files of a projected volume (then on a tmpfs)."""

    name: DNSSubdomain = Field(description="The Secret's name, in the pod's namespace.")


class ConfigMapVolumeSource(ConfigMapProjection):
    """A ConfigMap's keys as read-only files, rewritten in place when the ConfigMap
    changes."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"defaultUser"})

    default_mode: Mode = Field(0o644, description="Mode of the files (octal 0644).")


class SecretVolumeSource(_Projection):
    """A Secret's keys as read-only files on a tmpfs of their own, rewritten in place when
    the Secret changes."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"defaultUser"})

    secret_name: DNSSubdomain = Field(description="The Secret's name, in the pod's namespace.")
    default_mode: Mode = Field(0o644, description="Mode of the files (octal 0644).")


class DownwardAPIVolumeFile(model._Model):
    """One field of the pod as a file."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"resourceFieldRef", "user"})

    path: FilePath = Field(description="The file's path in the volume: relative, without "
                                       "'..', not starting with '..'.")
    field_ref: ObjectFieldSelector = Field(
        description="The field the file holds: metadata.name, metadata.namespace, "
                    "metadata.labels, metadata.annotations, or one label or annotation.")
    mode: Mode | None = Field(None, description="The file's mode, 0 to 0777 (octal 0644 is "
                                                "decimal 420); default: defaultMode.")

    @pydantic.model_validator(mode="after")
    def _field(self) -> DownwardAPIVolumeFile:
        _field_path(self.field_ref.field_path, _FILE_FIELDS)
        return self


class DownwardAPIProjection(model._Model):
    """Fields of the pod as files; rewritten in place when a label or annotation changes."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    items: list[DownwardAPIVolumeFile] = Field(
        default_factory=list, description="The files, each a field of the pod; no two at "
                                          "one path. Default [].")

    @pydantic.model_validator(mode="after")
    def _paths(self) -> DownwardAPIProjection:
        _unique_paths((i.path for i in self.items), "items")
        return self


class DownwardAPIVolumeSource(DownwardAPIProjection):
    """Fields of the pod as read-only files."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"defaultUser"})

    default_mode: Mode = Field(0o644, description="Mode of the files (octal 0644).")


class VolumeProjection(model._Model):
    """One source of a projected volume: exactly one of configMap, secret, downwardAPI."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({
        "serviceAccountToken", "clusterTrustBundle", "podCertificate"})

    config_map: ConfigMapProjection | None = Field(
        None, description="A ConfigMap's keys as files.")
    secret: SecretProjection | None = Field(
        None, description="A Secret's keys as files; the volume is then a tmpfs.")
    downward_api: DownwardAPIProjection | None = Field(
        None, alias="downwardAPI", description="Fields of the pod as files.")

    @pydantic.model_validator(mode="after")
    def _one(self) -> VolumeProjection:
        _one_of(self, ("config_map", "secret", "downward_api"), "a projection")
        return self

    def paths(self) -> list[str]:
        source = self.config_map or self.secret or self.downward_api
        return [i.path for i in source.items] if source is not None else []


class ProjectedVolumeSource(model._Model):
    """Several ConfigMaps, Secrets and pod fields as read-only files in one volume."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"defaultUser"})

    sources: list[VolumeProjection] = Field(
        default_factory=list, description="What to project, in order; no two sources may "
                                          "write one path. Default [].")
    default_mode: Mode = Field(0o644, description="Mode of the files (octal 0644).")

    @pydantic.model_validator(mode="after")
    def _paths(self) -> ProjectedVolumeSource:
        # Kubernetes refuses two sources that write the same explicit path
        _unique_paths((p for s in self.sources for p in s.paths()), "sources")
        return self


class EmptyDirVolumeSource(model._Model):
    """An empty directory for the pod's life, kept across a pod-level recreate."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"mode"})

    medium: Literal["", "Memory"] = Field("", description="'' (disk) or Memory (tmpfs).")
    size_limit: model.Quantity | None = Field(
        None, description="The size of a Memory tmpfs (unset: the kernel's default, half the "
                          "RAM); not enforced on disk.")


class HostPathVolumeSource(model._Model):
    """A path of this host, mounted as it is; never removed."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    path: AbsolutePath = Field(description="An absolute path on this host.")
    type: Literal["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                  "CharDevice", "BlockDevice"] = Field(
        "", description="What must be at path: '' (default) checks nothing; DirectoryOrCreate "
                        "and FileOrCreate create it (mode 0755 or 0644).")


_VOLUME_SOURCES = ("empty_dir", "host_path", "config_map", "secret", "projected",
                   "downward_api")


class Volume(model._Model):
    """A volume of the pod, under the state directory: exactly one source of emptyDir,
    hostPath, configMap, secret, projected, downwardAPI."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({
        "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi",
        "ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk", "gitRepo",
        "glusterfs", "image", "iscsi", "nfs", "persistentVolumeClaim", "photonPersistentDisk",
        "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos", "vsphereVolume",
    })

    name: DNSLabel = Field(description="The volume's name, a DNS-1123 label unique in the "
                                       "pod, that volumeMounts refer to.")
    empty_dir: EmptyDirVolumeSource | None = Field(
        None, description="An empty directory on disk, or a tmpfs with medium Memory.")
    host_path: HostPathVolumeSource | None = Field(
        None, description="A path of this host.")
    config_map: ConfigMapVolumeSource | None = Field(
        None, description="A ConfigMap's keys as read-only files.")
    secret: SecretVolumeSource | None = Field(
        None, description="A Secret's keys as read-only files, on a tmpfs.")
    projected: ProjectedVolumeSource | None = Field(
        None, description="ConfigMaps, Secrets and pod fields together as read-only files.")
    downward_api: DownwardAPIVolumeSource | None = Field(
        None, alias="downwardAPI", description="Fields of the pod as read-only files.")

    @pydantic.model_validator(mode="after")
    def _one(self) -> Volume:
        given = [n for n in _VOLUME_SOURCES if getattr(self, n) is not None]
        if not given:
            raise ValueError(f"volume {self.name!r}: one volume source is required: emptyDir,"
                             " hostPath, configMap, secret, projected or downwardAPI")
        if len(given) > 1:
            names = " and ".join(type(self).model_fields[n].alias or n for n in given)
            raise ValueError(f"volume {self.name!r}: give one volume source, not {names}")
        return self


class VolumeMount(model._Model):
    """A volume of the pod bind-mounted into the container; changed on the running
    container."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({
        "subPathExpr", "mountPropagation", "recursiveReadOnly", "bindMountOptions"})

    name: str = Field(description="The name of a volume of the pod.")
    mount_path: model.ContainerPath = Field(
        description="Where it appears in the container: an absolute path, unique in the "
                    "container.")
    read_only: bool = Field(
        False, description="Mount it read-only; default false. ConfigMap, Secret, projected "
                           "and downwardAPI volumes are read-only whatever this says.")
    sub_path: RelativePath | None = Field(
        None, description="A relative path in the volume to mount instead of its root (made "
                          "in an emptyDir when missing); default: the whole volume.")


# --- lifecycle, ports, resources, security (probes: manifest/probes.py) ----------------


class LifecycleHandler(model._Model):
    """What a lifecycle hook runs: exec only."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"httpGet", "tcpSocket", "sleep"})

    exec: ExecAction = Field(description="The only handler reconciler runs.")


class Lifecycle(model._Model):
    """Hooks around the container's life: preStop only."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"postStart", "stopSignal"})

    pre_stop: LifecycleHandler | None = Field(
        None, description="Run inside the container before its stop signal, within "
                          "terminationGracePeriodSeconds; a failure is a FailedPreStopHook "
                          "event and the stop goes on.")


class ContainerPort(model._Model):
    """A port the container listens on; with hostPort, published on the host (the pod's
    network's port mapping)."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    container_port: Port = Field(description="The port number, 1 to 65535.")
    host_port: Port | None = Field(
        None, description="Publish containerPort on this host port (with hostNetwork, equal "
                          "to containerPort); no host port twice in the pod.")
    host_ip: model.IPAddress | None = Field(
        None, alias="hostIP", description="Publish hostPort on this host address only; "
                                          "default: every address.")
    name: PortName | None = Field(
        None, description="A name unique in the container (at most 15 lowercase letters, "
                          "digits, '-'), that a probe's port can use.")
    protocol: Literal["TCP", "UDP", "SCTP"] = Field("TCP", description="TCP (default), UDP "
                                                                       "or SCTP.")



def _resource_name(name: str) -> str:
    if name not in ("cpu", "memory", "ephemeral-storage") and not name.startswith("hugepages-"):
        raise ValueError(f"resource {name!r} is not supported by reconciler: use cpu, memory,"
                         " ephemeral-storage or hugepages-<size>")
    return name


ResourceName = Annotated[str, pydantic.AfterValidator(_resource_name)]


class ResourceRequirements(model._Model):
    """The container's limits (cpu and memory enforced) and requests (shown only)."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"claims"})

    limits: dict[ResourceName, model.Quantity] = Field(
        default_factory=dict,
        description="memory and cpu are set on the container's cgroup (memory limit, CFS "
                    "quota) and changed live; another resource's limit is an error on the "
                    "pod. Default: none.")
    requests: dict[ResourceName, model.Quantity] = Field(
        default_factory=dict,
        description="Accepted and shown, not enforced: no scheduling, QoS class, CPU weight "
                    "or OOM score. Not more than the limit; default: the limits.")

    @pydantic.model_validator(mode="after")
    def _requests(self) -> ResourceRequirements:
        for name, request in self.requests.items():
            limit = self.limits.get(name)
            if limit is not None and quantity.parse(request) > quantity.parse(limit):
                raise ValueError(f"requests.{name} {request} is more than limits.{name} {limit}")
        return self


class SecurityContext(model._Model):
    """The container's user and privileges; what it leaves out comes from the pod's
    securityContext."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({
        "seLinuxOptions", "windowsOptions", "procMount", "appArmorProfile"})

    run_as_user: Id | None = Field(
        None, description="The UID the process runs as; default: the pod's, else the "
                          "image's user.")
    run_as_group: Id | None = Field(
        None, description="The GID the process runs as; default: the pod's, else 0 (not the "
                          "image's). Needs a runAsUser, here or the pod's.")
    run_as_non_root: bool | None = Field(
        None, description="true: refuse to create the container if it would run as UID 0 "
                          "(the image's USER included); default: the pod's.")
    read_only_root_filesystem: bool | None = Field(
        None, description="Mount the root filesystem read-only; default false.")
    allow_privilege_escalation: bool | None = Field(
        None, description="false sets no_new_privs (not with CAP_SYS_ADMIN added); unset "
                          "means allowed, as in Kubernetes.")
    capabilities: model.Capabilities | None = Field(
        None, description="Capabilities to add to or drop from the default set (Docker's).")
    privileged: bool | None = Field(
        None, description="Every capability, no seccomp filter, no masked paths, every host "
                          "device; a daemon policy allows it only with allow.privileged.")
    seccomp_profile: model.SeccompProfile | None = Field(
        None, description="The seccomp filter; default: the pod's, else RuntimeDefault (the "
                          "kubelet's default is Unconfined).")

    @pydantic.model_validator(mode="after")
    def _privileges(self) -> SecurityContext:
        if self.privileged and self.allow_privilege_escalation is False:
            raise ValueError("allowPrivilegeEscalation cannot be false when privileged is true"
                             " (Kubernetes refuses it)")
        added = self.capabilities.add if self.capabilities is not None else []
        if self.allow_privilege_escalation is False and "SYS_ADMIN" in added:
            raise ValueError("allowPrivilegeEscalation: false cannot be set when adding"
                             " CAP_SYS_ADMIN (Kubernetes refuses it)")
        return self


class Sysctl(model._Model):
    """A kernel parameter set in the pod's namespaces."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    name: SysctlName = Field(description="e.g. net.ipv4.ip_forward ('/' separators work "
                                         "too); the kubelet's safe-sysctl allowlist is not "
                                         "applied.")
    value: str = Field(description="The value to write, as a string.")


class PodSecurityContext(model._Model):
    """User, groups, sysctls and seccomp for every container of the pod; a container's
    own securityContext wins."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({
        "seLinuxOptions", "windowsOptions", "appArmorProfile", "fsGroupChangePolicy",
        "seLinuxChangePolicy", "supplementalGroupsPolicy"})

    run_as_user: Id | None = Field(
        None, description="The UID every container runs as unless it sets its own; default: "
                          "the image's user.")
    run_as_group: Id | None = Field(
        None, description="The GID every container runs as unless it sets its own; default "
                          "0. Needs a runAsUser (the pod's or the container's).")
    run_as_non_root: bool | None = Field(
        None, description="true: refuse to create a container that would run as UID 0 (the "
                          "image's USER included); default false.")
    fs_group: Id | None = Field(
        None, description="Added to every container's groups; emptyDir directories get it "
                          "with the setgid bit (mode 2777), projected files get it.")
    supplemental_groups: list[Id] = Field(
        default_factory=list, description="Groups added to every container's groups; "
                                          "default [].")
    sysctls: list[Sysctl] = Field(
        default_factory=list,
        description="Set by the sandbox in the pod's namespaces; no name twice, net.* not "
                    "with hostNetwork, IPC ones not with hostIPC. Default [].")
    seccomp_profile: model.SeccompProfile | None = Field(
        None, description="The seccomp filter of every container; default RuntimeDefault "
                          "(the kubelet's is Unconfined).")

    @pydantic.field_validator("sysctls")
    @classmethod
    def _unique(cls, value: list[Sysctl]) -> list[Sysctl]:
        names = [s.name.replace("/", ".") for s in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"sysctl {name!r} is set twice")
        return value


# --- containers -----------------------------------------------------------------------


def _image(value: str) -> str:
    if not model._IMAGE_RE.match(value):
        raise ValueError(f"{value!r} is not an image reference (e.g. busybox:1.36)")
    return value


class KubeContainer(model._Model):
    """A container of the pod (in containers or initContainers): a runc container named
    NAMESPACE_POD_NAME that joins the pod's namespaces."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({
        "resizePolicy", "restartPolicyRules", "stdinOnce", "volumeDevices"})

    name: DNSLabel = Field(description="The container's name, a DNS-1123 label unique in "
                                       "the pod.")
    image: Annotated[str, pydantic.AfterValidator(_image)] = Field(
        description="An image reference, e.g. busybox:1.36.")
    image_pull_policy: Annotated[model.PullPolicy, model._Lax] | None = Field(
        None, description="Default: Always for a :latest or untagged image, else IfNotPresent.")
    command: list[str] | None = Field(None, description="Replaces the image's entrypoint.")
    args: list[str] | None = Field(None, description="Replaces the image's cmd.")
    env: list[KubeEnvVar] = Field(
        default_factory=list, description="Variables set in order after HOSTNAME and "
                                          "envFrom (a later one wins); default [].")
    env_from: list[EnvFromSource] = Field(
        default_factory=list, description="Every key of a ConfigMap or Secret as a variable, "
                                          "before env; default [].")
    working_dir: model.ContainerPath | None = Field(
        None, description="The process's working directory; default: the image's.")
    ports: list[ContainerPort] = Field(
        default_factory=list, description="Validated as Kubernetes does, but nothing is "
                                          "published yet; default [].")
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements,
        description="limits (cpu and memory enforced, changed live) and requests (shown, not "
                    "enforced).")
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list, description="Volumes of the pod to mount; changed on the "
                                          "running container. Default [].")
    security_context: SecurityContext | None = Field(
        None, description="User and privileges; default: the pod's securityContext.")
    stdin: bool = Field(
        False, description="Keep stdin open (a read waits) instead of /dev/null; default "
                           "false. Nothing attaches to it yet: use reconciler exec.")
    tty: bool = Field(
        False, description="Give the process a terminal (the log is what it prints there); "
                           "default false. No attach yet.")
    lifecycle: Lifecycle | None = Field(
        None, description="preStop.exec only; not on a plain init container.")
    termination_message_path: AbsolutePath = Field(
        "/dev/termination-log", description="Only the default, /dev/termination-log: "
                                            "termination messages are not collected.")
    termination_message_policy: Literal["File", "FallbackToLogsOnError"] = Field(
        "File", description="Only File (the default): termination messages are not "
                            "collected.")
    liveness_probe: Probe | None = Field(
        None, description="Restarts the container (through its restart policy) when it "
                          "fails failureThreshold times in a row.")
    readiness_probe: Probe | None = Field(
        None, description="Marks the container ready or not (the READY column); without "
                          "one, a running container is ready.")
    startup_probe: Probe | None = Field(
        None, description="Holds the other probes until it succeeds; restarts the "
                          "container when it fails failureThreshold times.")
    restart_policy: Literal["Always"] | None = Field(
        None, description="Init containers only: Always makes a sidecar.")

    @property
    def pull_policy(self) -> model.PullPolicy:
        """Kubernetes' default: Always for a ``latest`` tag, or no tag and no digest."""
        if self.image_pull_policy is not None:
            return self.image_pull_policy
        name, _, digest = self.image.partition("@")
        last = name.rsplit("/", 1)[-1]
        tag = last.partition(":")[2] or ("" if digest else "latest")
        return model.PullPolicy.ALWAYS if tag == "latest" else model.PullPolicy.IF_NOT_PRESENT

    def probes(self) -> dict[str, Probe]:
        """The probes that are set, by their field name (livenessProbe, ...)."""
        found = {"livenessProbe": self.liveness_probe, "readinessProbe": self.readiness_probe,
                 "startupProbe": self.startup_probe}
        return {k: v for k, v in found.items() if v is not None}

    @pydantic.model_validator(mode="after")
    def _mounts(self) -> KubeContainer:
        seen: set[str] = set()
        for mount in self.volume_mounts:
            if mount.mount_path in seen:
                raise ValueError(f"container {self.name!r}: two volumeMounts at mountPath"
                                 f" {mount.mount_path!r}")
            seen.add(mount.mount_path)
        return self

    @pydantic.model_validator(mode="after")
    def _ports(self) -> KubeContainer:
        names = [p.name for p in self.ports if p.name is not None]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"container {self.name!r}: two ports named {name!r}")
        for field, probe in self.probes().items():
            if isinstance(probe.port, str) and probe.port not in names:
                raise ValueError(f"container {self.name!r}: {field} uses port {probe.port!r},"
                                 " which is not the name of one of its ports")
        return self

    @pydantic.model_validator(mode="after")
    def _probes(self) -> KubeContainer:
        for field, probe in self.probes().items():
            if field != "readinessProbe" and probe.success_threshold != 1:
                raise ValueError(f"container {self.name!r}: {field}.successThreshold must be 1")
            if field == "readinessProbe" and probe.termination_grace_period_seconds is not None:
                raise ValueError(f"container {self.name!r}: readinessProbe cannot set"
                                 " terminationGracePeriodSeconds")
        return self


# --- the pod --------------------------------------------------------------------------


def _containers(value: list[KubeContainer]) -> list[KubeContainer]:
    if not value:
        raise ValueError("a pod needs at least one container")
    return value


# Sysctls that a shared host namespace would set on the host (Kubernetes refuses them)
_HOST_NET_SYSCTLS = ("net.",)
_HOST_IPC_SYSCTLS = ("kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue.")


class PodSpec(model._Model):
    """The pod's containers, namespaces, security and volumes."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({
        "activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "dnsConfig",
        "enableServiceLinks", "ephemeralContainers", "evictionResponders", "hostAliases",
        "hostnameOverride", "imagePullSecrets", "nodeName", "nodeSelector", "os",
        "overhead", "preemptionPolicy", "priority", "priorityClassName", "readinessGates",
        "resourceClaims", "resources", "schedulerName", "schedulingGates", "schedulingGroup",
        "serviceAccount", "serviceAccountName", "setHostnameAsFQDN", "tolerations",
        "topologySpreadConstraints",
    })

    containers: Annotated[list[KubeContainer], pydantic.AfterValidator(_containers)] = Field(
        description="The app containers, at least one, started together after the init "
                    "containers and sidecars.")
    init_containers: list[KubeContainer] = Field(
        default_factory=list, description="Run in order before the containers; one with "
                                          "restartPolicy Always is a sidecar.")
    restart_policy: Annotated[model.RestartPolicy, model._Lax] = Field(
        model.RestartPolicy.ALWAYS,
        description="For the app containers: Always (default), OnFailure or Never. Init "
                    "containers are retried on failure unless Never; sidecars always "
                    "restart.")
    termination_grace_period_seconds: int = Field(
        30, ge=0, description="Seconds between a container's stop signal (after its preStop "
                              "hook) and SIGKILL; default 30, at most 3600 here.")
    host_network: bool = Field(
        False, description="Use the host's network and UTS namespaces instead of the pod's "
                           "own (which has only loopback); default false.")
    host_pid: bool = Field(False, alias="hostPID",
                           description="Use the host's PID namespace; default false.")
    host_ipc: bool = Field(False, alias="hostIPC",
                           description="Use the host's IPC namespace (and not the pod's "
                                       "/dev/shm); default false.")
    host_users: bool = Field(
        True, description="false: the pod's containers run in a user namespace of the pod's "
                          "own, root mapped to an unprivileged host range given to this pod "
                          "alone. Not with hostNetwork, hostPID or hostIPC. Default true.")
    share_process_namespace: bool = Field(
        False, description="One PID namespace for the pod's containers, catatonit its PID 1; "
                           "not with hostPID. Default false.")
    hostname: DNSLabel | None = Field(None, description="Default: the pod's name.")
    subdomain: DNSLabel | None = Field(
        None, description="Accepted; gives no DNS record or FQDN (no cluster DNS).")
    dns_policy: Literal["ClusterFirst", "Default", "None", "ClusterFirstWithHostNet"] = Field(
        "ClusterFirst", description="Accepted with no effect (containers see their image's "
                                    "own /etc/resolv.conf); None is refused. Default "
                                    "ClusterFirst.")
    security_context: PodSecurityContext = Field(
        default_factory=PodSecurityContext,
        description="User, groups, sysctls and seccomp for every container; default {}.")
    runtime_class_name: DNSSubdomain | None = Field(
        None, description="Another OCI runtime for the containers: gvisor, or one given to "
                          "reconciler run --runtime-class; then one long-running container. "
                          "Default: runc.")
    volumes: list[Volume] = Field(
        default_factory=list, description="Volumes the containers can mount, by name; "
                                          "default [].")

    def all_containers(self) -> Iterator[tuple[str, KubeContainer]]:
        """Every container with its path: ``initContainers[0]``, ``containers[1]``."""
        for i, c in enumerate(self.init_containers):
            yield f"initContainers[{i}]", c
        for i, c in enumerate(self.containers):
            yield f"containers[{i}]", c

    @pydantic.model_validator(mode="after")
    def _names(self) -> PodSpec:
        seen: dict[str, str] = {}
        for where, c in self.all_containers():
            if c.name in seen:
                raise ValueError(f"{where}: container name {c.name!r} is already used by"
                                 f" {seen[c.name]}")
            seen[c.name] = where
        volumes = [v.name for v in self.volumes]
        for name in volumes:
            if volumes.count(name) > 1:
                raise ValueError(f"volumes: two volumes named {name!r}")
        for where, c in self.all_containers():
            for i, m in enumerate(c.volume_mounts):
                if m.name not in volumes:
                    raise ValueError(f"{where}.volumeMounts[{i}]: no volume named {m.name!r}"
                                     " in volumes")
        return self

    @pydantic.model_validator(mode="after")
    def _roles(self) -> PodSpec:
        for i, c in enumerate(self.containers):
            if c.restart_policy is not None:
                raise ValueError(f"containers[{i}]: restartPolicy is only for initContainers"
                                 " (restartPolicy: Always makes a sidecar)")
        for i, c in enumerate(self.init_containers):
            if c.restart_policy == "Always":
                continue
            # only a sidecar runs alongside the app; a plain init container must finish
            refused = [*c.probes(), *(["lifecycle"] if c.lifecycle is not None else [])]
            if refused:
                raise ValueError(f"initContainers[{i}]: {refused[0]} is not allowed on an init"
                                 " container unless it is a sidecar (restartPolicy: Always)")
        return self

    @pydantic.model_validator(mode="after")
    def _host(self) -> PodSpec:
        if self.host_pid and self.share_process_namespace:
            raise ValueError("hostPID and shareProcessNamespace cannot both be true")
        shared = [f for f, on in (("hostNetwork", self.host_network), ("hostPID", self.host_pid),
                                  ("hostIPC", self.host_ipc)) if on]
        if not self.host_users and shared:
            raise ValueError(f"hostUsers: false cannot be used with {shared[0]}: true (as"
                             " Kubernetes)")
        if not self.host_users:
            for where, c in self.all_containers():
                if c.security_context is not None and c.security_context.privileged:
                    raise ValueError(f"{where}.securityContext.privileged: a privileged"
                                     " container cannot run with hostUsers: false")
        if self.dns_policy == "None":
            raise ValueError("dnsPolicy None needs dnsConfig, which reconciler does not"
                             " support")
        seen: dict[tuple[int, str, str], str] = {}
        for where, c in self.all_containers():
            for i, p in enumerate(c.ports):
                if self.host_network and p.host_port not in (None, p.container_port):
                    raise ValueError(f"{where}.ports[{i}]: with hostNetwork, hostPort must"
                                     f" equal containerPort {p.container_port}")
                host_port = p.container_port if self.host_network else p.host_port
                if host_port is None:
                    continue
                key = (host_port, p.protocol, p.host_ip or "")
                if key in seen:
                    raise ValueError(f"{where}.ports[{i}]: host port {host_port}/{p.protocol}"
                                     f" is already used by {seen[key]}")
                seen[key] = f"{where}.ports[{i}]"
        return self

    @pydantic.model_validator(mode="after")
    def _sysctls(self) -> PodSpec:
        for s in self.security_context.sysctls:
            name = s.name.replace("/", ".")
            if self.host_network and name.startswith(_HOST_NET_SYSCTLS):
                raise ValueError(f"securityContext.sysctls: {s.name} cannot be set with"
                                 " hostNetwork (it would change the host)")
            if self.host_ipc and name.startswith(_HOST_IPC_SYSCTLS):
                raise ValueError(f"securityContext.sysctls: {s.name} cannot be set with"
                                 " hostIPC (it would change the host)")
        return self


class Pod(_Object):
    """A Kubernetes v1 Pod, run on this host as runc containers that share the pod's
    namespaces (see docs/pods.md)."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"status"})

    kind: Literal["Pod"] = Field(description="Must be Pod.")
    spec: PodSpec = Field(description="What the pod runs: containers, init containers, "
                                      "namespaces, security and volumes.")

    @pydantic.field_validator("metadata")
    @classmethod
    def _pod_name(cls, value: ObjectMeta) -> ObjectMeta:
        # the name becomes the pod's hostname and part of its container names
        if len(value.name) > 63 or "." in value.name:
            raise ValueError(f"name {value.name!r}: reconciler needs pod names without dots,"
                             " at most 63 characters (a DNS-1123 label; Kubernetes would"
                             " allow a subdomain)")
        return value


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a Pod, ConfigMap or Secret document, for editors and CI."""
    refs, schema = models_json_schema(
        [(Pod, "validation"), (ConfigMap, "validation"), (Secret, "validation")],
        by_alias=True, ref_template="#/$defs/{model}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Kubernetes v1 Pod, ConfigMap and Secret as reconciler accepts them",
        "anyOf": [refs[(kind, "validation")] for kind in (Pod, ConfigMap, Secret)],
        **schema,
    }
