"""The daemon's security policy: what host access a manifest may ask for.

    --policy FILE (``Policy``, this module) ─▶ ``checker(source)`` ─▶ loader (a ``check``
    hook) ─▶ a finding on the field's own line; keep-last-good does the rest

Where it sits: the manifest layer, pure (documents in, violations out). A violation is a
finding like any other (``FILE:LINE: spec.mounts[0].source: …  (policy: hostPaths)``),
so the object is not made, an older revision that passed keeps running, and every other
object goes on (``core.desired``).

Levels mirror Kubernetes' Pod Security Standards:

- ``privileged``: nothing is checked but ``maxResources`` and ``runAsNonRoot``;
- ``baseline`` (the default of a policy file): no privileged containers, no host
  namespaces (network, PID, IPC), no capabilities beyond Docker's default set, no host
  paths (bind mounts, hostPath volumes, ``rootfs``, ``bundle``) outside ``hostPaths``,
  no host ports outside ``hostPorts``, only Kubernetes' safe sysctls, no ``Unconfined``
  seccomp, only the runtime classes listed;
- ``restricted``: baseline, and every process runs as non-root, says
  ``allowPrivilegeEscalation: false`` (our kind's default), drops ``ALL`` capabilities
  and adds none but ``NET_BIND_SERVICE``.

The lists widen a level: ``hostPaths`` (each a prefix, read-only unless ``readOnly:
false``), ``capabilities``, ``sysctls``, ``runtimeClasses``, ``hostPorts`` ("80",
"8000-8100"), and ``allow`` for the switches (``hostNetwork``, ``hostPID``, ``hostIPC``,
``privileged``). ``maxResources`` caps each container's limits and makes them required;
``runAsNonRoot: true`` requires a non-root user at any level. ``sources`` gives a source
(``directory``, ``etcd``) a policy of its own: a whole body, its unset fields taking the
level's defaults, not the top level's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field

from reconciler.manifest import model, quantity

Level = Literal["privileged", "baseline", "restricted"]
PathElem = str | int

# The set every container gets by default (runtime/oci.py's DEFAULT_CAPABILITIES, Docker's),
# which baseline lets a manifest add back: Kubernetes' baseline list and NET_RAW.
BASELINE_CAPABILITIES = frozenset(
    """AUDIT_WRITE CHOWN DAC_OVERRIDE FOWNER FSETID KILL MKNOD NET_BIND_SERVICE SETFCAP
    SETGID SETPCAP SETUID SYS_CHROOT NET_RAW""".split())
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
# Kubernetes' safe sysctls (baseline allows these; they are namespaced to the pod).
SAFE_SYSCTLS = frozenset("""kernel.shm_rmid_forced net.ipv4.ip_local_port_range
    net.ipv4.ip_unprivileged_port_start net.ipv4.tcp_syncookies net.ipv4.ping_group_range
    net.ipv4.ip_local_reserved_ports net.ipv4.tcp_keepalive_time net.ipv4.tcp_fin_timeout
    net.ipv4.tcp_keepalive_intvl net.ipv4.tcp_keepalive_probes""".split())


def _port_range(value: str | int) -> str:
    text = str(value)
    low, sep, high = text.partition("-")
    try:
        a, b = int(low), int(high) if sep else int(low)
    except ValueError:
        raise ValueError(f"{text!r} is not a port or a range LOW-HIGH") from None
    if not 1 <= a <= b <= 65535:
        raise ValueError(f"{text!r} is not within 1-65535 (low first)")
    return f"{a}-{b}" if sep else str(a)


PortRange = Annotated[str, pydantic.BeforeValidator(_port_range)]


class HostPathRule(model._Model):
    """A host path prefix manifests may use."""

    path: model.HostPath = Field(description="An absolute host path; everything under it "
                                             "is allowed.")
    read_only: bool = Field(True, description="Only read-only mounts of it (the default); "
                                              "false allows read-write too.")


class Switches(model._Model):
    """Host access a level forbids, allowed one by one."""

    privileged: bool = Field(False, description="Privileged containers.")
    host_network: bool = Field(False, description="The host's network namespace.")
    host_pid: bool = Field(False, alias="hostPID", description="The host's PID namespace.")
    host_ipc: bool = Field(False, alias="hostIPC", description="The host's IPC namespace.")


class MaxResources(model._Model):
    """The most each container may ask for; set ones are required of every container."""

    memory: model.Quantity | None = Field(None, description="e.g. 512Mi.")
    cpu: model.Quantity | None = Field(None, description="e.g. 2 or 1500m.")
    pids: int | None = Field(None, ge=1, description="Processes.")


class Rules(model._Model):
    """One policy body: a level and what widens or tightens it."""

    level: Level = Field("baseline", description="privileged, baseline (the default) or "
                                                 "restricted, as Kubernetes Pod Security.")
    host_paths: list[HostPathRule] = Field(
        default_factory=list, description="Host path prefixes allowed for bind mounts, "
                                          "hostPath volumes, rootfs and bundle.")
    capabilities: list[model.Capability] = Field(
        default_factory=list, description="Capabilities allowed beyond the level's set.")
    sysctls: list[str] = Field(default_factory=list,
                               description="Sysctls allowed beyond Kubernetes' safe set.")
    runtime_classes: list[str] = Field(
        default_factory=list, description="Runtime classes allowed (runc is always).")
    host_ports: list[PortRange] = Field(
        default_factory=list, description='Host ports allowed: "80" or "8000-8100".')
    allow: Switches = Field(default_factory=Switches,
                            description="Host access the level forbids, allowed.")
    max_resources: MaxResources | None = Field(
        None, description="Limits every container must set, at most these.")
    run_as_non_root: bool = Field(False, description="Require a non-root user at any level.")
    user_namespaces: bool = Field(
        False, description="Require hostUsers: false at any level: every container's root "
                           "is an unprivileged host uid of a range of its own.")
    enforce: Literal["report", "evict"] = Field(
        "report", description="report: a running object that a changed policy forbids keeps "
                              "running and is reported; evict: it is stopped and deleted.")


class Policy(Rules):
    """A policy file (``reconciler run --policy FILE``)."""

    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion",
                                                  description="Must be reconciler/v1.")
    kind: Literal["Policy"] = Field(description="Must be Policy.")
    manifest_links: list[model.HostPath] = Field(
        default_factory=list, description="Directories outside the manifests directory that "
                                          "a symlink in it may lead into.")
    sources: dict[Literal["directory", "etcd"], Rules] = Field(
        default_factory=dict, description="A policy of its own for a source.")

    def for_source(self, source: str) -> Rules:
        own = self.sources.get(source)  # type: ignore[call-overload]
        return own if own is not None else self


@dataclass(frozen=True)
class Violation:
    path: tuple[PathElem, ...]  # as the YAML says it: ("spec", "mounts", 0, "source")
    rule: str  # the policy's word for what forbids it: "hostPaths", "allow.hostNetwork"
    message: str
    evict: bool = False  # enforce: evict: the object is deleted, not kept on its last good


LEVELS: tuple[Level, ...] = ("privileged", "baseline", "restricted")


def builtin(level: Level) -> Policy:
    """``--policy LEVEL``: a level with nothing widened (no host paths at all)."""
    return Policy.model_validate({"apiVersion": "reconciler/v1", "kind": "Policy",
                                  "level": level})


Check = Callable[[Any], list[Violation]]


def checker(rules: Rules | None) -> Check | None:
    """The loader's ``check`` hook for ``rules`` (None: no policy, nothing checked)."""
    if rules is None:
        return None
    if rules.enforce == "evict":
        return lambda document: [replace(v, evict=True)
                                 for v in violations(document, rules)]
    return lambda document: list(violations(document, rules))


def violations(document: object, rules: Rules) -> Iterator[Violation]:
    """What in one valid document ``rules`` forbid."""
    if isinstance(document, model.Container):
        yield from _container(document, rules)
    elif type(document).__name__ == "Pod":  # kube is imported only for v1 documents
        yield from _pod(document, rules)


# --- our kind -----------------------------------------------------------------------------


def _container(c: model.Container, r: Rules) -> Iterator[Violation]:
    s = c.spec
    if r.user_namespaces and s.host_users:
        yield Violation(("spec", "hostUsers"), "userNamespaces",
                        "a user namespace is required (hostUsers: false)")
    strict = r.level != "privileged"
    if strict:
        for field, value in (("rootfs", s.rootfs), ("bundle", s.bundle)):
            if value is not None:
                yield from _host_path(("spec", field), value, True, r)
        for i, m in enumerate(s.mounts):
            if isinstance(m, model.BindMount):
                yield from _host_path(("spec", "mounts", i, "source"), m.source, m.read_only, r)
        if s.host_network and not r.allow.host_network:
            yield Violation(("spec", "hostNetwork"), "allow.hostNetwork",
                            "the host's network namespace is not allowed")
        if s.privileged and not r.allow.privileged:
            yield Violation(("spec", "privileged"), "allow.privileged",
                            "privileged containers are not allowed")
        yield from _caps(("spec", "capabilities", "add"), s.capabilities.add, r)
        for i, port in enumerate(s.ports):
            if not _port_allowed(port.host_port, r):
                yield Violation(("spec", "ports", i, "hostPort"), "hostPorts",
                                f"host port {port.host_port} is not allowed")
        yield from _seccomp(("spec",), s.seccomp_profile, r)
    if r.level == "restricted" and s.allow_privilege_escalation:
        yield Violation(("spec", "allowPrivilegeEscalation"), "level",
                        "privilege escalation is not allowed at restricted")
    if r.level == "restricted" and "ALL" not in s.capabilities.drop:
        yield Violation(("spec", "capabilities", "drop"), "level",
                        "restricted needs capabilities: {drop: [ALL]}")
    uid = s.user.uid if s.user is not None else None
    if (r.run_as_non_root or r.level == "restricted") and not uid:
        yield Violation(("spec", "user", "uid"), "runAsNonRoot" if r.run_as_non_root else
                        "level", "the process must run as a non-root user (spec.user.uid)")
    yield from _limits(("spec", "resources"), s.resources.memory, s.resources.cpu,
                       s.resources.pids, r)


# --- v1 Pods ------------------------------------------------------------------------------


def _pod(pod: Any, r: Rules) -> Iterator[Violation]:
    spec = pod.spec
    if r.user_namespaces and spec.host_users:
        yield Violation(("spec", "hostUsers"), "userNamespaces",
                        "a user namespace is required (hostUsers: false)")
    strict = r.level != "privileged"
    if strict:
        for field, used, allowed, words in (
                ("hostNetwork", spec.host_network, r.allow.host_network, "network"),
                ("hostPID", spec.host_pid, r.allow.host_pid, "PID"),
                ("hostIPC", spec.host_ipc, r.allow.host_ipc, "IPC")):
            if used and not allowed:
                yield Violation(("spec", field), f"allow.{field}",
                                f"the host's {words} namespace is not allowed")
        writable = _written_volumes(spec)
        for i, v in enumerate(spec.volumes):
            if v.host_path is not None:
                yield from _host_path(("spec", "volumes", i, "hostPath", "path"),
                                      v.host_path.path, v.name not in writable, r)
        for j, sysctl in enumerate(spec.security_context.sysctls):
            if sysctl.name not in SAFE_SYSCTLS and sysctl.name not in r.sysctls:
                yield Violation(("spec", "securityContext", "sysctls", j, "name"), "sysctls",
                                f"sysctl {sysctl.name} is not allowed")
        if spec.runtime_class_name and spec.runtime_class_name not in r.runtime_classes:
            yield Violation(("spec", "runtimeClassName"), "runtimeClasses",
                            f"runtime class {spec.runtime_class_name} is not allowed")
    pod_sc = spec.security_context
    for field in ("initContainers", "containers"):
        group = spec.init_containers if field == "initContainers" else spec.containers
        for i, c in enumerate(group):
            yield from _kube_container(("spec", field, i), c, pod_sc, r)


def _written_volumes(spec: Any) -> set[str]:
    """Names of the volumes some container mounts read-write."""
    return {m.name for c in [*spec.init_containers, *spec.containers]
            for m in c.volume_mounts if not m.read_only}


def _kube_container(at: tuple[PathElem, ...], c: Any, pod_sc: Any,
                    r: Rules) -> Iterator[Violation]:
    sc = c.security_context
    strict = r.level != "privileged"
    if strict and sc is not None and sc.privileged and not r.allow.privileged:
        yield Violation((*at, "securityContext", "privileged"), "allow.privileged",
                        "privileged containers are not allowed")
    if strict and sc is not None and sc.capabilities is not None:
        yield from _caps((*at, "securityContext", "capabilities", "add"),
                         sc.capabilities.add, r)
    if strict:
        for i, port in enumerate(c.ports):
            if port.host_port is not None and not _port_allowed(port.host_port, r):
                yield Violation((*at, "ports", i, "hostPort"), "hostPorts",
                                f"host port {port.host_port} is not allowed")
        for profile, where in ((sc.seccomp_profile if sc else None, (*at, "securityContext")),
                               (pod_sc.seccomp_profile, ("spec", "securityContext"))):
            yield from _seccomp(where, profile, r)
    if r.level == "restricted":  # as Kubernetes' restricted: said, not defaulted
        if sc is None or sc.allow_privilege_escalation is not False:
            yield Violation((*at, "securityContext", "allowPrivilegeEscalation"), "level",
                            "restricted needs allowPrivilegeEscalation: false")
        if sc is None or sc.capabilities is None or "ALL" not in sc.capabilities.drop:
            yield Violation((*at, "securityContext", "capabilities", "drop"), "level",
                            "restricted needs capabilities: {drop: [ALL]}")
    if r.run_as_non_root or r.level == "restricted":
        non_root = _first(sc.run_as_non_root if sc else None, pod_sc.run_as_non_root)
        user = _first(sc.run_as_user if sc else None, pod_sc.run_as_user)
        if not (user or (non_root and user is None)):
            yield Violation((*at, "securityContext", "runAsNonRoot"),
                            "runAsNonRoot" if r.run_as_non_root else "level",
                            "the container must run as non-root (runAsNonRoot: true, or "
                            "runAsUser other than 0)")
    limits = c.resources.limits
    yield from _limits((*at, "resources", "limits"), limits.get("memory"), limits.get("cpu"),
                       None, r, pids_settable=False)  # a Pod has no pids limit to set


def _seccomp(at: tuple[PathElem, ...], profile: Any, r: Rules) -> Iterator[Violation]:
    """No ``Unconfined``, and a ``Localhost`` profile only from the daemon's
    ``--seccomp-root`` (root's), as the kubelet's are from its seccomp directory: an
    absolute path could name any file, one that allows everything included."""
    if profile is None:
        return
    if profile.type.value == "Unconfined":
        yield Violation((*at, "seccompProfile", "type"), "level",
                        f"an Unconfined seccomp profile is not allowed at {r.level}")
    name = profile.localhost_profile
    if name is not None and (os.path.isabs(name) or ".." in name.split("/")):
        yield Violation((*at, "seccompProfile", "localhostProfile"), "level",
                        f"a Localhost profile outside the daemon's --seccomp-root ({name}) is"
                        f" not allowed at {r.level}")


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


# --- the rules ----------------------------------------------------------------------------


def _host_path(at: tuple[PathElem, ...], path: str, read_only: bool,
               r: Rules) -> Iterator[Violation]:
    """The most specific rule decides; the path as written and where its symlinks lead
    (now) must both be under it, so a link under an allowed prefix cannot point out."""
    allowed = ", ".join(h.path for h in r.host_paths) or "none"
    for name in dict.fromkeys((os.path.normpath(path), os.path.realpath(path))):
        rules = [h for h in r.host_paths if _under(name, h.path)]
        if not rules:
            where = "" if name == os.path.normpath(path) else f" (a link to {name})"
            yield Violation(at, "hostPaths", f"host path {path}{where} is not under an "
                                             f"allowed prefix (allowed: {allowed})")
            return
        rule = max(rules, key=lambda h: len(h.path))
        if not read_only and rule.read_only:
            yield Violation(at, "hostPaths", f"{path} may only be mounted read-only "
                                             f"(hostPaths: {rule.path} readOnly)")
            return


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def _caps(at: tuple[PathElem, ...], added: Iterable[str], r: Rules) -> Iterator[Violation]:
    base = RESTRICTED_CAPABILITIES if r.level == "restricted" else BASELINE_CAPABILITIES
    for i, cap in enumerate(added):
        if cap not in base and cap not in r.capabilities:
            yield Violation((*at, i), "capabilities",
                            f"capability {cap} is not allowed at {r.level}")


def _port_allowed(port: int, r: Rules) -> bool:
    for item in r.host_ports:
        low, _, high = str(item).partition("-")
        if int(low) <= port <= int(high or low):
            return True
    return False


def _limits(at: tuple[PathElem, ...], memory: str | None, cpu: str | None, pids: int | None,
            r: Rules, *, pids_settable: bool = True) -> Iterator[Violation]:
    most = r.max_resources
    if most is None:
        return
    measures: list[tuple[str, str | int | None, str | int | None, Callable[[Any], int]]] = [
        ("memory", memory, most.memory, quantity.to_bytes),
        ("cpu", cpu, most.cpu, quantity.to_millicores),
        ("pids", pids, most.pids, int)]
    for name, have, cap, measure in measures:
        if cap is None or (name == "pids" and not pids_settable):
            continue
        if have is None:
            yield Violation((*at, name), "maxResources", f"a {name} limit is required "
                                                          f"(at most {cap})")
        elif measure(have) > measure(cap):
            yield Violation((*at, name), "maxResources", f"{name} {have} is more than the "
                                                          f"policy's {cap}")
