"""``apply``, ``delete`` and ``restart`` against temp directories: no daemon, no runc.

The verbs only edit the manifests directory; what they write is read back with the
daemon's own loader and scanner.
"""

from __future__ import annotations

import importlib
import io
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from reconciler.manifest import files, loader

# the module, not the ``main`` function reconciler.cli re-exports under the same name
cli_main = importlib.import_module("reconciler.cli.main")

CONTAINER = """\
apiVersion: reconciler/v1
kind: Container
metadata:
  name: {name}
spec:
  rootfs: /srv/rootfs
  command: ["/bin/sh", "-c", "{script}"]
"""
CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  greeting: hello
"""
SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: hunter2
"""
POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: site
spec:
  containers:
  - name: web
    image: busybox
    env:
    - name: GREETING
      valueFrom:
        configMapKeyRef: {name: cfg, key: greeting}
"""


def container(name: str = "web", script: str = "sleep 1000") -> str:
    return CONTAINER.format(name=name, script=script)


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    d = tmp_path / "manifests"
    d.mkdir()
    return d


def run(capsys: pytest.CaptureFixture[str], mdir: Path, *argv: str,
        stdin: str | None = None) -> tuple[int, str, str]:
    """The CLI in-process: (exit code, stdout, stderr)."""
    if stdin is not None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
            code = cli_main.main([*argv, "--manifests", str(mdir)])
    else:
        code = cli_main.main([*argv, "--manifests", str(mdir)])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def keys(d: Path) -> list[tuple[str, str]]:
    return sorted(doc.key for p in files.scan(d) for doc in loader.load_file(p).documents)


def write_input(tmp_path: Path, name: str, *docs: str) -> Path:
    path = tmp_path / name
    path.write_text("---\n".join(docs))
    return path


# -- apply ------------------------------------------------------------------------------------


def test_apply_created_configured_unchanged(capsys: pytest.CaptureFixture[str], mdir: Path,
                                            tmp_path: Path) -> None:
    src = write_input(tmp_path, "web.yaml", container())
    assert run(capsys, mdir, "apply", "-f", str(src)) == (0, "container/web created\n", "")
    target = mdir / "container-web.yaml"
    doc = yaml.safe_load(target.read_text())
    assert list(doc) == ["apiVersion", "kind", "metadata", "spec"]  # input order
    assert list(doc["spec"]) == ["rootfs", "command"]
    assert loader.load_file(target).ok
    first = target.stat()
    assert run(capsys, mdir, "apply", "-f", str(src)) == (0, "container/web unchanged\n", "")
    assert target.stat().st_ino == first.st_ino  # not rewritten
    src.write_text(container(script="sleep 999"))
    assert run(capsys, mdir, "apply", "-f", str(src)) == (0, "container/web configured\n", "")
    assert "sleep 999" in target.read_text()
    assert os.listdir(mdir) == ["container-web.yaml"]  # no temp file left


def test_apply_multi_document_input_becomes_one_file_per_object(
        capsys: pytest.CaptureFixture[str], mdir: Path, tmp_path: Path) -> None:
    src = write_input(tmp_path, "all.yaml", CONFIGMAP, POD, SECRET, container("db"))
    code, out, err = run(capsys, mdir, "apply", "-f", str(src))
    assert (code, err) == (0, "")
    assert out.splitlines() == ["configmap/cfg created", "pod/site created",
                                "secret/creds created", "container/db created"]
    assert sorted(os.listdir(mdir)) == [
        "configmap-default-cfg.yaml", "container-db.yaml", "pod-default-site.yaml",
        "secret-default-creds.yaml"]
    assert stat.S_IMODE((mdir / "secret-default-creds.yaml").stat().st_mode) == 0o600
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE((mdir / "container-db.yaml").stat().st_mode) == 0o666 & ~umask
    assert keys(mdir) == [("ConfigMap", "default/cfg"), ("Container", "db"),
                          ("Pod", "default/site"), ("Secret", "default/creds")]


def test_apply_from_stdin(capsys: pytest.CaptureFixture[str], mdir: Path) -> None:
    code, out, _ = run(capsys, mdir, "apply", "-f", "-", stdin=container() + "---\n" + CONFIGMAP)
    assert (code, out) == (0, "container/web created\nconfigmap/cfg created\n")
    assert keys(mdir) == [("ConfigMap", "default/cfg"), ("Container", "web")]


def test_apply_a_directory(capsys: pytest.CaptureFixture[str], mdir: Path,
                           tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.yaml").write_text(container("a"))
    (src / "b.yml").write_text(container("b"))
    (src / ".hidden.yaml").write_text("not: [valid")  # skipped as the daemon skips it
    code, out, _ = run(capsys, mdir, "apply", "-f", str(src))
    assert (code, out) == (0, "container/a created\ncontainer/b created\n")


def test_apply_refuses_a_name_defined_by_another_file(
        capsys: pytest.CaptureFixture[str], mdir: Path, tmp_path: Path) -> None:
    (mdir / "mine.yaml").write_text(container())
    before = snapshot(mdir)
    src = write_input(tmp_path, "in.yaml", container("other"), container(script="sleep 5"))
    code, out, err = run(capsys, mdir, "apply", "-f", str(src))
    assert (code, out) == (1, "")
    assert err.startswith("error: ")
    assert f"{mdir / 'mine.yaml'}:1" in err and 'container "web"' in err
    assert snapshot(mdir) == before  # not even container/other was written


def test_apply_refuses_findings_with_file_and_line(
        capsys: pytest.CaptureFixture[str], mdir: Path, tmp_path: Path) -> None:
    src = write_input(tmp_path, "bad.yaml", container("ok"),
                      container("bad").replace("rootfs: /srv/rootfs", "rootfs: 3"))
    code, out, err = run(capsys, mdir, "apply", "-f", str(src))
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {src}:")
    assert all(line.startswith("error: ") for line in err.splitlines())
    assert os.listdir(mdir) == []
    # the same name twice in the input
    src = write_input(tmp_path, "twice.yaml", container(), container())
    code, _, err = run(capsys, mdir, "apply", "-f", str(src))
    assert code == 1 and "already defined" in err
    assert os.listdir(mdir) == []


def test_apply_runs_the_expansion_check(capsys: pytest.CaptureFixture[str], mdir: Path,
                                        tmp_path: Path) -> None:
    pod = write_input(tmp_path, "pod.yaml", POD)
    code, out, err = run(capsys, mdir, "apply", "-f", str(pod))
    assert (code, out) == (1, "") and err.startswith("error: ") and "cfg" in err
    assert os.listdir(mdir) == []
    # the ConfigMap in the same input, or already in the directory: accepted
    both = write_input(tmp_path, "both.yaml", POD, CONFIGMAP)
    assert run(capsys, mdir, "apply", "-f", str(both))[0] == 0
    (mdir / "pod-default-site.yaml").unlink()
    assert run(capsys, mdir, "apply", "-f", str(pod))[1] == "pod/site created\n"


def test_apply_refuses_a_relative_path_that_would_change_meaning(
        capsys: pytest.CaptureFixture[str], mdir: Path, tmp_path: Path) -> None:
    src = write_input(tmp_path, "rel.yaml", container().replace("/srv/rootfs", "./rootfs"))
    code, _, err = run(capsys, mdir, "apply", "-f", str(src))
    assert code == 1 and "relative" in err
    assert os.listdir(mdir) == []


def test_apply_usage_and_missing_directory(capsys: pytest.CaptureFixture[str], mdir: Path,
                                           tmp_path: Path) -> None:
    code, _, err = run(capsys, mdir, "apply", "-f", str(tmp_path / "nope.yaml"))
    assert code == 2 and err.startswith("error: ")
    src = write_input(tmp_path, "web.yaml", container())
    code, _, err = run(capsys, tmp_path / "absent", "apply", "-f", str(src))
    assert code == 1 and err.startswith("error: manifests directory")


def test_apply_is_atomic_for_a_scanner(mdir: Path, tmp_path: Path) -> None:
    """A scanner looping while apply rewrites a big file never sees a half file or a temp."""
    big = "x" * 200_000
    seen: list[str] = []
    stop = threading.Event()

    def scan() -> None:
        while not stop.is_set():
            for path in files.scan(mdir):
                result = loader.load_file(path)
                if not result.ok:
                    seen.append(str(result.findings))
                seen.append(path.name)

    thread = threading.Thread(target=scan)
    thread.start()
    try:
        for i in range(15):
            src = write_input(tmp_path, "web.yaml", container(script=f"echo {i} {big}"))
            subprocess.run([sys.executable, "-m", "reconciler", "apply", "-f", str(src),
                            "--manifests", str(mdir)], check=True, capture_output=True)
    finally:
        stop.set()
        thread.join()
    assert set(seen) <= {"container-web.yaml"}
    assert os.listdir(mdir) == ["container-web.yaml"]


# -- delete ------------------------------------------------------------------------------------


MULTI = """\
# the front
apiVersion: reconciler/v1
kind: Container
metadata:
  name: a   # first
spec:
  rootfs: /srv/rootfs
  command: [sh]
---
# the middle one
apiVersion: reconciler/v1
kind: Container
metadata:
  name: b
spec:
  rootfs: /srv/rootfs
  command: [sh]
---
# the last one
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data: {k: v}
"""


def test_delete_a_file_of_its_own(capsys: pytest.CaptureFixture[str], mdir: Path) -> None:
    (mdir / "web.yaml").write_text(container())
    assert run(capsys, mdir, "delete", "web") == (0, "container/web deleted\n", "")
    assert os.listdir(mdir) == []


def test_delete_from_a_multi_document_file_keeps_the_others(
        capsys: pytest.CaptureFixture[str], mdir: Path) -> None:
    path = mdir / "all.yaml"
    path.write_text(MULTI)
    path.chmod(0o640)
    assert run(capsys, mdir, "delete", "container/b")[:2] == (0, "container/b deleted\n")
    text = path.read_text()
    assert "name: b" not in text and "# the middle one" not in text
    assert "name: a   # first" in text and "# the last one" in text  # comments kept
    assert text == MULTI.replace(MULTI[MULTI.index("---\n# the middle"):
                                       MULTI.index("---\n# the last")], "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert run(capsys, mdir, "delete", "cm/c")[1] == "configmap/c deleted\n"
    assert keys(mdir) == [("Container", "a")]
    assert run(capsys, mdir, "delete", "a")[1] == "container/a deleted\n"
    assert os.listdir(mdir) == []


def test_delete_by_file(capsys: pytest.CaptureFixture[str], mdir: Path,
                        tmp_path: Path) -> None:
    src = write_input(tmp_path, "in.yaml", container(), CONFIGMAP, SECRET)
    assert run(capsys, mdir, "apply", "-f", str(src))[0] == 0
    (mdir / "keep.yaml").write_text(container("keep"))
    code, out, _ = run(capsys, mdir, "delete", "-f", str(src))
    assert code == 0
    assert out == "container/web deleted\nconfigmap/cfg deleted\nsecret/creds deleted\n"
    assert os.listdir(mdir) == ["keep.yaml"]


def test_delete_errors(capsys: pytest.CaptureFixture[str], mdir: Path) -> None:
    (mdir / "web.yaml").write_text(container())
    before = snapshot(mdir)
    code, out, err = run(capsys, mdir, "delete", "web", "nope")
    assert (code, out) == (1, "") and err.startswith("error: ") and "nope" in err
    assert snapshot(mdir) == before  # web is kept: nothing is deleted when one is unknown
    assert run(capsys, mdir, "delete", "widget/web")[0] == 2
    assert run(capsys, mdir, "delete")[0] == 2
    code, _, err = run(capsys, mdir, "delete", "secret/web")
    assert code == 1 and err.startswith("error: ")
    (mdir / "pod.yaml").write_text(POD.replace("site", "web") + "---\n" + CONFIGMAP)
    code, _, err = run(capsys, mdir, "delete", "web")
    assert code == 1 and "container/web" in err and "pod/web" in err  # ambiguous
    assert snapshot(mdir)["web.yaml"] == before["web.yaml"]


# -- restart -----------------------------------------------------------------------------------


def test_restart_changes_only_the_annotation(capsys: pytest.CaptureFixture[str],
                                             mdir: Path) -> None:
    path = mdir / "all.yaml"
    path.write_text(MULTI)
    assert run(capsys, mdir, "restart", "a") == (0, "container/a restarted\n", "")
    text = path.read_text()
    added = [line for line in text.splitlines() if line not in MULTI.splitlines()]
    assert added[0] == "  annotations:"
    assert added[1].startswith('    reconciler.io/restartedAt: "') and len(added) == 2
    assert [line for line in MULTI.splitlines() if line not in text.splitlines()] == []
    docs = loader.load_file(path).documents
    stamp = docs[0].document.metadata.annotations["reconciler.io/restartedAt"]
    assert stamp.endswith("Z") and "T" in stamp
    # again: the value is replaced in place, and it changes
    assert run(capsys, mdir, "restart", "container/a")[0] == 0
    again = loader.load_file(path).documents[0].document.metadata.annotations
    assert again["reconciler.io/restartedAt"] != stamp
    assert len(path.read_text().splitlines()) == len(text.splitlines())


def test_restart_a_pod_and_refusals(capsys: pytest.CaptureFixture[str], mdir: Path,
                                    tmp_path: Path) -> None:
    src = write_input(tmp_path, "in.yaml", POD, CONFIGMAP)
    assert run(capsys, mdir, "apply", "-f", str(src))[0] == 0
    assert run(capsys, mdir, "restart", "pod/site")[1] == "pod/site restarted\n"
    doc = loader.load_file(mdir / "pod-default-site.yaml").documents[0].document
    assert "reconciler.io/restartedAt" in doc.metadata.annotations
    code, _, err = run(capsys, mdir, "restart", "configmap/cfg")
    assert code == 2 and err.startswith("error: ")
    code, _, err = run(capsys, mdir, "restart", "nope")
    assert code == 1 and err.startswith("error: ")


def test_restart_a_flow_style_document_falls_back_to_re_serializing(
        capsys: pytest.CaptureFixture[str], mdir: Path) -> None:
    path = mdir / "flow.yaml"
    path.write_text('{"apiVersion": "reconciler/v1", "kind": "Container",'
                    ' "metadata": {"name": "f"}, "spec": {"rootfs": "/srv", "command": ["sh"]}}\n')
    assert run(capsys, mdir, "restart", "f")[0] == 0
    doc = loader.load_file(path).documents[0].container
    assert set(doc.metadata.annotations) == {"reconciler.io/restartedAt"}
    assert doc.spec.command == ["sh"]


def test_restart_a_json_file(capsys: pytest.CaptureFixture[str], mdir: Path) -> None:
    path = mdir / "j.json"
    path.write_text('{"apiVersion": "reconciler/v1", "kind": "Container",'
                    ' "metadata": {"name": "j"}, "spec": {"rootfs": "/srv", "command": ["sh"]}}')
    assert run(capsys, mdir, "restart", "j")[0] == 0
    assert "reconciler.io/restartedAt" in loader.load_file(path).documents[0].document \
        .metadata.annotations
