"""kubectl's ways of choosing and printing, on a hand-made state dir (no containers, no
daemon): label selectors (a table of good and bad ones), ``get`` with several NAMEs,
``-l``, ``--show-labels``, ``--no-headers`` and ``-o name``; labels in ``describe`` and
``-o json``; ``events --since/--tail/-o json/-w``; defaults from the environment and the
config file, and ``config view``.

The commands run in-process through ``reconciler.cli.main`` (output through capsys); the
parser is built on each call, so an environment variable set by a test is seen.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler import cli as command_line
from reconciler.manifest import selectors

NOW = time.time()


# -- selectors ---------------------------------------------------------------------------------

LABELS = {"app": "web", "tier": "front", "example.com/team": "a-b.c_d", "empty": ""}

GOOD = [  # (selector, matches LABELS)
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app = web", True),
    ("app=db", False),
    ("app!=db", True),
    ("app!=web", False),
    ("missing!=x", True),  # != matches a missing key, as in Kubernetes
    ("app in (web,db)", True),
    ("app in (db)", False),
    ("app in ( db , web )", True),
    ("app notin (db)", True),
    ("app notin (web, db)", False),
    ("missing notin (x)", True),
    ("missing in (x)", False),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("app=web,tier=front", True),  # comma: AND
    ("app=web,tier=back", False),
    ("app=web, !missing, tier in (front)", True),
    ("example.com/team=a-b.c_d", True),
    ("empty=", True),  # an empty value selects an empty label
    ("empty==,app", True),
    ("app=", False),
]

BAD = [  # (selector, the position named in the error)
    ("app=web,", 9),
    (",app", 1),
    ("app in (web", 12),
    ("app in web", 8),
    ("app in ()", 9),
    ("app notin (a,)", 14),
    ("app web", 5),
    ("!app=web", 5),
    ("!", 2),
    ("app=-web", 5),
    ("-app=web", 1),
    ("app=web=db", 8),
    ("app>3", 4),
    ("Bad_Prefix/app=x", 1),
    ("app=" + "x" * 64, 5),
    ("a==b,c!=(d)", 9),
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_selector_matches(text: str, expected: bool) -> None:
    assert selectors.parse(text).matches(LABELS) is expected


@pytest.mark.parametrize(("text", "position"), BAD)
def test_a_bad_selector_names_its_position(text: str, position: int) -> None:
    with pytest.raises(selectors.SelectorError) as err:
        selectors.parse(text)
    assert f"at position {position}" in str(err.value)


def test_selector_requirements() -> None:
    parsed = selectors.parse("a=b,c!=d,e in (f,g),h notin (i),j,!k")
    assert [(r.key, r.op, sorted(r.values)) for r in parsed.requirements] == [
        ("a", "=", ["b"]), ("c", "!=", ["d"]), ("e", "in", ["f", "g"]),
        ("h", "notin", ["i"]), ("j", "exists", []), ("k", "!", [])]
    assert selectors.parse("app").matches(None) is False
    assert selectors.parse("!app").matches(None) is True


# -- a hand-made state dir ---------------------------------------------------------------------


def rec(name: str, *, instance: str | None, source: str, pod: dict[str, Any] | None = None,
        phase: str = "Running") -> dict[str, Any]:
    """A status record as the daemon writes it (daemon/view.status_document)."""
    return {"name": name, "instance": instance, "source": source, "desiredState": "Running",
            "phase": phase, "pid": 100 if instance else None, "restarts": 0,
            "lastExitCode": None, "lastExit": None, "specHash": "v1-x", "message": "",
            "since": NOW - 60, "created": NOW - 60, "history": {}, "actual": None, "pod": pod}


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """web (labels in its applied.json), db (not made: labels in its file), bare (none),
    and the pod site (labels in its units' records)."""
    state_dir, manifests = tmp_path / "state", tmp_path / "m"
    manifests.mkdir()
    applied = state_dir / "containers" / "web.1" / "applied.json"
    applied.parent.mkdir(parents=True)
    applied.write_text(json.dumps({"kind": "Container", "metadata": {
        "name": "web", "labels": {"app": "web", "tier": "front"}}}))
    (manifests / "db.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Container\n"
        "metadata: {name: other, labels: {app: other}}\n---\n"
        "apiVersion: reconciler/v1\nkind: Container\n"
        "metadata: {name: db, labels: {app: db, tier: back}}\nspec: {image: busybox}\n")
    site = {"pod": "default/site", "labels": {"app": "site", "tier": "front"}}
    records = [
        rec("web", instance="web.1", source=str(manifests / "web.yaml")),
        rec("db", instance=None, source=str(manifests / "db.yaml"), phase="Pending"),
        rec("bare", instance="bare.1", source=str(manifests / "bare.yaml")),
        rec("default_site", instance="default_site.1", source=str(manifests / "site.yaml"),
            pod={**site, "role": "sandbox", "container": ""}),
        rec("default_site_server", instance="default_site_server.1",
            source=str(manifests / "site.yaml"),
            pod={**site, "role": "app", "container": "server", "index": 0}),
    ]
    (state_dir / "status.json").write_text(json.dumps(
        {"daemon": {"passes": 1}, "containers": {r["name"]: r for r in records}}))
    now = time.time()  # when the test runs, not when the module was collected
    events = [(now - 7200, "web", "Created", "old"), (now - 120, "db", "Failed", "middle"),
              (now - 30, "web", "Started", "recent"), (now - 5, None, "Resync", "newest")]
    (state_dir / "events.jsonl").write_text("".join(
        json.dumps({"time": t, "type": "Normal", "name": n, "reason": r, "message": m}) + "\n"
        for t, n, r, m in events))
    return state_dir


def run(state_dir: Path, capsys: pytest.CaptureFixture[str], *argv: str
        ) -> tuple[int, str, str]:
    capsys.readouterr()
    code = command_line.main([argv[0], "--state-dir", str(state_dir), "--runc-root",
                              str(state_dir.parent / "no-runc"), *argv[1:]])
    out = capsys.readouterr()
    return code, out.out, out.err


def names(table: str) -> list[str]:
    return [line.split()[0] for line in table.splitlines() if line]


# -- get ---------------------------------------------------------------------------------------


def test_get_by_selector(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert names(run(state, capsys, "get", "-l", "app=web")[1]) == ["NAME", "web"]
    assert names(run(state, capsys, "get", "-l", "tier=front", "--no-headers")[1]) == \
        ["web", "site"]  # a container and a pod
    assert names(run(state, capsys, "get", "pods", "-l", "tier", "--no-headers")[1]) == \
        ["site"]
    assert names(run(state, capsys, "get", "-l", "tier notin (front)", "--no-headers")[1]) \
        == ["db", "bare"]
    assert names(run(state, capsys, "get", "--selector", "app in (db,web),!x",
                     "--no-headers")[1]) == ["web", "db"]  # status.json's order
    code, out, err = run(state, capsys, "get", "-l", "app=nothing")
    assert (code, out, err) == (0, "", "No containers.\n")


def test_get_a_bad_selector_is_a_usage_error(state: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run(state, capsys, "get", "-l", "app in (web")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "-l/--selector" in err and "at position 12" in err
    code, out, err = run(state, capsys, "get", "web", "-l", "app=web")
    assert (code, out) == (2, "") and err.startswith("error: give NAMEs or -l")


def test_get_several_names(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(state, capsys, "get", "db", "web", "site", "db")
    containers, pod_table = out.split("\n\n")
    assert (code, names(containers), names(pod_table)) == (0, ["NAME", "db", "web"],
                                                           ["NAME", "site"])
    assert names(run(state, capsys, "get", "container/web", "pod/site", "-o", "name")[1]) \
        == ["container/web", "pod/site"]
    # kubectl's way with a missing NAME: what was found, then an error, exit 1
    code, out, err = run(state, capsys, "get", "web", "nope", "--no-headers")
    assert (code, names(out)) == (1, ["web"])
    assert err == 'error: container or pod "nope" not found\n'
    code, out, err = run(state, capsys, "get", "pods", "web")
    assert (code, out, err) == (1, "", 'error: pod "web" not found\n')
    listed = json.loads(run(state, capsys, "get", "web", "bare", "-o", "json")[1])
    assert [x["name"] for x in listed] == ["web", "bare"]


def test_get_shows_labels(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(state, capsys, "get", "--show-labels")[1]
    containers, pod_table = out.split("\n\n")
    assert re.split(r"\s{3,}", containers.splitlines()[0])[-1] == "LABELS"
    rows = {line.split()[0]: line.split()[-1] for line in containers.splitlines()[1:]}
    assert rows == {"web": "app=web,tier=front", "db": "app=db,tier=back", "bare": "<none>"}
    assert pod_table.splitlines()[0].split()[-1] == "LABELS"
    assert pod_table.splitlines()[1].split()[-1] == "app=site,tier=front"
    wide = run(state, capsys, "get", "-o", "wide", "--show-labels", "web")[1]
    assert wide.splitlines()[1].split()[-1] == "app=web,tier=front"


def test_get_without_headers_and_by_name(state: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = run(state, capsys, "get", "--no-headers")[1]
    assert names(out) == ["web", "db", "bare", "site"]  # no header, no blank line
    assert "\n\n" not in out
    assert "cgroup parent" not in run(state, capsys, "get", "-o", "wide", "--no-headers")[1]
    assert run(state, capsys, "get", "-o", "name")[1] == \
        "container/web\ncontainer/db\ncontainer/bare\npod/site\n"
    assert run(state, capsys, "get", "pods", "-o", "name")[1] == "pod/site\n"
    assert run(state, capsys, "get", "default_site_server", "-o", "name")[1] == \
        "container/default_site_server\n"


def test_json_records_carry_their_labels(state: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    listed = json.loads(run(state, capsys, "get", "-o", "json")[1])
    assert isinstance(listed, list)  # the shape the e2e harness reads
    labels = {x["name"]: x.get("labels") for x in listed}
    assert labels == {"web": {"app": "web", "tier": "front"},
                      "db": {"app": "db", "tier": "back"},
                      "bare": None,  # none: no key, as Kubernetes leaves them out
                      "default_site": {"app": "site", "tier": "front"},
                      "default_site_server": {"app": "site", "tier": "front"},
                      "site": {"app": "site", "tier": "front"}}
    selected = json.loads(run(state, capsys, "get", "-l", "app=site", "-o", "json")[1])
    assert [x["name"] for x in selected] == ["default_site", "default_site_server", "site"]
    assert "app: web" in run(state, capsys, "get", "web", "-o", "yaml")[1]


RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_json_times_are_rfc3339_and_status_json_keeps_epoch_seconds(
        state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = json.loads((state / "status.json").read_text())
    exited = {"code": 1, "signal": None, "oomKilled": False, "finishedAt": NOW - 30}
    status["containers"]["web"].update(lastExit=exited, history={
        "specHash": "v1-x", "restarts": 1, "startedAt": NOW - 20, "failedAt": None,
        "lastExit": exited, "generation": 1})
    (state / "status.json").write_text(json.dumps(status))
    from reconciler.cli import daemon

    (web,) = json.loads(run(state, capsys, "get", "web", "-o", "json")[1])
    assert (web["created"], web["since"]) == (daemon.rfc3339(NOW - 60),) * 2
    assert web["lastExit"]["finishedAt"] == daemon.rfc3339(NOW - 30)
    assert web["history"]["startedAt"] == daemon.rfc3339(NOW - 20)
    assert web["history"]["lastExit"]["finishedAt"] == web["lastExit"]["finishedAt"]
    assert web["history"]["failedAt"] is None  # never failed: still null
    assert all(RFC3339.fullmatch(t) for t in (web["created"], web["history"]["startedAt"]))
    assert (web["specHash"], web["restarts"], web["lastExit"]["code"]) == ("v1-x", 0, 1)
    (site,) = json.loads(run(state, capsys, "get", "pod/site", "-o", "json")[1])
    assert site["created"] == site["sandbox"]["created"] == daemon.rfc3339(NOW - 60)
    assert site["containers"][0]["since"] == daemon.rfc3339(NOW - 60)
    assert f"created: '{daemon.rfc3339(NOW - 60)}'" in run(state, capsys, "get", "web",
                                                           "-o", "yaml")[1]
    # the daemon's own file is untouched: the planner reads its epoch seconds back
    assert json.loads((state / "status.json").read_text()) == status


def test_get_jsonpath(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """kubectl's -o jsonpath: a List of what was found, or the one object NAME gave;
    printed with no newline added."""
    def printed(*argv: str) -> str:
        code, out, err = run(state, capsys, "get", *argv)
        assert (code, err) == (0, "")
        return out

    assert printed("-o", "jsonpath={.items[*].name}") == \
        "web db bare default_site default_site_server site"
    assert printed("pods", "-o=jsonpath={.kind}: {.items[*].name}") == "List: site"
    assert printed("--output=jsonpath={range .items[*]}{.name}{'\\t'}{.phase}{'\\n'}{end}",
                   "containers") == "web\tRunning\ndb\tPending\nbare\tRunning\n"
    assert printed("web", "-o", "jsonpath={.phase} {.labels.tier}") == "Running front"
    assert RFC3339.fullmatch(printed("web", "-o", "jsonpath={.created}"))
    assert printed("pod/site", "-o", "jsonpath={.status} {.containers[0].name}") == \
        "Running default_site_server"
    assert printed("web", "bare", "-o", "jsonpath={.items[1].name}") == "bare"
    assert printed("-l", "tier=front", "-o",
                   "jsonpath={.items[?(@.kind=='Pod')].name}") == "site"
    assert printed("-l", "app=nothing", "-o", "jsonpath={.items[*].name}") == ""


def test_a_bad_jsonpath_is_a_usage_error(state: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(state, capsys, "get", "-o", "jsonpath={.items[")
    assert (code, out, err) == (2, "", "error: -o jsonpath={.items[: unclosed '[' at"
                                       " position 8\n")
    code, out, err = run(state, capsys, "get", "-o", "jsonpath={.items[9].name}")
    assert (code, out, err) == (1, "", "error: -o jsonpath={.items[9].name}: index 9 out"
                                       " of range (length 6)\n")
    for bad, said in (("jsonpath", "give a template"), ("jsonpath=", "give a template"),
                      ("bogus", "invalid choice: 'bogus'")):
        with pytest.raises(SystemExit) as exit_:
            run(state, capsys, "get", "-o", bad)
        assert exit_.value.code == 2
        assert said in capsys.readouterr().err


def test_describe_shows_a_containers_labels(state: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    lines = run(state, capsys, "describe", "web")[1].splitlines()
    assert lines[:3] == ["Name:          web", "Labels:        app=web",
                         "               tier=front"]
    assert run(state, capsys, "describe", "bare")[1].splitlines()[1] == \
        "Labels:        <none>"
    assert "Labels:        app=db" in run(state, capsys, "describe", "db")[1]
    assert "Labels:        app=site" in run(state, capsys, "describe", "default_site_server")[1]


# -- events ------------------------------------------------------------------------------------


def test_events_since_and_tail(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def messages(*argv: str) -> list[str]:
        code, out, _ = run(state, capsys, "events", *argv)
        assert code == 0
        return [line.split()[-1] for line in out.splitlines()]

    assert messages() == ["old", "middle", "recent", "newest"]
    assert messages("--since", "1h") == ["middle", "recent", "newest"]
    assert messages("--since", "1m") == ["recent", "newest"]
    assert messages("--tail", "2") == ["recent", "newest"]
    assert messages("--tail", "0") == []
    assert messages("web", "--tail", "1") == ["recent"]
    assert messages("web", "--since", "5m", "--tail", "5") == ["recent"]
    for bad in (["--since", "5"], ["--since", "soon"], ["--tail", "-1"], ["--tail", "x"]):
        with pytest.raises(SystemExit) as exit_:
            run(state, capsys, "events", *bad)
        assert exit_.value.code == 2


def test_events_as_json_lines(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(state, capsys, "events", "-o", "json", "--tail", "2")[1]
    first, second = (json.loads(line) for line in out.splitlines())
    assert list(first) == ["time", "type", "name", "reason", "message"]
    assert (first["name"], first["reason"], second["name"]) == ("web", "Started", None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    from reconciler.cli import daemon

    assert daemon.rfc3339(1796115599.1234) == "2026-12-01T08:59:59.123Z"


def test_events_watch_is_follow() -> None:
    from reconciler.cli.main import build_parser

    parser = build_parser(("daemon",))
    for flag in ("-w", "--watch", "-f", "--follow"):
        assert parser.parse_args(["events", flag]).follow is True
    assert parser.parse_args(["events"]).follow is False


# -- defaults from the environment and the config file -------------------------------------------


def test_defaults_come_from_the_environment_and_config_file(
        state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECONCILER_CONFIG", str(tmp_path / "none.yaml"))
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(state))
    monkeypatch.setenv("RECONCILER_RUNC_ROOT", str(tmp_path / "no-runc"))
    assert command_line.main(["get", "web", "-o", "name"]) == 0  # no flags needed
    assert capsys.readouterr().out == "container/web\n"
    # a flag still wins
    assert command_line.main(["get", "--state-dir", str(tmp_path / "nowhere")]) == 1
    assert "nowhere" in capsys.readouterr().err

    monkeypatch.delenv("RECONCILER_STATE_DIR")
    config_file = tmp_path / "conf" / "config.yaml"
    config_file.parent.mkdir()
    config_file.write_text("stateDir: ../state\nmanifests: /srv/m\n")
    monkeypatch.setenv("RECONCILER_CONFIG", str(config_file))
    monkeypatch.setenv("COLUMNS", "500")  # argparse would break a long path
    assert command_line.main(["get", "db", "-o", "name"]) == 0
    assert capsys.readouterr().out == "container/db\n"
    with pytest.raises(SystemExit):
        command_line.main(["diff", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"default: {state} (RECONCILER_STATE_DIR or config file)" in help_text
    assert "default: /srv/m (RECONCILER_MANIFESTS or config file)" in help_text


def test_a_broken_config_file_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text("stateDirr: /x\n")
    monkeypatch.setenv("RECONCILER_CONFIG", str(config_file))
    with pytest.raises(SystemExit) as exit_:
        command_line.main(["get"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: config file {config_file}: unknown")


def test_config_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text("runcRoot: /run/r\n")
    monkeypatch.setenv("RECONCILER_CONFIG", str(config_file))
    monkeypatch.setenv("RECONCILER_STATE_DIR", "/srv/state")
    monkeypatch.delenv("RECONCILER_MANIFESTS", raising=False)
    assert command_line.main(["config", "view"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()[:4]]
    assert rows == [["SETTING", "VALUE", "ORIGIN"],
                    ["stateDir", "/srv/state", "RECONCILER_STATE_DIR"],
                    ["runcRoot", "/run/r", str(config_file)],
                    ["manifests", "/etc/reconciler/manifests", "default"]]
    assert f"config files: {config_file} (read)" in out
    assert command_line.main(["config", "view", "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["settings"]["runcRoot"] == {"value": "/run/r", "origin": str(config_file),
                                           "env": "RECONCILER_RUNC_ROOT"}
    assert doc["configFiles"] == [{"path": str(config_file), "exists": True}]
    assert command_line.main(["config"]) == 2  # no verb: its help, as a usage error
    assert "view" in capsys.readouterr().err


def test_a_pod_made_again_shows_only_its_own_life(state: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The pod site deleted (a sidecar it had included) and made again: ``describe`` and
    ``events`` show the new pod's events, as for a container; ``--all`` every life's."""
    now = time.time()
    lives = [("default_site", "Created", "old pod"),
             ("default_site_server", "Started", "old server"),
             ("default_site_helper", "Started", "old helper"),  # only the earlier pod's
             ("default_site_helper", "Deleted", "old helper gone"),
             ("default_site_server", "Deleted", "old server gone"),
             ("default_site", "Deleted", "old pod gone"),
             ("default_site", "Created", "new-pod"),
             ("default_site_server", "Started", "new-server")]
    (state / "events.jsonl").write_text("".join(
        json.dumps({"time": now - 60 + i, "type": "Normal", "name": n, "reason": r,
                    "message": m}) + "\n" for i, (n, r, m) in enumerate(lives)))
    out = run(state, capsys, "describe", "site")[1]
    assert [line.split()[-1] for line in out.partition("Events:\n")[2].splitlines()] == \
        ["new-pod", "new-server"]
    messages = [json.loads(line)["message"]
               for line in run(state, capsys, "events", "site", "-o", "json")[1].splitlines()]
    assert messages == ["new-pod", "new-server"]
    assert len(run(state, capsys, "events", "site", "--all")[1].splitlines()) == len(lives)
    # a container of that name is not a pod: its own life only
    assert run(state, capsys, "events", "container/default_site_helper")[1].split()[-1] == \
        "gone"


def test_a_config_file_s_words_are_not_paths(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler import config, errors

    config_file = tmp_path / "conf" / "config.yaml"
    config_file.parent.mkdir()
    monkeypatch.setenv("RECONCILER_CONFIG", str(config_file))
    monkeypatch.delenv("RECONCILER_POLICY", raising=False)
    monkeypatch.delenv("RECONCILER_NETWORKS", raising=False)
    config_file.write_text("networks: \"on\"\npolicy: restricted\n")
    assert config.default("networks") == "on"
    assert config.default("policy") == "restricted"  # a level, not conf/restricted
    config_file.write_text("policy: policy.yaml\n")
    assert config.default("policy") == str(tmp_path / "conf" / "policy.yaml")
    config_file.write_text("networks: maybe\n")
    with pytest.raises(errors.UsageError, match="networks must be one of auto, on, off"):
        config.default("networks")
