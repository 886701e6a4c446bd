"""The daemon policy (``manifest/policy.py``): the file, each rule at each level, and the
findings it makes through the loader (file, line, field, rule) and ``validate --policy``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from reconciler.manifest import loader, policy

CONTAINER = """\
apiVersion: reconciler/v1
kind: Container
metadata: {name: web}
spec:
  rootfs: /srv/rootfs/web
  command: [/bin/true]
"""

POD = """\
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
    - name: c
      image: busybox
"""


def policy_of(text: str, tmp_path: Path) -> policy.Policy:
    path = tmp_path / "policy.yaml"
    path.write_text("apiVersion: reconciler/v1\nkind: Policy\n" + textwrap.dedent(text))
    found, problems = loader.load_policy(path)
    assert found is not None, problems
    return found


def findings(manifest: str, rules: policy.Rules, tmp_path: Path,
             source: str = "directory") -> list[str]:
    path = tmp_path / "m.yaml"
    path.write_text(manifest)
    check = policy.checker(rules.for_source(source) if isinstance(rules, policy.Policy)
                           else rules)
    return [str(f) for f in loader.load_file(path, check=check).findings]


RESTRICTED_SC = ("      securityContext: {allowPrivilegeEscalation: false, "
                 "capabilities: {drop: [ALL]}}\n")

BASE = """\
hostPaths:
  - {path: /srv/rootfs}
  - {path: /srv/data, readOnly: false}
"""


@pytest.mark.parametrize(("level", "extra", "manifest", "wanted"), [
    # our kind
    ("baseline", "", CONTAINER, None),
    ("baseline", "", CONTAINER.replace("/srv/rootfs/web", "/"),
     "5: spec.rootfs: host path / is not under an allowed prefix"),
    ("baseline", "", CONTAINER + "  hostNetwork: true\n",
     "7: spec.hostNetwork: the host's network namespace is not allowed (policy: "
     "allow.hostNetwork)"),
    ("baseline", "allow: {hostNetwork: true}\n", CONTAINER + "  hostNetwork: true\n", None),
    ("baseline", "", CONTAINER + "  capabilities: {add: [CHOWN, SYS_ADMIN]}\n",
     "7: spec.capabilities.add[1]: capability SYS_ADMIN is not allowed at baseline"),
    ("baseline", "capabilities: [SYS_ADMIN]\n",
     CONTAINER + "  capabilities: {add: [SYS_ADMIN]}\n", None),
    ("baseline", "", CONTAINER + "  mounts: [{type: bind, source: /etc, destination: /e, "
     "readOnly: true}]\n", "7: spec.mounts[0].source: host path /etc is not under"),
    ("baseline", "", CONTAINER + "  mounts: [{type: bind, source: /srv/rootfs/x, "
     "destination: /x}]\n", "may only be mounted read-only (hostPaths: /srv/rootfs"),
    ("baseline", "", CONTAINER + "  mounts: [{type: bind, source: /srv/data/x, "
     "destination: /x}]\n", None),
    ("baseline", "", CONTAINER + "  mounts: [{type: bind, source: /srv/database, "
     "destination: /x}]\n", "host path /srv/database is not under"),  # a prefix, not a string
    ("baseline", "", CONTAINER + "  seccompProfile: {type: Unconfined}\n",
     "spec.seccompProfile.type: an Unconfined seccomp profile is not allowed at baseline"),
    ("privileged", "", CONTAINER.replace("/srv/rootfs/web", "/")
     + "  hostNetwork: true\n  capabilities: {add: [SYS_ADMIN]}\n", None),
    ("restricted", "", CONTAINER, "spec.user.uid: the process must run as a non-root user"),
    ("restricted", "", CONTAINER + "  user: {uid: 1000}\n  capabilities: {drop: [ALL]}\n",
     None),
    ("restricted", "", CONTAINER + "  user: {uid: 1000}\n",
     "spec.capabilities.drop: restricted needs capabilities: {drop: [ALL]}"),
    ("restricted", "", CONTAINER + "  user: {uid: 1000}\n"
     "  capabilities: {add: [CHOWN], drop: [ALL]}\n",
     "capability CHOWN is not allowed at restricted"),
    ("restricted", "", CONTAINER + "  user: {uid: 1000}\n  allowPrivilegeEscalation: true\n"
     "  capabilities: {drop: [ALL]}\n",
     "spec.allowPrivilegeEscalation: privilege escalation is not allowed at restricted"),
    ("privileged", "runAsNonRoot: true\n", CONTAINER,
     "the process must run as a non-root user (spec.user.uid) (policy: runAsNonRoot)"),
    ("baseline", "maxResources: {memory: 256Mi, cpu: 500m}\n",
     CONTAINER + "  resources: {memory: 1Gi}\n",
     "spec.resources.memory: memory 1Gi is more than the policy's 256Mi (policy: "
     "maxResources)"),
    ("baseline", "maxResources: {memory: 256Mi, cpu: 500m}\n",
     CONTAINER + "  resources: {memory: 128Mi}\n",
     "spec.resources.cpu: a cpu limit is required (at most 500m)"),
    # v1 Pods
    ("baseline", "", POD, None),
    ("baseline", "", POD.replace("spec:\n", "spec:\n  hostPID: true\n"),
     "5: spec.hostPID: the host's PID namespace is not allowed (policy: allow.hostPID)"),
    ("baseline", "", POD.replace("spec:\n", "spec:\n  hostIPC: true\n"),
     "spec.hostIPC: the host's IPC namespace is not allowed"),
    ("baseline", "", POD + "      ports: [{containerPort: 80, hostPort: 80}]\n",
     "spec.containers[0].ports[0].hostPort: host port 80 is not allowed (policy: hostPorts)"),
    ("baseline", "hostPorts: ['8000-8100']\n",
     POD + "      ports: [{containerPort: 80, hostPort: 8080}]\n", None),
    ("baseline", "", POD + "      securityContext: {capabilities: {add: [NET_ADMIN]}}\n",
     "spec.containers[0].securityContext.capabilities.add[0]: capability NET_ADMIN"),
    ("baseline", "", POD + "  volumes: [{name: s, hostPath: {path: /run/docker.sock}}]\n",
     "spec.volumes[0].hostPath.path: host path /run/docker.sock is not under"),
    ("baseline", "", POD + "      volumeMounts: [{name: d, mountPath: /d}]\n"
     "  volumes: [{name: d, hostPath: {path: /srv/rootfs/d}}]\n",
     "spec.volumes[0].hostPath.path: /srv/rootfs/d may only be mounted read-only"),
    ("baseline", "", POD + "      volumeMounts: [{name: d, mountPath: /d, readOnly: true}]\n"
     "  volumes: [{name: d, hostPath: {path: /srv/rootfs/d}}]\n", None),
    ("baseline", "", POD.replace("spec:\n", "spec:\n  securityContext: {sysctls: "
                                            "[{name: kernel.msgmax, value: '1'}]}\n"),
     "spec.securityContext.sysctls[0].name: sysctl kernel.msgmax is not allowed"),
    ("baseline", "", POD.replace("spec:\n", "spec:\n  securityContext: {sysctls: "
                                            "[{name: net.ipv4.ping_group_range, "
                                            "value: '0 0'}]}\n"), None),
    ("baseline", "", POD.replace("spec:\n", "spec:\n  runtimeClassName: gvisor\n"),
     "spec.runtimeClassName: runtime class gvisor is not allowed"),
    ("baseline", "runtimeClasses: [gvisor]\n",
     POD.replace("spec:\n", "spec:\n  runtimeClassName: gvisor\n"), None),
    ("restricted", "", POD, "spec.containers[0].securityContext.runAsNonRoot: the container "
                            "must run as non-root"),
    ("restricted", "", POD.replace("spec:\n", "spec:\n  securityContext: "
                                              "{runAsNonRoot: true}\n") + RESTRICTED_SC, None),
    ("restricted", "", POD + "      securityContext: {runAsUser: 1000, "
     "allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n", None),
    ("restricted", "", POD + "      securityContext: {runAsUser: 1000}\n",
     "restricted needs allowPrivilegeEscalation: false"),
    ("restricted", "", POD + "      securityContext: {runAsUser: 1000, "
     "allowPrivilegeEscalation: false}\n", "restricted needs capabilities: {drop: [ALL]}"),
    ("baseline", "maxResources: {memory: 1Gi, pids: 100}\n",
     POD + "      resources: {limits: {memory: 512Mi}}\n", None),  # a Pod sets no pids

])
def test_each_rule(level: str, extra: str, manifest: str, wanted: str | None,
                   tmp_path: Path) -> None:
    rules = policy_of(f"level: {level}\n" + BASE + extra, tmp_path)
    found = findings(manifest, rules, tmp_path)
    if wanted is None:
        assert found == []
    else:
        assert any(wanted in f for f in found), found
        assert all(f.startswith(str(tmp_path / "m.yaml") + ":") and "(policy: " in f
                   for f in found)


def test_a_source_has_a_policy_of_its_own(tmp_path: Path) -> None:
    rules = policy_of(BASE + "sources:\n  etcd: {level: restricted}\n", tmp_path)
    assert findings(CONTAINER, rules, tmp_path, "directory") == []
    # the etcd body is whole: no hostPaths of the top level, and restricted
    etcd = findings(CONTAINER, rules, tmp_path, "etcd")
    assert any("spec.rootfs: host path /srv/rootfs/web is not under an allowed prefix "
               "(allowed: none)" in f for f in etcd), etcd
    assert any("non-root" in f for f in etcd), etcd


def test_no_policy_checks_nothing() -> None:
    assert policy.checker(None) is None


@pytest.mark.parametrize(("text", "wanted"), [
    ("level: medium\n", "3: level: must be 'privileged', 'baseline' or 'restricted'"),
    ("hostPorts: ['99999']\n", "3: hostPorts[0]: '99999' is not within 1-65535"),
    ("bogus: 1\n", "3: bogus: unknown field"),
    ("enforce: kill\n", "3: enforce: must be 'report' or 'evict'"),
    ("sources: {fleet: {}}\n", "3: sources"),
    ("capabilities: [NOT_A_CAP]\n", "capabilities[0]: 'NOT_A_CAP' is not a Linux capability"),
])
def test_a_broken_policy_file_is_findings_on_its_lines(text: str, wanted: str,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("apiVersion: reconciler/v1\nkind: Policy\n" + text)
    found, problems = loader.load_policy(path)
    assert found is None
    assert any(str(p).startswith(f"{path}:") and wanted in str(p) for p in problems), problems


@pytest.mark.parametrize("text", ["", "a: [", "---\n---\na: 1\n---\nb: 2\n", "- 1\n"])
def test_not_a_policy_at_all(text: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    found, problems = loader.load_policy(path)
    assert found is None and problems and all(str(p).startswith(str(path)) for p in problems)


def test_validate_with_a_policy(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("apiVersion: reconciler/v1\nkind: Policy\n" + BASE)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "ok.yaml").write_text(CONTAINER)
    (tmp_path / "m" / "bad.yaml").write_text(CONTAINER.replace("web", "bad").replace(
        "/srv/rootfs/bad", "/") + "  hostNetwork: true\n")

    def validate(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reconciler", "validate",
                               str(tmp_path / "m"), *extra], capture_output=True, text=True,
                              check=False, timeout=30)

    assert validate().returncode == 0  # no policy: nothing of it checked
    res = validate("--policy", str(tmp_path / "policy.yaml"))
    assert res.returncode == 1
    assert f"{tmp_path / 'm' / 'bad.yaml'}:5: spec.rootfs: host path / is not" in res.stdout
    assert "(policy: allow.hostNetwork)" in res.stdout and "ok.yaml" not in res.stdout
    (tmp_path / "broken.yaml").write_text("apiVersion: reconciler/v1\nkind: Policy\nlevel: x\n")
    res = validate("--policy", str(tmp_path / "broken.yaml"))
    assert res.returncode == 1 and f"{tmp_path / 'broken.yaml'}:3: level:" in res.stdout


def test_a_symlink_under_an_allowed_prefix_cannot_point_out(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "escape").symlink_to("/etc")
    rules = policy_of(f"hostPaths: [{{path: {allowed}}}]\n", tmp_path)
    ok = CONTAINER.replace("/srv/rootfs/web", str(allowed / "inside"))
    assert findings(ok, rules, tmp_path) == []
    out = findings(CONTAINER.replace("/srv/rootfs/web", str(allowed / "escape" / "x")),
                   rules, tmp_path)
    assert any("(a link to /etc/x) is not under an allowed prefix" in f for f in out), out


def test_the_most_specific_host_path_rule_decides(tmp_path: Path) -> None:
    rules = policy_of("hostPaths: [{path: /srv, readOnly: true}, {path: /srv/data/rw, "
                      "readOnly: false}, {path: /srv/rootfs}]\n", tmp_path)
    rw = CONTAINER + "  mounts: [{type: bind, source: /srv/data/rw/x, destination: /x}]\n"
    assert findings(rw, rules, tmp_path) == []
    other = CONTAINER + "  mounts: [{type: bind, source: /srv/other, destination: /x}]\n"
    assert any("may only be mounted read-only (hostPaths: /srv readOnly)" in f
               for f in findings(other, rules, tmp_path))


def test_a_level_by_its_name_is_a_policy_with_nothing_widened(tmp_path: Path) -> None:
    for level in policy.LEVELS:
        found, problems = loader.policy_from(level)
        assert found is not None and problems == [] and found.level == level
        assert found.host_paths == [] and found.enforce == "report"
    out = findings(CONTAINER, loader.policy_from("baseline")[0] or policy.builtin("baseline"),
                   tmp_path)
    assert any("spec.rootfs: host path /srv/rootfs/web is not under an allowed prefix" in f
               for f in out), out
    found, problems = loader.policy_from(str(tmp_path / "baseline"))  # a path: a file
    assert found is None and "cannot read file" in str(problems[0])


def test_an_oversized_policy_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("apiVersion: reconciler/v1\nkind: Policy\n" + "#" * loader.MAX_SIZE)
    found, problems = loader.load_policy(path)
    assert found is None
    assert [str(p) for p in problems] == [
        f"{path}: the file is larger than {loader.MAX_SIZE} bytes: not a policy"]


def test_enforce_evict_marks_the_object_for_deletion(tmp_path: Path) -> None:
    from reconciler.core import desired

    bad = CONTAINER.replace("/srv/rootfs/web", "/")
    report = policy_of("", tmp_path)
    path = tmp_path / "m.yaml"
    path.write_text(bad)
    kept = loader.load_file(path, check=policy.checker(report))
    assert [f.evicts for f in kept.findings] == [None]
    evict = policy_of("enforce: evict\n", tmp_path)
    gone = loader.load_file(path, check=policy.checker(evict))
    assert [f.evicts for f in gone.findings] == [("Container", "web")]
    assert "(policy: hostPaths, evicted)" in str(gone.findings[0])
    # The previous state ran it; keep-last-good carries it over under report, not evict.
    before = desired.build(desired.SourceSnapshot(
        "directory", True, None, {str(path): loader.FileResult(
            str(path), "d0", (loader.Loaded(kept_doc(tmp_path), str(path), 1, 0),), ())}), None)
    assert "web" in before.specs
    for result, carried in ((kept, True), (gone, False)):
        after = desired.build(desired.SourceSnapshot("directory", True, None,
                                                     {str(path): result}), before)
        assert ("web" in after.specs) is carried
        assert (("Container", "web") in after.evicted) is not carried


def kept_doc(tmp_path: Path) -> Any:
    good = tmp_path / "good.yaml"
    good.write_text(CONTAINER)
    [doc] = loader.load_file(good).documents
    return doc.document


def test_a_policy_file_others_can_change_is_not_trusted(tmp_path: Path) -> None:
    import os

    from reconciler.daemon.policy import untrusted

    path = tmp_path / "policy.yaml"
    path.write_text("apiVersion: reconciler/v1\nkind: Policy\n")
    tmp_path.chmod(0o755)
    assert untrusted(str(path)) is None  # /tmp is sticky: root's entry below it is safe
    path.chmod(0o666)
    assert untrusted(str(path)) == f"{path} is writable by everyone (mode 0666)"
    path.chmod(0o644)
    tmp_path.chmod(0o775)
    assert untrusted(str(path)) == f"{tmp_path} is writable by its group (mode 0775)"
    tmp_path.chmod(0o755)
    os.chown(path, 1000, 0)
    assert untrusted(str(path)) == f"{path} is owned by uid 1000"
    os.chown(path, 0, 0)
    link = tmp_path / "link.yaml"
    link.symlink_to(path)
    os.lchown(link, 1000, 0)
    assert untrusted(str(link)) == f"{link} is owned by uid 1000"


def test_a_localhost_profile_comes_from_the_seccomp_root(tmp_path: Path) -> None:
    rules = policy_of("hostPaths: [{path: /srv/rootfs}]\n", tmp_path)
    for name, refused in (("web.json", False), ("/usr/share/containers/seccomp.json", True)):
        doc = CONTAINER + (f"  seccompProfile: {{type: Localhost, localhostProfile: '{name}'}}\n")
        out = findings(doc, rules, tmp_path)
        assert bool(out) is refused, out
        if refused:
            assert "spec.seccompProfile.localhostProfile: a Localhost profile outside" in out[0]
    assert findings(CONTAINER + "  seccompProfile: {type: Localhost, localhostProfile: "
                    "/etc/x.json}\n", policy.builtin("privileged"), tmp_path) == []


def test_user_namespaces_can_be_required(tmp_path: Path) -> None:
    rules = policy_of("level: privileged\nuserNamespaces: true\n", tmp_path)
    assert findings(CONTAINER, rules, tmp_path) == [
        f"{tmp_path / 'm.yaml'}:4: spec.hostUsers: a user namespace is required (hostUsers: false)"
        " (policy: userNamespaces)"]
    assert findings(CONTAINER + "  hostUsers: false\n", rules, tmp_path) == []
    out = findings(POD, rules, tmp_path)
    assert len(out) == 1 and "spec.hostUsers: a user namespace is required" in out[0], out
    pod = POD.replace("spec:\n", "spec:\n  hostUsers: false\n", 1)
    assert findings(pod, rules, tmp_path) == []


def test_privileged_needs_allow_privileged(tmp_path: Path) -> None:
    doc = CONTAINER + "  privileged: true\n"
    rules = policy_of("hostPaths: [{path: /srv/rootfs}]\n", tmp_path)
    assert [f.split(": ", 1)[1] for f in findings(doc, rules, tmp_path)] == [
        "spec.privileged: privileged containers are not allowed (policy: allow.privileged)"]
    wider = policy_of("hostPaths: [{path: /srv/rootfs}]\nallow: {privileged: true}\n",
                      tmp_path)
    assert findings(doc, wider, tmp_path) == []
    pod = POD.replace("      image: busybox\n",
                      "      image: busybox\n      securityContext: {privileged: true}\n")
    out = findings(pod, rules, tmp_path)
    assert any("spec.containers[0].securityContext.privileged: privileged containers are not"
               " allowed (policy: allow.privileged)" in f for f in out), out
    assert findings(pod, wider, tmp_path) == []
