"""End to end: the trusted manifests directory, with the real daemon and real runc.

Only root and ``--manifests-owner`` may write the manifests directory, its files and its
parents (sshd's StrictModes). A directory others can write makes the source unavailable:
nothing is deleted, the daemon says why (a WARNING, a ``SourceUnavailable`` event, the
status, ``get``'s warning, ``/readyz`` 503), and a ``chmod`` back brings it back. A file
others can write, or a link leading out of the directory, is that file broken: the
others are applied. Each test changes modes and owners with real ``chmod``/``chown`` and
checks runc itself.
"""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from .harness import E2E, SLOW_RESYNC, hold, runc_state, wait_until
from .test_e2e_observe import fetch, free_port

pytestmark = pytest.mark.runc

OTHER = 1000  # a uid that is neither root nor the owner
OVERRIDE = "(--insecure-manifests-dir to override)"
AT_ONCE = 5.0  # well under SLOW_RESYNC: what happens within it is event-driven


def problems(e2e: E2E) -> list[str]:
    return list(e2e.status().get("daemon", {}).get("problems") or [])


def source_reason(e2e: E2E) -> str | None:
    """The directory source's reason for being unavailable in status.json, None if it is
    available (or not reported yet)."""
    source = ((e2e.status().get("daemon") or {}).get("sources") or {}).get("directory")
    if not isinstance(source, dict) or source.get("available") is not False:
        return None
    return str(source.get("reason"))


def test_a_world_writable_directory_is_refused_and_a_chmod_back_brings_it_back(
    e2e: E2E,
) -> None:
    e2e.write("a.yaml", e2e.manifest("a"))
    port = free_port()
    d = e2e.start("--metrics-addr", f"127.0.0.1:{port}", resync=SLOW_RESYNC)
    pid = e2e.wait_running("a")
    readyz = f"http://127.0.0.1:{port}/readyz"
    assert fetch(readyz)[0] == 200

    e2e.manifests.chmod(0o777)
    why = (f"manifests directory {e2e.manifests} is writable by everyone (mode 0777):"
           f" refusing it {OVERRIDE}")
    assert wait_until(lambda: source_reason(e2e), AT_ONCE, what="the source refused") == why
    # what anyone could do now changes nothing: a manifest dropped, one removed
    e2e.write("b.yaml", e2e.manifest("b"))
    (e2e.manifests / "a.yaml").rename(e2e.tmp / "a.yaml")
    code, body = fetch(readyz)
    assert code == 503 and "unavailable" in body, (code, body)
    assert f"WARNING manifests source unavailable: {why}" in d.log()
    assert [e["message"] for e in e2e.events() if e["reason"] == "SourceUnavailable"] == [why]
    shown = e2e.cli("get")
    assert shown.stderr.startswith(
        f"warning: manifests source directory is unavailable ({why})"), shown.stderr
    assert "a " in shown.stdout
    os.kill(d.pid, signal.SIGHUP)  # a full look: still refused
    hold(lambda: e2e.running_pid("a") == pid and e2e.runc("b") is None, 2.0,
         what="a keeps running, b is not made")
    assert (runc_state(e2e.runc_root, e2e.instance("a")) or {}).get("status") == "running"

    (e2e.tmp / "a.yaml").rename(e2e.manifests / "a.yaml")
    e2e.manifests.chmod(0o755)  # a chmod is an inotify event: no resync needed
    e2e.wait_running("b", timeout=AT_ONCE)
    assert source_reason(e2e) is None
    assert fetch(readyz)[0] == 200
    assert e2e.running_pid("a") == pid
    assert "SourceAvailable" in e2e.reasons()


def test_a_group_writable_parent_is_refused_from_the_start(e2e: E2E) -> None:
    parent = e2e.tmp / "srv"
    manifests = parent / "m"
    manifests.mkdir(parents=True)
    e2e.write("a.yaml", e2e.manifest("a"), directory=manifests)
    parent.chmod(0o775)
    e2e.start(manifests=manifests, resync=SLOW_RESYNC)
    assert source_reason(e2e) == (
        f"manifests directory {manifests}: its parent {parent} is writable by group 0"
        f" (mode 0775): refusing it {OVERRIDE}")
    assert e2e.runc_names() == []
    parent.chmod(0o755)  # the parent is watched too: seen at once
    e2e.wait_running("a", timeout=AT_ONCE)


def test_a_file_owned_by_another_user_is_refused_and_the_others_applied(e2e: E2E) -> None:
    a = e2e.write("a.yaml", e2e.manifest("a"))
    e2e.start(resync=SLOW_RESYNC)
    pid = e2e.wait_running("a")
    os.chown(a, OTHER, -1)
    a.write_text(e2e.manifest("a", "sleep 1000"))  # what its new owner might write
    e2e.write("b.yaml", e2e.manifest("b"))
    e2e.wait_running("b", timeout=AT_ONCE)
    finding = (f"{a}: the file is writable by uid {OTHER}, its owner (mode 0644): not read"
               f" {OVERRIDE}")
    wait_until(lambda: finding in problems(e2e), AT_ONCE, what="the file's finding")
    assert finding in e2e.cli("describe", "a").stdout
    # keep-last-good: a runs on its last good spec, through a full look
    os.kill(e2e.daemons[0].pid, signal.SIGHUP)
    hold(lambda: e2e.running_pid("a") == pid, 1.0, what="a keeps running")
    assert source_reason(e2e) is None

    os.chown(a, 0, -1)  # root's again: read, and its new spec applied
    e2e.wait_running("a", not_pid=pid, timeout=AT_ONCE)
    wait_until(lambda: not problems(e2e), AT_ONCE, what="the finding gone")


def test_a_symlink_to_etc_is_refused(e2e: E2E) -> None:
    e2e.write("a.yaml", e2e.manifest("a"))
    (e2e.manifests / "shadow.yaml").symlink_to("/etc/passwd")
    e2e.start()
    e2e.wait_running("a")
    finding = (f"{e2e.manifests / 'shadow.yaml'}: links to /etc/passwd, outside the"
               f" manifests directory: not read {OVERRIDE}")
    assert finding in problems(e2e)


def test_the_configmap_layout_still_works(e2e: E2E) -> None:
    """A Kubernetes ConfigMap volume: ``key -> ..data/key``, ``..data -> ..<stamp>``."""
    m = e2e.manifests
    stamp = m / "..2026_01_01_00_00_00.1"
    stamp.mkdir()
    for name in "ab":
        e2e.write(f"{name}.yaml", e2e.manifest(name), directory=stamp)
        (m / f"{name}.yaml").symlink_to(f"..data/{name}.yaml")
    (m / "..data").symlink_to(stamp.name)
    e2e.start(resync=SLOW_RESYNC)
    pids = e2e.wait_all_running("ab")
    assert not problems(e2e)
    # the kubelet's swap: a new stamp dir, ..data_tmp renamed over ..data, the old removed
    new = m / "..2026_01_01_00_00_01.2"
    shutil.copytree(stamp, new, symlinks=True)
    e2e.write("a.yaml", e2e.manifest("a", "sleep 1000"), directory=new)
    (m / "..data_tmp").symlink_to(new.name)
    (m / "..data_tmp").rename(m / "..data")
    shutil.rmtree(stamp)
    e2e.wait_running("a", not_pid=pids["a"], timeout=AT_ONCE)
    assert e2e.running_pid("b") == pids["b"]


def test_a_sticky_parent_like_tmp_is_accepted(e2e: E2E) -> None:
    sticky = e2e.tmp / "tmp"
    manifests = sticky / "m"
    manifests.mkdir(parents=True)
    sticky.chmod(0o1777)
    e2e.write("a.yaml", e2e.manifest("a"), directory=manifests)
    e2e.start(manifests=manifests)
    e2e.wait_running("a")
    assert source_reason(e2e) is None


def test_insecure_manifests_dir_reads_it_and_says_so_at_every_start(e2e: E2E) -> None:
    e2e.write("a.yaml", e2e.manifest("a"))
    e2e.manifests.chmod(0o777)
    d = e2e.start("--insecure-manifests-dir")
    e2e.wait_running("a")
    warning = f"WARNING --insecure-manifests-dir: {e2e.manifests} is read whoever can write it"
    assert warning in d.log()
    d.stop()
    d = e2e.start("--insecure-manifests-dir")
    assert warning in d.log()


def test_manifests_owner_lets_that_user_write_it(e2e: E2E) -> None:
    e2e.write("a.yaml", e2e.manifest("a"))
    os.chown(e2e.manifests, OTHER, -1)
    os.chown(e2e.manifests / "a.yaml", OTHER, -1)
    e2e.start("--manifests-owner", str(OTHER))
    e2e.wait_running("a")
    assert source_reason(e2e) is None


def test_a_daemon_started_on_a_refused_directory_deletes_nothing(e2e: E2E) -> None:
    path = e2e.write("a.yaml", e2e.manifest("a"))
    d = e2e.start()
    pid = e2e.wait_running("a")
    d.stop()
    path.chmod(0o666)
    e2e.manifests.chmod(0o775)
    e2e.start()
    assert source_reason(e2e) is not None
    hold(lambda: e2e.running_pid("a") == pid, 1.5, what="a keeps running across the restart")
