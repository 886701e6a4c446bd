"""Kubernetes v1 Pods end to end: the real daemon, runc, conmon and catatonit.

A two-container Pod with an init container and a ConfigMap, from one multi-document
file: the init step runs first, the client reaches the server on 127.0.0.1 inside the
pod's own network namespace (nothing leaves it), a ConfigMap change reaches the running
pod's files without a restart, a changed command recreates that container alone, and a
deleted file leaves nothing behind. Units are read from runc itself (``runc list``) and
from /proc, not from our status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .harness import (
    E2E,
    current_entries,
    hold,
    mounts_under,
    pid_alive,
    runc_list,
    skip_without,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]

IMAGE = "busybox:1.36"

pytestmark = [skip_without("umoci", "skopeo", "catatonit")]


@pytest.fixture
def world(e2e: E2E, busybox_layout: Path) -> Iterator[E2E]:
    """An e2e world whose image store has ``busybox:1.36``."""
    e2e.import_image(busybox_layout, IMAGE)
    yield e2e


def pod_file(*, content: str = "hello v1", client_sleep: str = "0.2") -> str:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-content"},
              "data": {"index.html": f"{content}\n"}}
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "terminationGracePeriodSeconds": 3,
            "initContainers": [{
                "name": "prepare", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "cat /proc/sys/kernel/random/uuid > /work/prepared"],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            }],
            "containers": [
                {"name": "server", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                 "command": ["httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www"],
                 "volumeMounts": [{"name": "content", "mountPath": "/www"}]},
                {"name": "client", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                 "command": ["sh", "-c",
                             "trap 'exit 0' TERM; while true; do wget -q -O /work/got.tmp"
                             " http://127.0.0.1:8080/index.html && mv /work/got.tmp /work/got;"
                             f" sleep {client_sleep}; done"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
            ],
            "volumes": [{"name": "content", "configMap": {"name": "web-content"}},
                        {"name": "work", "emptyDir": {}}],
        },
    }
    return yaml.safe_dump_all([config, pod], sort_keys=False)


def units(e2e: E2E) -> dict[str, dict[str, Any]]:
    """Unit name -> its current runc entry."""
    return current_entries(runc_list(e2e.runc_root))


def running(e2e: E2E, *names: str) -> dict[str, dict[str, Any]] | None:
    found = units(e2e)
    if all(found.get(n, {}).get("status") == "running" for n in names):
        return found
    return None


def gone(e2e: E2E, sandbox: str) -> bool:
    """No unit in runc, and the pod's directory removed: the sandbox's delete is done
    (runc forgets the sandbox a moment before its volumes are cleared)."""
    return not units(e2e) and not (e2e.state_dir / "pods" / sandbox).exists()


def work(e2e: E2E, name: str) -> str | None:
    path = e2e.state_dir / "pods" / "default_web" / "volumes" / "work" / name
    try:
        return path.read_text()
    except OSError:
        return None


def test_two_container_pod_with_init_and_configmap(world: E2E) -> None:
    e2e = world
    e2e.write("web.yaml", pod_file())
    daemon = e2e.start("--allow-empty")
    apps = ("default_web", "default_web_server", "default_web_client")
    found = wait_until(lambda: running(e2e, *apps), 30, what="the pod running")
    init = found["default_web_prepare"]
    assert init["status"] == "stopped"  # ran to completion before the others
    prepared = work(e2e, "prepared")
    assert prepared and len(prepared.strip()) == 36
    server_pid, client_pid = found["default_web_server"]["pid"], found["default_web_client"]["pid"]
    box_pid = found["default_web"]["pid"]
    # one network, IPC and UTS namespace for the pod: the sandbox's
    for kind in ("net", "ipc", "uts"):
        box_ns = os.readlink(f"/proc/{box_pid}/ns/{kind}")
        assert os.readlink(f"/proc/{server_pid}/ns/{kind}") == box_ns
        assert os.readlink(f"/proc/{client_pid}/ns/{kind}") == box_ns
        assert box_ns != os.readlink(f"/proc/self/ns/{kind}")
    assert os.readlink(f"/proc/{server_pid}/ns/pid") != os.readlink(f"/proc/{box_pid}/ns/pid")
    assert Path(f"/proc/{box_pid}/comm").read_text().strip() == "catatonit"
    # the client reaches the server over the pod's loopback
    wait_until(lambda: work(e2e, "got") == "hello v1\n", 15, what="the client's fetch")

    # a ConfigMap change: the files swap in place, nothing restarts
    e2e.write("web.yaml", pod_file(content="hello v2"))
    wait_until(lambda: work(e2e, "got") == "hello v2\n", 15, what="the new content served")
    now = units(e2e)
    assert now["default_web_server"]["pid"] == server_pid
    assert now["default_web_client"]["pid"] == client_pid
    assert now["default_web"]["pid"] == box_pid

    # a new daemon adopts the pod as it is: nothing is made again, the init does not rerun
    daemon.stop()
    e2e.start("--allow-empty")
    hold(lambda: {n: e["pid"] for n, e in units(e2e).items() if e["status"] == "running"}
         == {"default_web": box_pid, "default_web_server": server_pid,
             "default_web_client": client_pid}, 1.5, what="the adopted pod unchanged")

    # the client's command changes: the client alone is made again, in the same sandbox
    e2e.write("web.yaml", pod_file(content="hello v2", client_sleep="0.3"))
    found = wait_until(
        lambda: (u := running(e2e, *apps)) and u["default_web_client"]["pid"] != client_pid
        and u, 20, what="a new client")
    assert found["default_web_server"]["pid"] == server_pid
    assert found["default_web"]["pid"] == box_pid
    new_client = found["default_web_client"]["pid"]
    assert os.readlink(f"/proc/{new_client}/ns/net") == os.readlink(f"/proc/{box_pid}/ns/net")
    assert work(e2e, "prepared") == prepared  # the init step did not run again

    # the file goes: every unit, mount, volume dir, cgroup and the infra process go
    (e2e.manifests / "web.yaml").unlink()
    wait_until(lambda: gone(e2e, "default_web"), 20, what="the pod gone")
    assert not pid_alive(box_pid)
    assert not (e2e.state_dir / "pods" / "default_web").exists()
    assert not [m for m in mounts_under(e2e.state_dir) if "/pods/" in m]
    assert not list((e2e.state_dir / "containers").glob("default_web*"))
    parent = e2e.sandbox.cgroup_parent.strip("/")
    assert not list(Path("/sys/fs/cgroup/pids", parent).glob("default_web*"))


def gvisor_pod() -> str:
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "untrusted"},
        "spec": {
            "runtimeClassName": "gvisor",
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "uname -r; trap 'exit 0' TERM; while true; do sleep 0.2;"
                            " done"],
            }],
        },
    }
    return yaml.safe_dump(pod, sort_keys=False)


def runsc_list(e2e: E2E) -> list[dict[str, Any]]:
    root = f"{e2e.runc_root}.gvisor"
    if not os.path.isdir(root):
        return []
    out = subprocess.run(["runsc", f"--root={root}", "list", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    found: list[dict[str, Any]] = json.loads(out or "null") or []
    return found


@skip_without("runsc")
def test_gvisor_pod_runs_under_runsc_and_survives_a_daemon_restart(world: E2E) -> None:
    e2e = world
    e2e.write("untrusted.yaml", gvisor_pod())
    daemon = e2e.start("--allow-empty")
    app = wait_until(lambda: [c for c in runsc_list(e2e) if c["status"] == "running"], 30,
                     what="the container running under runsc")[0]
    assert app["annotations"]["io.reconciler.pod"] == "default/untrusted"
    assert "default_untrusted_app" not in units(e2e)  # not a runc container
    # gVisor's kernel, not the host's, answers uname
    log = e2e.state_dir / "containers" / app["id"] / "logs" / "current.log"
    release = wait_until(lambda: log.exists() and log.read_text().strip(), 10,
                         what="the container's output")
    assert os.uname().release not in release

    # the CLI finds it under runsc (the daemon recorded its runtime classes)
    out = subprocess.run([sys.executable, "-m", "reconciler", "exec", "--state-dir",
                          str(e2e.state_dir), "--runc-root", str(e2e.runc_root), "untrusted",
                          "--", "cat", "/proc/version"], capture_output=True, text=True,
                         check=True, timeout=20).stdout
    assert "gVisor" in out or os.uname().release not in out

    daemon.stop()
    e2e.start("--allow-empty")
    again = wait_until(lambda: [c for c in runsc_list(e2e) if c["status"] == "running"], 10,
                       what="the adopted container")
    assert again[0]["id"] == app["id"] and again[0]["pid"] == app["pid"]

    (e2e.manifests / "untrusted.yaml").unlink()
    wait_until(lambda: not runsc_list(e2e) and not units(e2e), 20, what="the pod gone")
    assert not pid_alive(app["pid"])


def volumes_pod(host_dir: Path) -> str:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
              "stringData": {"token": "s3cret-token"}}
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "vols", "labels": {"tier": "back"}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "securityContext": {"fsGroup": 2000},
            "containers": [{
                "name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
                "volumeMounts": [{"name": "creds", "mountPath": "/creds", "readOnly": True},
                                 {"name": "info", "mountPath": "/info"},
                                 {"name": "host", "mountPath": "/host"},
                                 {"name": "fast", "mountPath": "/fast"}],
            }],
            "volumes": [
                {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "host", "hostPath": {"path": str(host_dir), "type": "Directory"}},
                {"name": "fast", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
            ],
        },
    }
    return yaml.safe_dump_all([secret, pod], sort_keys=False)


def in_container(e2e: E2E, unit: str, *argv: str) -> str:
    instance = units(e2e)[unit]["id"]
    return subprocess.run(["runc", f"--root={e2e.runc_root}", "exec", instance, *argv],
                          capture_output=True, text=True, check=True, timeout=10).stdout


def test_secret_on_tmpfs_downward_api_host_path_and_memory_volume(world: E2E) -> None:
    e2e = world
    host_dir = e2e.tmp / "host-data"
    e2e.write("vols.yaml", volumes_pod(host_dir))  # the hostPath is not there yet
    e2e.start("--allow-empty")
    wait_until(lambda: "hostPath type Directory: it does not exist" in json.dumps(
        e2e.events()), 15, what="the hostPath check failing")
    assert "default_vols_app" not in units(e2e)
    host_dir.mkdir()
    (host_dir / "hello").write_text("from the host\n")
    wait_until(lambda: running(e2e, "default_vols", "default_vols_app"), 30,
               what="the pod running once the hostPath exists")
    unit = "default_vols_app"
    assert in_container(e2e, unit, "cat", "/creds/token") == "s3cret-token"
    assert in_container(e2e, unit, "cat", "/info/labels") == 'tier="back"'
    assert in_container(e2e, unit, "cat", "/host/hello") == "from the host\n"
    assert "2000" in in_container(e2e, unit, "id", "-G").split()  # fsGroup
    volumes = e2e.state_dir / "pods" / "default_vols" / "volumes"
    mounted = {Path(m).name: m for m in mounts_under(volumes)}
    assert {"creds", "fast"} <= set(mounted)  # the Secret's files and the memory emptyDir
    with open("/proc/self/mountinfo") as f:
        kinds = {line.split()[4]: line.split(" - ")[1].split()[0] for line in f}
    assert kinds[str(volumes / "creds")] == kinds[str(volumes / "fast")] == "tmpfs"
    fast = in_container(e2e, unit, "df", "-k", "/fast").splitlines()[-1].split()
    assert int(fast[1]) == 8192  # sizeLimit
    (e2e.manifests / "vols.yaml").unlink()
    wait_until(lambda: gone(e2e, "default_vols"), 20, what="the pod gone")
    assert not mounts_under(e2e.state_dir / "pods")
    assert (host_dir / "hello").exists()  # a hostPath is never removed


def test_tty_and_stdin(world: E2E) -> None:
    """tty: the process prints on a terminal (conmon holds the pty and logs it); stdin:
    its stdin stays open, so a read waits instead of meeting end-of-file."""
    e2e = world
    loop = "trap 'exit 0' TERM; while true; do sleep 0.2; done"
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "term"},
        "spec": {"terminationGracePeriodSeconds": 2, "restartPolicy": "Never", "containers": [
            {"name": "tty", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "tty": True,
             "command": ["sh", "-c", f"[ -t 1 ] && echo on-a-tty; {loop}"]},
            {"name": "reader", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
             "stdin": True, "command": ["sh", "-c", "read line; echo eof"]},
            {"name": "closed", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
             "command": ["sh", "-c", "read line; echo eof"]},
        ]},
    }
    e2e.write("term.yaml", yaml.safe_dump(pod, sort_keys=False))
    e2e.start("--allow-empty")

    def log(unit: str) -> str:
        found = units(e2e).get(unit)
        path = e2e.state_dir / "containers" / str((found or {}).get("id")) / "logs"
        return (path / "current.log").read_text() if (path / "current.log").exists() else ""

    wait_until(lambda: "on-a-tty" in log("default_term_tty"), 20, what="output on a tty")
    wait_until(lambda: units(e2e).get("default_term_closed", {}).get("status") == "stopped",
               10, what="a read of /dev/null ending at once")
    assert "eof" in log("default_term_closed")
    assert units(e2e)["default_term_reader"]["status"] == "running"  # still waiting
    assert "eof" not in log("default_term_reader")
