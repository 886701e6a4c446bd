"""hostUsers: false against real runc: container root is an unprivileged host uid.

The daemon takes its ranges from subuid/subgid files of the test's own (``--subuid-file``,
``--subgid-file``), never the host's. Checked from the host: ``/proc/PID/status`` of the
container's init, the owner of a file it writes in its layer; from inside: the image's
files are root's, and root can write its own layer. The image's tree is never changed
(no chown copy): an idmapped mount of it is the overlay's lower layer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .harness import E2E, mounts_under, skip_without, wait_until

pytestmark = pytest.mark.runc

FIRST = 2_000_000_000  # far above any real user on the test host
SIZE = 65536


def _ids(tmp: Path) -> list[str]:
    for kind in ("uid", "gid"):
        (tmp / f"sub{kind}").write_text(
            f"someoneelse:100000:65536\nreconciler:{FIRST}:{SIZE * 4}\n")
    return ["--subuid-file", str(tmp / "subuid"), "--subgid-file", str(tmp / "subgid")]


def _status_ids(pid: int) -> tuple[list[int], list[int]]:
    lines = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                 .splitlines() if ":" in line)
    return ([int(x) for x in lines["Uid"].split()], [int(x) for x in lines["Gid"].split()])


def _exec(e2e: E2E, name: str, *argv: str) -> str:
    res = subprocess.run([sys.executable, "-m", "reconciler", "exec", "--state-dir",
                          str(e2e.state_dir), "--runc-root", str(e2e.runc_root), name, "--",
                          *argv], capture_output=True, text=True, check=False, timeout=30)
    assert res.returncode == 0, f"exec {name} {argv}: {res.stderr}"
    return res.stdout.strip()


def test_root_inside_is_an_unprivileged_uid_on_the_host(e2e: E2E) -> None:
    flags = _ids(e2e.tmp)
    script = "trap 'exit 0' TERM; echo hi > /made-inside; while true; do sleep 0.2; done"
    hostdir = e2e.tmp / "hostdir"
    hostdir.mkdir(mode=0o755)
    e2e.write("a.yaml", e2e.manifest("a", script, hostUsers=False, mounts=[
        {"type": "bind", "source": str(hostdir), "destination": "/host", "readOnly": False}]))
    e2e.write("b.yaml", e2e.manifest("b", script, hostUsers=False))
    e2e.write("host.yaml", e2e.manifest("host"))
    e2e.start(*flags)
    pids = e2e.wait_all_running(["a", "b", "host"])

    uids = {}
    for name in ("a", "b"):
        uid, gid = _status_ids(pids[name])
        assert set(uid) == {uid[0]} and uid[0] >= FIRST, uid  # real, effective, saved, fs
        assert gid[0] == uid[0]  # the same block of the gid lines
        assert Path(f"/proc/{pids[name]}/uid_map").read_text().split() == [
            "0", str(uid[0]), str(SIZE)]
        uids[name] = uid[0]
    assert uids["a"] != uids["b"] and abs(uids["a"] - uids["b"]) >= SIZE  # never shared
    assert _status_ids(pids["host"])[0][0] == 0  # the default is unchanged

    # Inside: it is root, the image's files are root's, and its own file is its root's.
    assert _exec(e2e, "a", "id", "-u") == "0"
    assert _exec(e2e, "a", "stat", "-c", "%u:%g", "/bin/busybox") == "0:0"
    wait_until(lambda: _exec(e2e, "a", "cat", "/made-inside") == "hi", 5, what="the file")
    assert _exec(e2e, "a", "stat", "-c", "%u", "/made-inside") == "0"
    # From the host: the file in its layer is owned by its range; the image is untouched.
    upper = next(e2e.state_dir.glob("containers/a.*/layer/upper"))
    assert (upper / "made-inside").stat().st_uid == uids["a"]
    assert (e2e.rootfs / "bin" / "busybox").stat().st_uid == 0
    assert not (e2e.rootfs / "made-inside").exists()
    # Root in its namespace is no one on the host: a host root's directory mounted
    # read-write is nobody's inside (65534), and it cannot write there.
    assert _exec(e2e, "a", "stat", "-c", "%u", "/host") == "65534"
    denied = subprocess.run([sys.executable, "-m", "reconciler", "exec", "--state-dir",
                             str(e2e.state_dir), "--runc-root", str(e2e.runc_root), "a", "--",
                             "touch", "/host/x"], capture_output=True, text=True, timeout=30)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    assert not (hostdir / "x").exists()

    held = json.loads((e2e.state_dir / "userns.json").read_text())["slots"]
    assert set(held) == {"Container/a", "Container/b"}

    # A recreate keeps the object's range; a delete frees it and the idmapped mount.
    e2e.write("a.yaml", e2e.manifest("a", script + " # v2", hostUsers=False))  # no mount
    old = pids["a"]
    new = wait_until(lambda: (p := e2e.running_pid("a")) not in (None, old) and p, 20,
                     what="a recreated")
    assert _status_ids(int(new))[0][0] == uids["a"]
    os.unlink(e2e.manifests / "a.yaml")
    e2e.wait_gone("a", 20)
    wait_until(lambda: "Container/a" not in json.loads(
        (e2e.state_dir / "userns.json").read_text())["slots"], 10, what="a's range freed")
    assert not [m for m in mounts_under(e2e.state_dir) if "/containers/a." in m]


def test_no_range_for_the_user_is_a_clear_error_and_others_run(e2e: E2E) -> None:
    (e2e.tmp / "subuid").write_text("someoneelse:100000:65536\n")
    (e2e.tmp / "subgid").write_text("someoneelse:100000:65536\n")
    e2e.write("a.yaml", e2e.manifest("a", hostUsers=False))
    e2e.write("host.yaml", e2e.manifest("host"))
    e2e.start("--subuid-file", str(e2e.tmp / "subuid"), "--subgid-file",
              str(e2e.tmp / "subgid"))
    e2e.wait_all_running(["host"])
    wanted = f"gives user reconciler no range of {SIZE} ids"
    wait_until(lambda: wanted in e2e.cli("describe", "a", check=False).stdout, 15,
               what="the error in describe")
    assert e2e.running_pid("a") is None


def test_with_host_network_is_refused_on_its_field(e2e: E2E) -> None:
    e2e.write("a.yaml", e2e.manifest("a", hostUsers=False, hostNetwork=True))
    res = subprocess.run([sys.executable, "-m", "reconciler", "validate",
                          str(e2e.manifests / "a.yaml")],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 1
    assert "hostUsers: false needs a network namespace of its own" in res.stdout


@skip_without("umoci", "skopeo", "catatonit")
def test_a_pod_shares_one_user_namespace_of_its_own(e2e: E2E, busybox_layout: Path) -> None:
    """Its sandbox makes the namespace, its containers join it (so the pod's network
    namespace is theirs: root binds port 80), and its emptyDir is writable."""
    e2e.import_image(busybox_layout, "busybox:1.36")
    flags = _ids(e2e.tmp)
    c = {"image": "busybox:1.36", "imagePullPolicy": "IfNotPresent",
         "volumeMounts": [{"name": "work", "mountPath": "/work"}]}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
        "hostUsers": False, "terminationGracePeriodSeconds": 1,
        "containers": [
            {**c, "name": "server", "command": ["httpd", "-f", "-p", "80", "-h", "/work"]},
            {**c, "name": "client", "command": ["sh", "-c",
             "echo ok > /work/index.html; while true; do wget -q -O /work/got"
             " http://127.0.0.1:80/index.html; sleep 0.2; done"]}],
        "volumes": [{"name": "work", "emptyDir": {}}]}}
    e2e.write("p.yaml", yaml.safe_dump(pod))
    e2e.start(*flags)
    pids = e2e.wait_all_running(["default_p", "default_p_server", "default_p_client"])
    spaces = {os.readlink(f"/proc/{pid}/ns/user") for pid in pids.values()}
    assert len(spaces) == 1 and spaces != {os.readlink("/proc/self/ns/user")}
    assert {_status_ids(pid)[0][0] for pid in pids.values()} == {FIRST}
    got = e2e.state_dir / "pods" / "default_p" / "volumes" / "work" / "got"
    wait_until(lambda: got.exists() and got.read_text() == "ok\n", 15,
               what="the client's fetch from port 80")
    assert got.stat().st_uid == FIRST  # written by the pod's root
    held = json.loads((e2e.state_dir / "userns.json").read_text())["slots"]
    assert held == {"Pod/default/p": 0}
