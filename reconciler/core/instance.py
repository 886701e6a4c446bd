"""Identity and the fully-resolved instance spec: what the runtime is handed.

    core.desired (a logical object) ─resolve/─▶ InstanceSpec (this module) ─▶ runtime.create

A manifest object has a logical *name*; each runtime container made for it is an
*instance* with its own id, ``<name>.<generation>`` (``web.1``, then ``web.2`` after a
change that needs a new container). Names are DNS-1123 labels, which have no dot, so the
id splits back unambiguously; adoption after a daemon restart still reads the name and
generation from the instance's annotations, never from its id. A restart after a crash
keeps the id (same object, same generation, same logs); two instances of one object can
exist at once (a make-before-break update).

The annotations below make every instance self-describing on the host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.core.pods import PodInfo
    from reconciler.manifest.model import Container

ANN_MANAGED_BY = "io.reconciler.managed-by"
ANN_NAME = "io.reconciler.name"  # the logical object
ANN_GENERATION = "io.reconciler.generation"
ANN_SOURCE = "io.reconciler.source"  # the origin that defined it (a file, later a key)
ANN_SOURCE_ID = "io.reconciler.source-id"  # which source that origin belongs to
ANN_SPEC_HASH = "io.reconciler.spec-hash"
ANN_MANIFEST = "io.reconciler.manifest"  # the manifest applied at create (JSON)
ANN_IMAGE_DIGEST = "io.reconciler.image-digest"  # manifest digest of an image: container
ANN_STOP_SIGNAL = "io.reconciler.stop-signal"  # the effective one (an image may set it)
ANN_RUNTIME_CLASS = "io.reconciler.runtime-class"  # another OCI runtime than runc (runsc)
# A Kubernetes v1 Pod's instances (core.pods): the pod (namespace/name), the role in it,
# the container's name in the pod, and the sandbox instance and PID it joined.
ANN_POD = "io.reconciler.pod"
ANN_POD_ROLE = "io.reconciler.pod-role"  # sandbox, init, sidecar or app
ANN_POD_CONTAINER = "io.reconciler.pod-container"
ANN_SANDBOX = "io.reconciler.sandbox"  # "<instance>@<pid>"
ANN_POD_SPEC = "io.reconciler.pod-spec"  # the pod-level fields in force (pods.pod_identity)
MANAGED_BY = "reconciler"


def instance_id(name: str, generation: int) -> str:
    return f"{name}.{generation}"


def split_id(instance: str) -> tuple[str, int]:
    """``web.3`` -> (``web``, 3); a wave-one id without a generation -> (id, 0)."""
    name, dot, gen = instance.rpartition(".")
    if dot and gen.isdigit():
        return name, int(gen)
    return instance, 0


@dataclass(frozen=True)
class IdMap:
    """A user namespace's mapping: ids 0..size-1 inside are ``uid``/``gid`` onward outside."""

    uid: int
    gid: int
    size: int


@dataclass(frozen=True)
class InstanceSpec:
    """Everything the runtime needs to make one instance, every default resolved.

    ``container`` is the effective manifest (an image's config filled in); ``lower`` the
    directory the instance's files come from (a rootfs, a bundle's root, an unpacked
    image); ``base`` a bundle's own config.json.
    """

    id: str
    name: str
    generation: int
    container: Container
    lower: str
    cgroup_path: str
    annotations: Mapping[str, str]
    spec_hash: str
    source: str
    stop_signal: str
    grace: float
    entrypoint: tuple[str, ...] = ()
    base: Mapping[str, Any] | None = field(default=None, compare=False)
    previous: str | None = None  # the instance this one replaces: its logs carry over
    # namespace type -> a path to join (/proc/PID/ns/net), or None: the host's (none made)
    namespaces: Mapping[str, str | None] = field(default_factory=dict)
    pod: PodInfo | None = None  # a pod's sandbox: its volumes are made with it
    run_as_non_root: bool = False  # refuse to start as uid 0 (checked on the effective user)
    runtime_class: str | None = None  # runtimeClassName: another OCI runtime than runc
    etc_files: Mapping[str, str] = field(default_factory=dict)  # /etc/hosts -> the network's
    id_map: IdMap | None = None  # hostUsers: false: the host ids its user namespace maps to
