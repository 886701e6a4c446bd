"""The CLI's verbs and flags (issue 17) against the real daemon and real containers.

Each test starts a daemon on its own world, lets it make containers, then runs the
``reconciler`` command as a user types it and checks what it prints and its exit code,
and where it can, the host behind the answer (runc's PID and instance, the container's
own files through ``/proc/PID/root``, the OCI config). Streaming commands (``get -w``,
``events -f``) run as subprocesses read line by line, each wait bounded, and are killed
once the change is seen.

Not asserted here on purpose: the time format of ``get -o json`` and ``-o jsonpath``,
both being changed elsewhere.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from .harness import (
    E2E,
    SLEEP_LOOP,
    generation,
    instance_name,
    pid_alive,
    skip_without,
    wait_until,
)
from .test_e2e_pods import IMAGE
from .test_e2e_verbs import verb

pytestmark = pytest.mark.runc

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# -- helpers -------------------------------------------------------------------------------


def labelled(e2e: E2E, name: str, labels: dict[str, str], script: str = SLEEP_LOOP,
             **spec: Any) -> str:
    """``e2e.manifest`` with ``metadata.labels``."""
    doc = yaml.safe_load(e2e.manifest(name, script, **spec))
    doc["metadata"]["labels"] = labels
    return yaml.safe_dump(doc, sort_keys=False, width=1000)


def cli_first(e2e: E2E, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``reconciler COMMAND --state-dir S --runc-root R ARGS``: the world's dirs before
    ARGS, for ``exec`` whose argv after ``--`` must come last."""
    return subprocess.run([sys.executable, "-m", "reconciler", command,
                           "--state-dir", str(e2e.state_dir),
                           "--runc-root", str(e2e.runc_root), *args],
                          capture_output=True, text=True, check=False, cwd=e2e.tmp,
                          timeout=30)


def names_of(table: str) -> list[str]:
    """The first column of each row of a table (the header row too, if printed)."""
    return [line.split()[0] for line in table.splitlines() if line.strip()]


def rows_of(table: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in table.splitlines() if line.strip()}


def reasons_in(table: str) -> list[str]:
    """The REASON column of ``events`` (TIME is two words: date, time)."""
    return [line.split()[4] for line in table.splitlines() if line.strip()]


class Streamed:
    """A CLI command that keeps printing (``get -w``, ``events -f``): its stdout read line
    by line in a thread as it prints, so a test can wait for a line with a bound."""

    def __init__(self, e2e: E2E, *args: str) -> None:
        self.stderr_path = e2e.tmp / f"streamed-{args[0]}-{time.monotonic_ns()}.err"
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", *args, "--state-dir", str(e2e.state_dir),
             "--runc-root", str(e2e.runc_root)],
            stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL,
            text=True, cwd=e2e.tmp)
        self.seen: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, ""):
            self._lines.put(line.rstrip("\n"))

    def wait_line(self, predicate: Callable[[str], bool], timeout: float, *,
                  what: str) -> str:
        """The next line that ``predicate`` accepts (every line read is kept in ``seen``)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no line with {what} after {timeout:g}s; read: {self.seen}; "
                             f"stderr: {self.stderr_path.read_text()!r}; "
                             f"exit: {self.proc.poll()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self._reader.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()


@contextmanager
def streamed(e2e: E2E, *args: str) -> Iterator[Streamed]:
    s = Streamed(e2e, *args)
    try:
        yield s
    finally:
        s.stop()


# -- get -----------------------------------------------------------------------------------


@pytest.fixture
def labelled_world(e2e: E2E) -> E2E:
    """web1 (app=web, tier=front), web2 (app=web, canary=true), db (app=db), running."""
    e2e.write("web1.yaml", labelled(e2e, "web1", {"app": "web", "tier": "front"}))
    e2e.write("web2.yaml", labelled(e2e, "web2", {"app": "web", "canary": "true"}))
    e2e.write("db.yaml", labelled(e2e, "db", {"app": "db"}))
    e2e.start()
    e2e.wait_all_running(["web1", "web2", "db"], timeout=15)
    wait_until(lambda: {c["phase"] for c in e2e.get_all().values()} == {"Running"}, 10,
               what="get says all three Running")
    return e2e


def test_get_selects_by_label(labelled_world: E2E) -> None:
    e2e = labelled_world

    def selected(selector: str) -> list[str]:
        return names_of(e2e.cli("get", "-l", selector, "--no-headers").stdout)

    assert sorted(selected("app=web")) == ["web1", "web2"]
    assert sorted(selected("!canary")) == ["db", "web1"]
    assert selected("app in (db,cache)") == ["db"]
    assert selected("app notin (db),!canary") == ["web1"]
    assert selected("tier=back") == []
    with_head = e2e.cli("get", "-l", "!canary").stdout
    assert names_of(with_head)[0] == "NAME" and sorted(names_of(with_head)[1:]) == \
        ["db", "web1"]


def test_get_output_formats(labelled_world: E2E) -> None:
    e2e = labelled_world
    shown = rows_of(e2e.cli("get", "--show-labels").stdout)
    assert shown["NAME"][-1] == "LABELS"
    assert shown["web1"][-1] == "app=web,tier=front"
    assert shown["web2"][-1] == "app=web,canary=true"
    assert shown["db"][-1] == "app=db"

    bare = e2e.cli("get", "--no-headers").stdout
    assert sorted(names_of(bare)) == ["db", "web1", "web2"]  # no NAME row
    assert e2e.cli("get", "-o", "name").stdout.splitlines() == \
        ["container/db", "container/web1", "container/web2"]
    assert e2e.cli("get", "-o", "name", "-l", "app=web").stdout.splitlines() == \
        ["container/web1", "container/web2"]

    # wide: the PID and instance runc has, and the daemon's cgroup parent
    wide = e2e.cli("get", "-o", "wide").stdout
    head = wide.splitlines()[0]
    assert "PID" in head and "INSTANCE" in head and "SPEC HASH" in head
    pids = e2e.running_pids()
    for name in ("web1", "web2", "db"):
        row = rows_of(wide)[name]
        assert str(pids[name]) in row and e2e.instance(name) in row, row
    assert wide.splitlines()[-1] == f"cgroup parent: {e2e.sandbox.cgroup_parent}"

    # yaml: the records, with their labels, the instance runc runs
    doc = yaml.safe_load(e2e.cli("get", "-o", "yaml").stdout)
    by_name = {c["name"]: c for c in doc}
    assert set(by_name) == {"web1", "web2", "db"}
    assert by_name["web2"]["labels"] == {"app": "web", "canary": "true"}
    assert by_name["db"]["instance"] == e2e.instance("db")
    assert by_name["db"]["pid"] == pids["db"] and by_name["db"]["phase"] == "Running"


def test_get_several_names_and_a_missing_one(labelled_world: E2E) -> None:
    e2e = labelled_world
    assert names_of(e2e.cli("get", "db", "web1").stdout) == ["NAME", "db", "web1"]
    assert e2e.cli("get", "web2", "db", "-o", "name").stdout == "container/web2\ncontainer/db\n"

    partly = e2e.cli("get", "web1", "nope", check=False)
    assert partly.returncode == 1
    assert names_of(partly.stdout) == ["NAME", "web1"]  # what was found is still shown
    assert partly.stderr == 'error: container or pod "nope" not found\n'
    missing = e2e.cli("get", "nope", check=False)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == 'error: container or pod "nope" not found\n'


def test_get_watch_prints_a_row_again_when_it_changes(e2e: E2E) -> None:
    e2e.write("w.yaml", labelled(e2e, "w", {"app": "web"}))
    e2e.start()
    e2e.wait_running("w")
    e2e.wait_phase("w", "Running")
    with streamed(e2e, "get", "w", "-w", "--no-headers") as watch:
        first = watch.wait_line(lambda line: line.startswith("w "), 10, what="w's first row")
        assert first.split()[1:4] == ["1/1", "Running", "Running"]
        e2e.write("w.yaml", labelled(e2e, "w", {"app": "web"}, state="Paused"))
        again = watch.wait_line(lambda line: line.split()[2:3] == ["Paused"], 10,
                                what="w Paused")
        assert again.split()[:4] == ["w", "0/1", "Paused", "Paused"]
        assert watch.proc.poll() is None  # still watching
    assert (e2e.runc("w") or {}).get("status") == "paused"  # runc's word, not ours


def test_get_watch_with_a_selector(e2e: E2E) -> None:
    # the README's `get -w -l app=web`: a changed row is selected (and labelled) by the
    # labels, which status.json does not carry for a kind: Container object
    e2e.write("w.yaml", labelled(e2e, "w", {"app": "web"}))
    e2e.write("other.yaml", labelled(e2e, "other", {"app": "db"}))
    e2e.start()
    e2e.wait_all_running(["w", "other"])
    e2e.wait_phase("w", "Running")
    watched = ("get", "-w", "-l", "app=web", "--show-labels", "--no-headers")
    with streamed(e2e, *watched) as watch:
        watch.wait_line(lambda line: line.startswith("w "), 10, what="w's first row")
        e2e.write("other.yaml", labelled(e2e, "other", {"app": "db"}, state="Paused"))
        e2e.wait_phase("other", "Paused")
        e2e.write("w.yaml", labelled(e2e, "w", {"app": "web"}, state="Paused"))
        again = watch.wait_line(lambda line: line.split()[:3] == ["w", "0/1", "Paused"],
                                10, what="w Paused")
        assert again.split()[-1] == "app=web"
    assert not [line for line in watch.seen if line.startswith("other")]  # not selected


# -- events --------------------------------------------------------------------------------


def test_events_since_tail_json_and_follow(e2e: E2E) -> None:
    e2e.write("ev.yaml", e2e.manifest("ev"))
    e2e.write("quiet.yaml", e2e.manifest("quiet"))
    e2e.start()
    e2e.wait_all_running(["ev", "quiet"])
    e2e.write("ev.yaml", e2e.manifest("ev", state="Paused"))
    wait_until(lambda: "Paused" in e2e.reasons("ev"), 10, what="ev's Paused event")
    logged = e2e.events("ev")
    assert [e["reason"] for e in logged] == ["Created", "Paused"]

    assert reasons_in(e2e.cli("events", "ev", "--since", "1h").stdout) == ["Created", "Paused"]
    assert e2e.cli("events", "--since", "1h").stdout.count("Created") == 2  # ev and quiet
    time.sleep(0.05)
    assert e2e.cli("events", "ev", "--since", "10ms").stdout == ""  # nothing that recent
    assert reasons_in(e2e.cli("events", "ev", "--tail", "1").stdout) == ["Paused"]

    lines = e2e.cli("events", "ev", "-o", "json").stdout.splitlines()
    parsed = [json_line(line) for line in lines]
    assert [p["reason"] for p in parsed] == ["Created", "Paused"]
    for p, e in zip(parsed, logged, strict=True):
        assert RFC3339_MS.match(p["time"]), p["time"]
        when = datetime.fromisoformat(p["time"]).timestamp()
        assert abs(when - e["time"]) < 0.002 and abs(when - time.time()) < 60
        assert (p["name"], p["type"], p["message"]) == ("ev", e["type"], e["message"])

    with streamed(e2e, "events", "ev", "-f", "-o", "json", "--tail", "1") as follow:
        old = follow.wait_line(lambda line: True, 10, what="the last event")
        assert json_line(old)["reason"] == "Paused"
        e2e.write("ev.yaml", e2e.manifest("ev"))  # Running again: a Resumed event
        new = follow.wait_line(lambda line: json_line(line)["reason"] == "Resumed", 10,
                               what="Resumed")
        assert RFC3339_MS.match(json_line(new)["time"])
        assert follow.proc.poll() is None
    assert all(json_line(line)["name"] == "ev" for line in follow.seen)  # not quiet's


def json_line(line: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(line)
    return doc


def test_a_recreated_name_starts_a_fresh_history(e2e: E2E) -> None:
    ctl = e2e.tmp / "ctl"
    ctl.mkdir()
    crash_once = ("if [ ! -e /ctl/crashed ]; then touch /ctl/crashed; exit 1; fi; "
                  + SLEEP_LOOP)
    text = e2e.manifest("c", crash_once, restartPolicy="OnFailure",
                        mounts=[{"type": "bind", "source": str(ctl), "destination": "/ctl"}])
    e2e.write("c.yaml", text)
    e2e.start("--allow-empty")
    wait_until(lambda: (c := e2e.get("c")) and c["restarts"] == 1 and c["phase"] == "Running",
               10, what="c crashed once and runs again")
    wait_until(lambda: "Restarted" in e2e.reasons("c"), 5, what="c's Restarted event")
    assert rows_of(e2e.cli("get", "c").stdout)["c"][4] == "1"  # NAME READY STATUS DESIRED RESTARTS
    first_life = reasons_in(e2e.cli("events", "c").stdout)
    assert "Exited" in first_life and "Restarted" in first_life

    (e2e.manifests / "c.yaml").unlink()
    e2e.wait_gone("c")
    wait_until(lambda: "Deleted" in e2e.reasons("c"), 10, what="c's Deleted event")
    e2e.write("c.yaml", text)  # the same name again: ctl/crashed is there, no crash now
    e2e.wait_running("c")
    c = e2e.wait_phase("c", "Running")
    assert c["restarts"] == 0
    assert rows_of(e2e.cli("get", "c").stdout)["c"][4] == "0"

    now = reasons_in(e2e.cli("events", "c").stdout)
    assert now[0] == "Created" and not {"Exited", "Restarted", "Deleted"} & set(now), now
    every = reasons_in(e2e.cli("events", "c", "--all").stdout)
    assert every[:len(first_life)] == first_life and every[-len(now):] == now
    assert every.count("Created") == 2 and "Deleted" in every
    assert "Restarts:      0" in e2e.cli("describe", "c").stdout


# -- diff ----------------------------------------------------------------------------------


def test_diff_exit_codes_against_a_running_daemon(e2e: E2E) -> None:
    e2e.write("web.yaml", e2e.manifest("web"))
    e2e.start()
    e2e.wait_running("web")
    e2e.wait_phase("web", "Running")
    converged = e2e.cli("diff", "--manifests", str(e2e.manifests), check=False)
    assert converged.returncode == 0, converged.stdout + converged.stderr
    assert converged.stdout == "converged: nothing to do\n"

    # what a change would do, checked in a copy before it is shipped to the watched dir
    pending = e2e.tmp / "pending"
    shutil.copytree(e2e.manifests, pending)
    e2e.write("web.yaml", e2e.manifest("web", "echo v2; " + SLEEP_LOOP), directory=pending)
    changed = e2e.cli("diff", "--manifests", str(pending), check=False)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "web" in changed.stdout and "echo v2" in changed.stdout, changed.stdout

    e2e.write("broken.yaml", "apiVersion: reconciler/v1\nkind: Container\nspec: [\n",
              directory=pending)
    broken = e2e.cli("diff", "--manifests", str(pending), check=False)
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert "broken.yaml" in broken.stderr, broken.stderr
    assert e2e.running_pid("web") is not None  # diff changed nothing


# -- logs, exec, cp ------------------------------------------------------------------------


def test_logs_since_and_timestamps(e2e: E2E) -> None:
    e2e.write("talk.yaml", e2e.manifest("talk", "echo early; sleep 2; echo late; "
                                                 + SLEEP_LOOP))
    e2e.start()
    e2e.wait_running("talk")
    wait_until(lambda: e2e.cli("logs", "talk").stdout == "early\nlate\n", 10,
               what="both lines logged")
    assert e2e.cli("logs", "talk", "--since", "1s").stdout == "late\n"
    assert e2e.cli("logs", "talk", "--since", "1h").stdout == "early\nlate\n"

    stamped = e2e.cli("logs", "talk", "--timestamps").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["early", "late"]
    times = [datetime.fromisoformat(line.split(" ", 1)[0]).timestamp() for line in stamped]
    assert all(abs(t - time.time()) < 60 for t in times)
    assert 1.9 < times[1] - times[0] < 4  # the script's sleep 2, as the log saw it


def test_exec_env_user_workdir_and_exit_code(e2e: E2E) -> None:
    e2e.write("box.yaml", e2e.manifest("box"))
    e2e.start()
    e2e.wait_running("box")
    done = cli_first(e2e, "exec", "box", "-e", "K=some value", "-u", "1000", "-w", "/tmp",
                     "--", "sh", "-c", 'id -u; pwd; echo "$K"')
    assert (done.returncode, done.stdout) == (0, "1000\n/tmp\nsome value\n"), done.stderr
    plain = cli_first(e2e, "exec", "box", "--", "sh", "-c", 'id -u; pwd; echo "[$K]"')
    assert plain.stdout == "0\n/\n[]\n"  # the options above changed only that one command
    seven = cli_first(e2e, "exec", "box", "--", "sh", "-c", "exit 7")
    assert seven.returncode == 7, seven.stderr


def test_cp_in_and_out_of_a_running_container(e2e: E2E) -> None:
    e2e.write("box.yaml", e2e.manifest("box"))
    e2e.start()
    pid = e2e.wait_running("box")
    data = os.urandom(200_000) + b"\0\n\xff end"
    local = e2e.tmp / "blob.bin"
    local.write_bytes(data)
    put = e2e.cli("cp", str(local), "box:/tmp/blob.bin")
    assert (put.stdout, put.stderr) == ("", "")
    # the container's own root as the kernel shows it, not our status
    assert Path(f"/proc/{pid}/root/tmp/blob.bin").read_bytes() == data
    back = e2e.tmp / "back.bin"
    e2e.cli("cp", "box:/tmp/blob.bin", str(back))
    assert back.read_bytes() == data
    assert e2e.running_pid("box") == pid


# -- apply, delete, restart ----------------------------------------------------------------


def test_apply_a_directory_restart_and_delete_a_file(e2e: E2E) -> None:
    src = e2e.tmp / "src"
    src.mkdir()
    e2e.write("a.yaml", e2e.manifest("a"), directory=src)
    e2e.write("b.yaml", e2e.manifest("b"), directory=src)
    e2e.start("--allow-empty")

    assert verb(e2e, "apply", "-f", str(src)) == "container/a created\ncontainer/b created\n"
    pids = e2e.wait_all_running(["a", "b"], timeout=15)
    assert sorted(p.name for p in e2e.manifests.iterdir()) == \
        ["container-a.yaml", "container-b.yaml"]
    assert verb(e2e, "apply", "-f", str(src)) == \
        "container/a unchanged\ncontainer/b unchanged\n"

    before = e2e.instance("a")
    assert verb(e2e, "restart", "a") == "container/a restarted\n"
    new_pid = e2e.wait_running("a", not_pid=pids["a"])
    wait_until(lambda: e2e.find_instance("a") not in (None, before), 10,
               what="a new instance of a")
    assert instance_name(e2e.instance("a")) == "a" and not pid_alive(pids["a"])
    assert generation(e2e.runc("a") or {}) > generation({"id": before})
    assert e2e.running_pid("b") == pids["b"]  # the other one untouched

    assert verb(e2e, "delete", "-f", str(src / "b.yaml")) == "container/b deleted\n"
    e2e.wait_gone("b")
    assert [p.name for p in e2e.manifests.iterdir()] == ["container-a.yaml"]
    assert e2e.running_pid("a") == new_pid
    assert names_of(e2e.cli("get", "--no-headers").stdout) == ["a"]


# -- configuration from the environment ----------------------------------------------------


def test_config_view_and_get_from_the_environment(e2e: E2E) -> None:
    e2e.write("web.yaml", e2e.manifest("web"))
    e2e.start()
    e2e.wait_running("web")
    e2e.wait_phase("web", "Running")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env |= {"RECONCILER_CONFIG": str(e2e.tmp / "no-config.yaml"),  # the host's: not read
            "RECONCILER_STATE_DIR": str(e2e.state_dir),
            "RECONCILER_RUNC_ROOT": str(e2e.runc_root)}

    def bare(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reconciler", *args], env=env,
                              capture_output=True, text=True, check=False, cwd=e2e.tmp,
                              timeout=30)

    view = rows_of(bare("config", "view").stdout)
    assert view["stateDir"][1:] == [str(e2e.state_dir), "RECONCILER_STATE_DIR"]
    assert view["runcRoot"][1:] == [str(e2e.runc_root), "RECONCILER_RUNC_ROOT"]
    got = bare("get")
    assert got.returncode == 0, got.stderr
    assert rows_of(got.stdout)["web"][1:3] == ["1/1", "Running"]
    assert bare("exec", "web", "--", "echo", "found").stdout == "found\n"


# -- stats, describe -----------------------------------------------------------------------


def test_stats_of_a_stopped_container_shows_its_own_limit(e2e: E2E) -> None:
    e2e.write("s.yaml", e2e.manifest("s", resources={"memory": "24Mi"}))
    e2e.start()
    e2e.wait_running("s")
    e2e.write("s.yaml", e2e.manifest("s", resources={"memory": "24Mi"}, state="Stopped"))
    wait_until(lambda: (st := e2e.runc("s")) is not None and st["status"] == "stopped", 10,
               what="s stopped in runc")
    config = e2e.config("s")
    assert config is not None and config["linux"]["resources"]["memory"]["limit"] == 24 << 20

    row = json_rows(e2e.cli("stats", "s", "--no-stream", "-o", "json").stdout)
    assert (row["name"], row["memoryLimit"], row["memoryUsage"], row["pids"]) == \
        ("s", 24 << 20, 0, 0)
    table = rows_of(e2e.cli("stats", "s", "--no-stream").stdout)
    assert table["s"][3:5] == ["/", "24.00MiB"], table["s"]


def json_rows(text: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = json.loads(text)
    assert len(rows) == 1, rows
    return rows[0]


def test_describe_shows_labels_image_command_start_and_mounts(e2e: E2E) -> None:
    content = e2e.tmp / "content"
    content.mkdir()
    script = "echo described; " + SLEEP_LOOP
    e2e.write("d.yaml", labelled(
        e2e, "d", {"app": "web", "tier": "front"}, script,
        mounts=[{"type": "bind", "source": str(content), "destination": "/data",
                 "readOnly": True}]))
    e2e.start()
    e2e.wait_running("d")
    e2e.wait_phase("d", "Running")
    lines = e2e.cli("describe", "d").stdout.splitlines()

    def field(name: str) -> str:
        found = [line for line in lines if line.startswith(f"{name}:")]
        assert len(found) == 1, (name, lines)
        return found[0].split(":", 1)[1].strip()

    labels_at = lines.index("Labels:        app=web")
    assert lines[labels_at + 1] == "               tier=front"
    assert field("Image") == str(e2e.rootfs)
    assert field("Command") == f"/bin/sh -c {script}"
    started = time.mktime(time.strptime(field("Started"), "%Y-%m-%d %H:%M:%S"))
    assert -60 < time.time() - started < 60
    assert field("Mount") == f"/data bind {content} ro (in place)"
    assert field("Instance") == e2e.instance("d")


@skip_without("umoci", "skopeo")
def test_describe_names_the_image_and_its_digest(e2e: E2E, busybox_layout: Path
                                                 ) -> None:
    imported = subprocess.run(
        [sys.executable, "-m", "reconciler", "image", "import", "--state-dir",
         str(e2e.state_dir), f"oci:{busybox_layout}:busybox:latest", IMAGE],
        check=True, capture_output=True, text=True, timeout=60).stdout
    digest = imported.split()[-1]
    assert digest.startswith("sha256:"), imported
    doc = yaml.safe_load(e2e.manifest("img"))
    del doc["spec"]["rootfs"]
    doc["spec"]["image"] = IMAGE
    e2e.write("img.yaml", yaml.safe_dump(doc))
    e2e.start()
    e2e.wait_running("img", timeout=30)
    e2e.wait_phase("img", "Running")
    described = e2e.cli("describe", "img").stdout
    assert f"Image:         {IMAGE} ({digest})" in described, described
    config = e2e.config("img")
    assert config is not None
    assert config["annotations"]["io.reconciler.image-digest"] == digest
