"""The policy's defaults and teeth end to end: real daemon, real runc.

What ``test_e2e_policy.py`` does not already prove, from the change that made a policy
the default (02c11a3):

- without ``--policy`` and ``RECONCILER_POLICY`` the daemon, and ``validate``, check at
  ``baseline``: a ``rootfs:`` tree is a host path, refused on its line; an image runs;
- ``--policy privileged`` (flag or variable) is a WARNING at every start;
- ``enforce: evict`` (at the top or for the source): what a changed policy forbids is
  stopped and deleted, not kept on its last good revision; nothing else is touched;
- the policy file must be root's (itself, a link to it, its directories; a sticky one is
  fine): at start the daemon refuses it (exit 2), live it is a ``PolicyError`` and the
  last good policy stays in force;
- ``manifestLinks`` lets a link in the manifests directory lead into a directory it names.

The suite sets ``RECONCILER_POLICY=privileged`` for every daemon (``tests/conftest.py``);
the daemon inherits the test's environment, so a test that wants the default takes the
variable out of it with ``monkeypatch`` (and reads ``/proc/PID/environ`` to be sure).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from .harness import (
    E2E,
    SLEEP_LOOP,
    Daemon,
    environ,
    hold,
    skip_without,
    wait_until,
)

pytestmark = pytest.mark.runc

IMAGE = "busybox:latest"
PRIVILEGED_WARNING = ("WARNING --policy privileged: nothing a manifest asks for is refused;"
                      " whoever can write a manifest can run anything as root")
LINK_OVERRIDE = "not read (--insecure-manifests-dir to override)"
ROOTS_ONLY = "not read (the policy must be root's, as its directories)"
OTHER = 1000  # a uid that is not root
EVICTED_WITHIN = 10.0  # the file polled every second, a look, a stop, a delete


# -- helpers -------------------------------------------------------------------------------


def rules(e2e: E2E, **fields: Any) -> dict[str, Any]:
    """A policy body at baseline whose ``hostPaths`` cover the world's rootfs."""
    return {"level": "baseline", "hostPaths": [{"path": str(e2e.rootfs)}], **fields}


def policy_text(body: dict[str, Any], *, for_source: bool = False) -> str:
    """A policy file: ``body`` at its top level, or (``for_source``) as the directory
    source's own rules, under a top level left at its defaults (baseline, report)."""
    doc: dict[str, Any] = {"apiVersion": "reconciler/v1", "kind": "Policy"}
    doc.update({"sources": {"directory": body}} if for_source else body)
    return yaml.safe_dump(doc, sort_keys=False)


def put(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Replace ``path`` atomically (a new inode, ``mode``): the daemon, which polls the
    file, never reads half of it, so one change is one reading and one event."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def image_manifest(name: str) -> str:
    doc = {"apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": name},
           "spec": {"image": IMAGE, "command": ["/bin/sh", "-c", SLEEP_LOOP]}}
    return yaml.safe_dump(doc, sort_keys=False, width=1000)


def manifest_errors(e2e: E2E, file: Path) -> list[str]:
    """The ManifestError events' messages about ``file``, oldest first (one per object
    the file defines, or one with no object when it defines none yet)."""
    return [str(e["message"]) for e in e2e.events()
            if e["reason"] == "ManifestError" and str(e["message"]).startswith(f"{file}")]


def rootfs_line(text: str) -> int:
    """The 1-based line of ``spec.rootfs`` in a manifest's text."""
    return next(i for i, line in enumerate(text.splitlines(), 1)
                if line.lstrip().startswith("rootfs:"))


def problems(e2e: E2E) -> list[str]:
    return list((e2e.status().get("daemon") or {}).get("problems") or [])


def exited(d: Daemon, timeout: float = 20) -> int:
    try:
        return d.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the daemon still runs after {timeout:g}s:\n{d.log()}") from None


def without_policy_variable() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "RECONCILER_POLICY"}


# -- the default: baseline -----------------------------------------------------------------


@pytest.fixture
def world(e2e: E2E, busybox_layout: Path) -> Iterator[E2E]:
    """``e2e`` whose image store has ``busybox:latest``: an object with no host path."""
    e2e.import_image(busybox_layout, IMAGE)
    yield e2e


@skip_without("umoci", "skopeo")
def test_without_a_policy_the_daemon_refuses_a_rootfs_tree_and_runs_an_image(
        world: E2E, monkeypatch: pytest.MonkeyPatch) -> None:
    e2e = world
    monkeypatch.delenv("RECONCILER_POLICY")
    text = e2e.manifest("tree")
    tree = e2e.write("tree.yaml", text)
    e2e.write("boxed.yaml", image_manifest("boxed"))
    d = e2e.start()  # no --policy
    assert "RECONCILER_POLICY" not in environ(d.pid)
    boxed = e2e.wait_running("boxed")

    errors = wait_until(lambda: manifest_errors(e2e, tree), 5, what="tree's finding")
    assert errors[0].startswith(f"{tree}:{rootfs_line(text)}: spec.rootfs: "), errors
    assert errors[0].endswith("(policy: hostPaths)"), errors
    # the first pass is done and boxed made: tree was refused, not left for later
    assert e2e.gone_from_host("tree") == []
    assert not (e2e.state_dir / "containers" / "tree").exists()
    assert "policy baseline: level baseline" in d.log()
    assert PRIVILEGED_WARNING not in d.log()

    # the same files at privileged: the tree runs, what ran keeps its PID
    d.stop()
    e2e.start("--policy", "privileged")
    e2e.wait_running("tree")
    assert e2e.running_pid("boxed") == boxed


def test_validate_checks_at_baseline_by_default(e2e: E2E) -> None:
    text = e2e.manifest("tree")
    tree = e2e.write("tree.yaml", text)

    def validate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reconciler", "validate", *args,
                               str(tree)], capture_output=True, text=True, env=env,
                              timeout=30, check=False)

    default = validate(env=without_policy_variable())
    assert default.returncode == 1, default
    first = default.stdout.splitlines()[0]
    assert first.startswith(f"{tree}:{rootfs_line(text)}: spec.rootfs: "), default.stdout
    assert first.endswith("(policy: hostPaths)"), default.stdout

    named = validate(env={**without_policy_variable(), "RECONCILER_POLICY": "baseline"})
    assert (named.returncode, named.stdout) == (1, default.stdout)
    flag = validate("--policy", "privileged", env=without_policy_variable())
    assert flag.returncode == 0, flag
    assert flag.stdout == "1 document in 1 file is valid\n"
    variable = validate(env={**without_policy_variable(), "RECONCILER_POLICY": "privileged"})
    assert (variable.returncode, variable.stdout) == (0, flag.stdout)


def test_privileged_is_a_warning_at_every_start(e2e: E2E) -> None:
    e2e.write("tree.yaml", e2e.manifest("tree"))
    d = e2e.start("--policy", "privileged")
    e2e.wait_running("tree")
    assert d.log().count(PRIVILEGED_WARNING) == 1, d.log()
    d.stop()
    d = e2e.start()  # RECONCILER_POLICY=privileged, as the suite sets it
    assert environ(d.pid).get("RECONCILER_POLICY") == "privileged"
    assert d.log().count(PRIVILEGED_WARNING) == 1, d.log()


# -- enforce: evict ------------------------------------------------------------------------


@pytest.mark.parametrize("for_source", [False, True], ids=["top-level", "sources.directory"])
def test_enforce_evict_deletes_what_a_changed_policy_forbids(
        e2e: E2E, for_source: bool, record: Callable[[str, float], None]) -> None:
    policy = e2e.tmp / "policy.yaml"

    def allow(capabilities: Sequence[str]) -> None:
        body = rules(e2e, capabilities=list(capabilities), enforce="evict")
        put(policy, policy_text(body, for_source=for_source))

    allow(["NET_ADMIN"])
    # admin and sibling share a file: the file turns broken, only admin is forbidden
    admin_file = e2e.write("admin.yaml", e2e.manifest("admin", capabilities={
        "add": ["NET_ADMIN"]}) + "---\n" + e2e.manifest("sibling"))
    e2e.write("plain.yaml", e2e.manifest("plain"))
    e2e.start("--policy", str(policy))
    pids = e2e.wait_all_running(["admin", "sibling", "plain"], timeout=10)

    since = time.time()
    allow([])
    took = e2e.wait_all_gone(["admin"], timeout=EVICTED_WITHIN)
    record("policy tightened to admin gone from the host", took)
    evicted = [m for m in manifest_errors(e2e, admin_file) if "evicted" in m]
    assert evicted, e2e.events()
    assert "spec.capabilities.add[0]: capability NET_ADMIN" in evicted[0]
    assert evicted[0].endswith("(policy: capabilities, evicted)"), evicted
    assert "Deleted" in e2e.reasons("admin", since=since)
    # sibling is on its last good revision (its file is broken), plain untouched
    kept = {n: pids[n] for n in ("sibling", "plain")}
    e2e.keeps(kept, 1.0, why="while admin is evicted")
    assert "Deleted" not in e2e.reasons("sibling", since=since)
    assert admin_file.exists()  # the object is evicted, not its manifest

    allow(["NET_ADMIN"])  # widened again: admin is made again from the same file
    e2e.wait_running("admin", timeout=EVICTED_WITHIN)
    assert {n: e2e.running_pid(n) for n in kept} == kept


# -- the policy file must be root's --------------------------------------------------------


def _file_others_can_write(e2e: E2E) -> tuple[Path, str]:
    policy = e2e.tmp / "policy.yaml"
    policy.write_text(policy_text(rules(e2e)))
    policy.chmod(0o666)
    return policy, f"{policy} is writable by everyone (mode 0666)"


def _directory_its_group_can_write(e2e: E2E) -> tuple[Path, str]:
    directory = e2e.tmp / "etc"
    directory.mkdir()
    policy = directory / "policy.yaml"
    policy.write_text(policy_text(rules(e2e)))
    directory.chmod(0o775)
    return policy, f"{directory} is writable by its group (mode 0775)"


def _link_another_user_owns(e2e: E2E) -> tuple[Path, str]:
    target = e2e.tmp / "policy.yaml"
    target.write_text(policy_text(rules(e2e)))
    link = e2e.tmp / "policy-link.yaml"
    link.symlink_to(target)
    os.lchown(link, OTHER, -1)
    return link, f"{link} is owned by uid {OTHER}"


@pytest.mark.parametrize("untrusted", [_file_others_can_write, _directory_its_group_can_write,
                                       _link_another_user_owns],
                         ids=["file-0666", "directory-0775", "link-of-uid-1000"])
def test_a_policy_others_can_change_refuses_the_start(
        e2e: E2E, untrusted: Callable[[E2E], tuple[Path, str]]) -> None:
    policy, why = untrusted(e2e)
    e2e.write("plain.yaml", e2e.manifest("plain"))
    d = e2e.start("--policy", str(policy), ready=False)
    assert exited(d) == 2, d.log()
    assert "error: --policy: the policy has problems:\n" in d.log()
    assert f"  {policy}: {why}: {ROOTS_ONLY}\n" in d.log(), d.log()
    assert e2e.runc_names() == []


def test_a_policy_others_can_write_is_refused_live_and_the_last_good_stays(e2e: E2E) -> None:
    sticky = e2e.tmp / "sticky"  # as /tmp: others may add entries, not replace root's
    sticky.mkdir()
    sticky.chmod(0o1777)
    policy = sticky / "policy.yaml"
    policy.write_text(policy_text(rules(e2e)))
    e2e.write("plain.yaml", e2e.manifest("plain"))
    e2e.start("--policy", str(policy))
    pid = e2e.wait_running("plain")

    policy.chmod(0o666)
    # what anyone may now write, in place (the poll may see it truncated: a second event)
    policy.write_text(policy_text(rules(e2e, capabilities=["NET_ADMIN"])))
    errors = wait_until(lambda: {e["message"] for e in e2e.events()
                                 if e["reason"] == "PolicyError"}, 5, what="a PolicyError")
    assert errors == {f"{policy}: {policy} is writable by everyone (mode 0666): {ROOTS_ONLY}"
                      " (the last good policy stays in force)"}
    # the last good policy is in force: what the refused one would allow is refused
    admin = e2e.write("admin.yaml", e2e.manifest("admin", capabilities={"add": ["NET_ADMIN"]}))
    found = wait_until(lambda: manifest_errors(e2e, admin), 5, what="admin's finding")
    assert found[0].endswith("(policy: capabilities)"), found
    hold(lambda: e2e.runc("admin") is None and e2e.running_pid("plain") == pid, 1.0,
         what="admin is not made, plain keeps running")
    assert "PolicyLoaded" not in e2e.reasons()


def test_a_policy_made_roots_again_is_read_on_sighup(e2e: E2E) -> None:
    policy = e2e.tmp / "policy.yaml"
    policy.write_text(policy_text(rules(e2e)))
    d = e2e.start("--policy", str(policy))
    put(policy, policy_text(rules(e2e, capabilities=["NET_ADMIN"])), mode=0o666)
    wait_until(lambda: "PolicyError" in e2e.reasons(), 5, what="a PolicyError")
    admin = e2e.write("admin.yaml", e2e.manifest("admin", capabilities={"add": ["NET_ADMIN"]}))
    wait_until(lambda: manifest_errors(e2e, admin), 5, what="admin refused meanwhile")

    policy.chmod(0o644)  # root's again, as it reads now; the operator asks for a reload
    os.kill(d.pid, signal.SIGHUP)  # docs/daemon.md: SIGHUP reads the --policy file again
    wait_until(lambda: "PolicyLoaded" in e2e.reasons(), 3, what="the policy read again")
    e2e.wait_running("admin", timeout=5)


# -- manifestLinks -------------------------------------------------------------------------


def test_manifest_links_lets_a_link_lead_into_the_directories_it_names(e2e: E2E) -> None:
    shared = e2e.tmp / "shared"
    near = e2e.tmp / "shared-other"  # its path starts with shared's, as text only
    for directory, name in ((shared, "linked"), (near, "near")):
        directory.mkdir()
        e2e.write(f"{name}.yaml", e2e.manifest(name), directory=directory)
        (e2e.manifests / f"{name}.yaml").symlink_to(directory / f"{name}.yaml")
    e2e.write("plain.yaml", e2e.manifest("plain"))
    policy = e2e.tmp / "policy.yaml"
    put(policy, policy_text(rules(e2e)))
    e2e.start("--policy", str(policy))
    pid = e2e.wait_running("plain")

    def refused(name: str, directory: Path) -> str:
        return (f"{e2e.manifests / f'{name}.yaml'}: links to {directory / f'{name}.yaml'},"
                f" outside the manifests directory: {LINK_OVERRIDE}")

    wait_until(lambda: {refused("linked", shared), refused("near", near)} <= set(
        problems(e2e)), 5, what="both links refused in the status")
    assert e2e.runc("linked") is None

    put(policy, policy_text(rules(e2e, manifestLinks=[str(shared)])))
    e2e.wait_running("linked", timeout=5)
    # status.json is written a moment after the container runs: read until it settles
    wait_until(lambda: problems(e2e) == [refused("near", near)], 5,
               what="only near's finding left")
    assert e2e.runc("near") is None and e2e.running_pid("plain") == pid
