"""Pods in the CLI on hand-made status records (no containers, no daemon): the grouping
of units into pods, kubectl's READY/STATUS/RESTARTS words, choosing a container, the
describe sections, and ``get``/``describe``/``events`` on a crafted status.json, with
``kind: Container`` objects printed exactly as before pods."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler import cli as command_line
from reconciler.cli import pods

NOW = 1_800_000_000.0


def rec(name: str, phase: str = "Running", *, pod: str | None = "default/web",
        role: str = "app", container: str | None = None, restarts: int = 0,
        code: int | None = None, created: float = NOW - 120, **extra: Any) -> dict[str, Any]:
    """A status record as the daemon writes it (daemon/view.status_document)."""
    place = None if pod is None else {
        "pod": pod, "role": role, "labels": {"app": "web"},
        "container": container if container is not None else
        ("" if role == "sandbox" else name.rsplit("_", 1)[-1])}
    last = None if code is None else {"code": code, "signal": None, "oomKilled": False,
                                      "finishedAt": NOW - 60}
    return {"name": name, "instance": f"{name}.1", "source": "/m/web.yaml",
            "desiredState": "Running", "phase": phase,
            "pid": 100 if phase in ("Running", "Paused") else None, "restarts": restarts,
            "lastExitCode": code, "lastExit": last, "specHash": "v1-x", "message": "",
            "since": created, "created": created, "history": {}, "actual": None,
            "pod": place, **extra}


def web(*, server: str = "Running", client: str = "Running", prepare: str = "Exited",
        sandbox: str = "Running", prepare_code: int | None = 0, server_code: int | None = None,
        client_code: int | None = None, **kw: Any) -> pods.Pod:
    records = [rec("default_web", sandbox, role="sandbox"),
               rec("default_web_prepare", prepare, role="init", code=prepare_code),
               rec("default_web_server", server, code=server_code, **kw),
               rec("default_web_client", client, code=client_code)]
    _, found = pods.group(records, layouts={"default/web": LAYOUT})
    return found[0]


LAYOUT = pods.Layout(order=("prepare", "server", "client"))


# -- grouping ------------------------------------------------------------------------------


def test_units_group_into_one_pod_in_the_manifests_order_and_containers_stay_apart() -> None:
    plain = rec("db", pod=None)
    records = [rec("default_web_server"), plain, rec("default_web", role="sandbox"),
               rec("default_web_client"), rec("tools_web", role="sandbox", pod="tools/web")]
    rest, found = pods.group(records, layouts={"default/web": pods.Layout(("server", "client"))})
    assert rest == [plain]
    assert [p.key for p in found] == ["default/web", "tools/web"]
    web_pod = found[0]
    assert [m.container for m in web_pod.containers] == ["server", "client"]
    assert web_pod.sandbox is not None and web_pod.sandbox["name"] == "default_web"
    assert web_pod.units == {"default_web", "default_web_server", "default_web_client"}
    # without a manifest: app containers by name, init steps in the order they were made
    _, (bare,) = pods.group([rec("default_web_b"), rec("default_web_a"),
                             rec("default_web_z", role="init", created=NOW - 9),
                             rec("default_web_y", role="init", created=NOW - 5)])
    assert [m.container for m in bare.containers] == ["a", "b"]
    assert [m.container for m in bare.init] == ["z", "y"]


def test_layout_comes_from_the_pod_document_of_its_file() -> None:
    docs: list[object] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "tools"}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "web", "annotations": {pods.DEFAULT_CONTAINER: "client"}},
         "spec": {"initContainers": [{"name": "prepare"}],
                  "containers": [{"name": "server"}, {"name": "client"}]}},
        None,
    ]
    layout = pods.layout_of(docs, "default/web")
    assert layout == pods.Layout(("prepare", "server", "client"),
                                 {pods.DEFAULT_CONTAINER: "client"})
    assert pods.layout_of(docs, "default/other") is None


def test_names_read_kubectls_way() -> None:
    assert pods.target("web") == pods.Target(None, "web", "default", "web")
    assert pods.target("pod/web") == pods.Target("pod", "web", "default", "web")
    assert pods.target("po/web", namespace="tools").key == "tools/web"
    assert pods.target("tools/web") == pods.Target("pod", "web", "tools", "tools/web")
    assert pods.target("container/db") == pods.Target("container", "db", "default", "db")
    assert pods.display("default/web") == "web"
    assert pods.display("tools/web") == "tools/web"
    assert pods.of_pod("default_web_server", "default/web")
    assert pods.of_pod("default_web", "default/web")
    assert not pods.of_pod("default_webx", "default/web")
    assert not pods.of_pod("web", "default/web")


# -- kubectl's words ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "want"), [
    ({}, ("2/2", "Running")),
    ({"sandbox": "Creating", "prepare": "Pending", "server": "Pending", "client": "Pending",
      "prepare_code": None}, ("0/2", "Pending")),
    ({"prepare": "Running", "prepare_code": None, "server": "Pending", "client": "Pending"},
     ("0/2", "Init:0/1")),
    ({"prepare": "Creating", "prepare_code": None, "server": "Pending", "client": "Pending"},
     ("0/2", "Init:0/1")),
    ({"prepare": "BackOff", "prepare_code": 1, "server": "Pending", "client": "Pending"},
     ("0/2", "Init:CrashLoopBackOff")),
    ({"prepare": "Exited", "prepare_code": 2, "server": "Pending", "client": "Pending"},
     ("0/2", "Init:Error")),
    ({"server": "Pending", "client": "Pending"}, ("0/2", "PodInitializing")),
    ({"server": "Creating", "client": "Running"}, ("1/2", "ContainerCreating")),
    ({"server": "BackOff", "server_code": 1}, ("1/2", "CrashLoopBackOff")),
    ({"server": "Exited", "client": "Exited", "server_code": 0, "client_code": 0},
     ("0/2", "Completed")),
    ({"server": "Exited", "client": "Exited", "server_code": 3, "client_code": 0},
     ("0/2", "Error")),  # the first container's reason wins, as in kubectl
    ({"server": "Exited", "server_code": 0}, ("1/2", "NotReady")),
    ({"client": "Terminating"}, ("1/2", "Terminating")),
    ({"server": "Paused"}, ("1/2", "Running")),
])
def test_ready_and_status_follow_kubectl(kw: dict[str, Any], want: tuple[str, str]) -> None:
    pod = web(**kw)
    up, total = pods.ready(pod)
    assert (f"{up}/{total}", pods.status(pod)) == want


def test_a_sidecar_counts_in_ready_and_a_running_one_does_not_hold_init() -> None:
    records = [rec("default_web", role="sandbox"),
               rec("default_web_proxy", role="sidecar", created=NOW - 100),
               rec("default_web_server")]
    _, (pod,) = pods.group(records)
    assert pods.ready(pod) == (2, 2)
    assert pods.status(pod) == "Running"
    records[1] = rec("default_web_proxy", "BackOff", role="sidecar", code=1)
    records[2] = rec("default_web_server", "Pending")
    _, (pod,) = pods.group(records)
    assert (pods.ready(pod), pods.status(pod)) == ((0, 2), "Init:CrashLoopBackOff")


def test_restarts_are_the_containers_once_initialized_and_the_init_steps_before() -> None:
    pod = web(prepare_code=0, restarts=4)
    pod = pods.group([*pod.records[:1],
                      {**pod.records[1], "restarts": 3}, *pod.records[2:]],
                     layouts={"default/web": LAYOUT})[1][0]
    assert pods.restarts(pod) == 4  # the init step's retries no longer count
    waiting = web(prepare="BackOff", prepare_code=1, server="Pending", client="Pending")
    waiting = pods.group([waiting.records[0], {**waiting.records[1], "restarts": 2},
                          *waiting.records[2:]], layouts={"default/web": LAYOUT})[1][0]
    assert pods.restarts(waiting) == 2


def test_row_and_json() -> None:
    pod = web()
    assert pods.row(pod, now=NOW) == ["web", "2/2", "Running", "0", "2m"]
    wide = pods.row(pod, wide=True, now=NOW)
    assert wide[5:8] == ["default_web.1", "100", "/m/web.yaml"]
    _, (other,) = pods.group([rec("tools_web", role="sandbox", pod="tools/web")])
    assert pods.row(other, now=NOW) == ["tools/web", "0/0", "Pending", "0", "2m"]
    doc = pods.to_json(pod)
    assert doc["kind"] == "Pod" and doc["ready"] == "2/2" and doc["status"] == "Running"
    assert [c["name"] for c in doc["containers"]] == ["default_web_server", "default_web_client"]
    assert doc["initContainers"][0]["name"] == "default_web_prepare"
    assert doc["containerStatuses"][0] == {
        "name": "prepare", "role": "init", "unit": "default_web_prepare", "ready": True,
        "state": "terminated", "reason": "Completed", "exitCode": 0, "restartCount": 0,
        "instance": "default_web_prepare.1", "pid": None}
    json.dumps(doc)  # JSON all the way down


# -- choosing a container ----------------------------------------------------------------------


def test_a_container_is_chosen_by_c_then_by_annotation_then_first_with_a_note() -> None:
    pod = web()
    assert pods.choose(pod, "client", shown="web")[0].unit == "default_web_client"
    assert pods.choose(pod, "prepare", shown="web")[0].role == "init"
    member, note = pods.choose(pod, None, shown="web")
    assert member.container == "server"
    assert note == 'Defaulted container "server" out of: server, client, prepare (init)'
    annotated = pods.group(pod.records, layouts={"default/web": pods.Layout(
        LAYOUT.order, {pods.DEFAULT_CONTAINER: "client"})})[1][0]
    assert pods.choose(annotated, None, shown="web") == (annotated.containers[1], None)
    with pytest.raises(LookupError) as caught:
        pods.choose(pod, "nope", shown="web")
    assert str(caught.value) == \
        'pod "web" has no container "nope" (it has: server, client, prepare (init))'


# -- describe ----------------------------------------------------------------------------------


def test_describe_shows_kubectls_sections() -> None:
    actual = {"limits": {"memoryBytes": 16 << 20, "cpuQuotaUs": 50000, "cpuPeriodUs": 100000,
                         "pids": None},
              "mounts": [{"destination": "/www", "readOnly": True, "type": "ext4",
                          "source": "/s/pods/default_web/volumes/content"},
                         {"destination": "/etc/x", "readOnly": False, "type": "ext4",
                          "source": "/etc/x"}]}
    pod = web(server="BackOff", server_code=1, restarts=2, actual=actual)
    config = {"process": {"args": ["httpd", "-f"]}, "annotations": {
        "io.reconciler.manifest": json.dumps({"spec": {"image": "busybox:1.36"}})}}
    spec = pods.spec_of(config)
    assert spec == pods.Spec("busybox:1.36", ("httpd", "-f"), {})
    events = [{"time": NOW, "type": "Warning", "name": "default_web_server", "reason": "Exited",
               "message": "exited with code 1"},
              {"time": NOW, "type": "Normal", "name": "default_web", "reason": "Created",
               "message": "made"}]
    text = "\n".join(pods.describe(pod, specs={"default_web_server": spec}, events=events,
                                   when=lambda t: "T" if t else "-"))
    assert "Name:         web\nNamespace:    default\nLabels:       app=web" in text
    assert "Status:       CrashLoopBackOff" in text
    assert "Sandbox:      default_web.1 (PID 100)" in text
    init, _, rest = text.partition("\nContainers:\n")
    assert "Init Containers:\n  prepare:" in init
    server = rest.partition("  client:")[0]
    assert "State:          Waiting\n      Reason:       CrashLoopBackOff" in server
    assert "Last State:     Terminated\n      Reason:       Error\n      Exit Code:    1" \
        in server
    assert "Restart Count:  2" in server and "Ready:          False" in server
    assert "Image:          busybox:1.36\n    Command:\n      httpd\n      -f" in server
    assert "Limits:\n      memory: 16Mi\n      cpu: 500m" in server
    assert "/www from content (ro)" in server and "/etc/x from /etc/x (rw)" in server
    assert "Image:          -" in rest.partition("  client:")[2]
    assert "Normal   sandbox       Created" in text
    assert "Warning  server        Exited" in text


# -- the commands on a crafted status.json -------------------------------------------------------


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = command_line.main([argv[0], "--state-dir", str(tmp_path),
                              "--runc-root", str(tmp_path / "no-runc"), *argv[1:]])
    out = capsys.readouterr()
    return code, out.out, out.err


def write_status(tmp_path: Path, *records: dict[str, Any]) -> None:
    status = {"daemon": {"passes": 1, "cgroupParent": "/p"},
              "containers": {r["name"]: r for r in records}}
    (tmp_path / "status.json").write_text(json.dumps(status))


PLAIN_TABLE = ("NAME   READY   STATUS    DESIRED   RESTARTS   AGE   SOURCE       MESSAGE\n"
               "db     1/1     Running   Running   0          2m    /m/db.yaml")


def test_get_without_pods_prints_what_it_always_did(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    created = time.time() - 125
    db = {**rec("db", pod=None, created=created), "source": "/m/db.yaml"}
    write_status(tmp_path, db)
    assert run(tmp_path, capsys, "get") == (0, PLAIN_TABLE + "\n", "")
    assert json.loads(run(tmp_path, capsys, "get", "-o", "json")[1]) == [pods.record_json(db)]
    assert run(tmp_path, capsys, "get", "db")[1] == PLAIN_TABLE + "\n"


def test_get_describe_events_with_a_pod(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n"
                        "  initContainers: [{name: prepare, image: busybox}]\n"
                        "  containers: [{name: server, image: busybox},"
                        " {name: client, image: busybox}]\n")
    db = {**rec("db", pod=None), "source": "/m/db.yaml"}
    units = [{**r, "source": str(manifest)} for r in web().records]
    write_status(tmp_path, db, *units)
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [
        {"time": NOW, "type": "Normal", "name": "default_web_server", "reason": "Started",
         "message": "up"},
        {"time": NOW, "type": "Normal", "name": "db", "reason": "Started", "message": "up"}]))

    code, out, _ = run(tmp_path, capsys, "get")
    containers, pods_table = out.split("\n\n")
    assert [ln.split()[0] for ln in containers.splitlines()] == ["NAME", "db"]
    assert pods_table.splitlines()[1].split()[:4] == ["web", "2/2", "Running", "0"]
    assert run(tmp_path, capsys, "get", "pods")[1].splitlines()[1].split()[0] == "web"
    assert len(run(tmp_path, capsys, "get", "po")[1].splitlines()) == 2
    assert run(tmp_path, capsys, "get", "containers")[1] == containers + "\n"
    assert run(tmp_path, capsys, "get", "pod", "web")[1] == pods_table
    assert run(tmp_path, capsys, "get", "web")[1] == pods_table
    assert run(tmp_path, capsys, "get", "-n", "other", "pods")[2] == "No pods.\n"
    unit = run(tmp_path, capsys, "get", "default_web_client")[1]
    assert unit.splitlines()[1].split()[:3] == ["default_web_client", "1/1", "Running"]
    listed = json.loads(run(tmp_path, capsys, "get", "-o", "json")[1])
    # every record, in status.json's order, as before pods; then the pods
    assert [x["name"] for x in listed if "kind" not in x] == ["db", *[r["name"] for r in units]]
    pod_doc = listed[-1]
    assert pod_doc["kind"] == "Pod" and pod_doc["name"] == "web"
    assert [c["pod"]["container"] for c in pod_doc["containers"]] == ["server", "client"]

    code, out, _ = run(tmp_path, capsys, "describe", "pod/web")
    assert code == 0 and "Init Containers:\n  prepare:" in out
    assert out.index("  server:") < out.index("  client:")
    assert "server        Started" in out
    assert run(tmp_path, capsys, "describe", "web", "-n", "default")[1] == out
    assert run(tmp_path, capsys, "describe", "db")[1].startswith("Name:          db\n")

    events = run(tmp_path, capsys, "events", "web")[1].splitlines()
    assert [e.split()[3] for e in events] == ["default_web_server"]
    assert [e.split()[3] for e in run(tmp_path, capsys, "events", "db")[1].splitlines()] == \
        ["db"]

    code, _, err = run(tmp_path, capsys, "describe", "pod/nope")
    assert code == 1 and 'pod "nope" not found' in err
    code, _, err = run(tmp_path, capsys, "get", "nope")
    assert code == 1 and 'container or pod "nope" not found' in err
