"""The CLI speaks pods, end to end: the real daemon runs a Pod and a ``kind: Container``
object side by side, and ``get``, ``describe``, ``events``, ``logs``, ``exec``, ``top``
and ``stats`` address the pod as kubectl does (``web``, ``pod/web``, ``-c``), a unit
by its own name, and the plain container as they always did.

One pod start is shared by every assertion (the pod takes a few seconds to come up).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import yaml

from .harness import E2E, wait_until
from .test_e2e_pods import pod_file, running, units, world  # noqa: F401

APPS = ("default_web", "default_web_server", "default_web_client")


def talking_pod() -> str:
    """test_e2e_pods' pod, whose containers also say something on stdout."""
    config, pod = yaml.safe_load_all(pod_file())
    prepare = pod["spec"]["initContainers"][0]
    prepare["command"][-1] += "; echo prepared"
    server, client = pod["spec"]["containers"]
    server["command"] = ["sh", "-c", "echo serving; exec " + " ".join(server["command"])]
    client["command"][-1] = "echo client up; " + client["command"][-1]
    return yaml.safe_dump_all([config, pod], sort_keys=False)


def cli(e2e: E2E, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``reconciler COMMAND`` with this world's dirs first (``exec``'s argv comes last)."""
    return subprocess.run([sys.executable, "-m", "reconciler", command,
                           "--state-dir", str(e2e.state_dir),
                           "--runc-root", str(e2e.runc_root), *args],
                          capture_output=True, text=True, check=False, cwd=e2e.tmp)


def ok(e2e: E2E, command: str, *args: str) -> str:
    res = cli(e2e, command, *args)
    assert res.returncode == 0, f"reconciler {command} {' '.join(args)}: {res.stderr}"
    return res.stdout


def table(text: str) -> dict[str, list[str]]:
    """First column -> the row's cells, of every table in ``text``."""
    return {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}


def pod_row(e2e: E2E) -> list[str] | None:
    return table(ok(e2e, "get", "pods")).get("web")


def test_get_describe_logs_exec_a_pod(world: E2E) -> None:  # noqa: F811 (the fixture)
    e2e = world
    e2e.write("web.yaml", talking_pod())
    e2e.write("plain.yaml", e2e.manifest("plain"))
    e2e.start("--allow-empty")
    wait_until(lambda: running(e2e, *APPS, "plain"), 30, what="the pod and plain running")
    wait_until(lambda: (r := pod_row(e2e)) and r[1:3] == ["2/2", "Running"] and r, 10,
               what="get pods: web 2/2 Running")

    # get: the pod as one row, kubectl's columns; plain as it always was; no unit rows
    rows = table(ok(e2e, "get"))
    assert rows["web"][:4] == ["web", "2/2", "Running", "0"]
    assert rows["NAME"][:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert rows["plain"][:4] == ["plain", "1/1", "Running", "Running"]
    assert not [n for n in rows if n.startswith("default_web")]
    assert set(table(ok(e2e, "get", "pods"))) == {"NAME", "web"}
    assert set(table(ok(e2e, "get", "po", "web"))) == {"NAME", "web"}
    assert set(table(ok(e2e, "get", "containers"))) == {"NAME", "plain"}
    assert set(table(ok(e2e, "get", "pod/web"))) == {"NAME", "web"}
    assert table(ok(e2e, "get", "default_web_server"))["default_web_server"][1:3] == [
        "1/1", "Running"]
    listed = json.loads(ok(e2e, "get", "-o", "json"))
    pod: dict[str, Any] = next(x for x in listed if x.get("kind") == "Pod")
    assert (pod["name"], pod["namespace"], pod["ready"], pod["status"]) == \
        ("web", "default", "2/2", "Running")
    assert [c["pod"]["container"] for c in pod["containers"]] == ["server", "client"]
    assert [c["name"] for c in pod["initContainers"]] == ["default_web_prepare"]
    assert {"plain", "default_web_server"} <= {x["name"] for x in listed if "kind" not in x}

    # describe: kubectl's sections, the init container and both containers, all events
    described = ok(e2e, "describe", "pod/web")
    assert "Namespace:    default" in described and "app=web" in described
    assert "Status:       Running" in described
    init_part, _, app_part = described.partition("\nContainers:\n")
    assert "Init Containers:\n  prepare:" in init_part and "Reason:       Completed" in init_part
    assert app_part.index("  server:") < app_part.index("  client:")
    assert "Image:          busybox:1.36" in app_part and "/www from content (ro)" in app_part
    assert "httpd" in app_part
    events = app_part.partition("Events:")[2]
    assert "prepare" in events and "server" in events
    assert ok(e2e, "describe", "web", "-n", "default") == described
    assert {"default_web", "default_web_prepare", "default_web_server"} <= {
        line.split()[3] for line in ok(e2e, "events", "web").splitlines()}

    # logs: -c, kubectl's default container (said on stderr), --all-containers
    wait_until(lambda: "client up" in ok(e2e, "logs", "web", "-c", "client"), 10,
               what="the client's first line")
    assert ok(e2e, "logs", "web", "-c", "server") == "serving\n"
    res = cli(e2e, "logs", "web")
    assert res.returncode == 0 and res.stdout == "serving\n"
    assert 'Defaulted container "server" out of: server, client, prepare (init)' in res.stderr
    everything = ok(e2e, "logs", "web", "--all-containers").splitlines()
    assert everything[0] == "[prepare] prepared"
    assert {"[server] serving", "[client] client up"} <= set(everything)
    assert ok(e2e, "logs", "default_web_server") == "serving\n"  # a unit by its own name

    # exec: into the pod's client, which sees the init step's file in the shared volume
    prepared = (e2e.state_dir / "pods" / "default_web" / "volumes" / "work" / "prepared")
    assert ok(e2e, "exec", "web", "-c", "client", "--", "cat", "/work/prepared") == \
        prepared.read_text()
    assert ok(e2e, "exec", "plain", "--", "echo", "hi") == "hi\n"  # as it always was

    # an unknown container: named as typed, with the ones there are, and a failure
    for command in (["exec", "web", "-c", "nope", "--", "true"], ["logs", "web", "-c", "nope"]):
        res = cli(e2e, *command)
        assert res.returncode != 0
        assert 'pod "web" has no container "nope" (it has: server, client, prepare (init))' \
            in res.stderr
    res = cli(e2e, "describe", "pod/nothere")
    assert res.returncode != 0 and 'pod "nothere" not found' in res.stderr

    # top and stats: every running container of the pod, by its name in the pod
    top = ok(e2e, "top", "web").splitlines()
    assert top[0].split()[:2] == ["CONTAINER", "PID"]
    assert {line.split()[0] for line in top[1:]} == {"server", "client"}
    stats = json.loads(ok(e2e, "stats", "web", "--no-stream", "-o", "json"))
    assert sorted(s["name"] for s in stats) == ["client", "server"]
    assert all(s["pids"] >= 1 for s in stats)
    assert units(e2e)["default_web_server"]["status"] == "running"
