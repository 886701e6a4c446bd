"""The loader on valid input: every field's accepted forms and defaults, multi-document
files, relative host paths, duplicate names across files, and the result values."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.manifest import loader, model

Write = Callable[[str, str | bytes], Path]

HEAD = """\
apiVersion: reconciler/v1
kind: Container
metadata:
  name: web
spec:
  rootfs: /srv/rootfs
"""


def load_one(write: Write, text: str, name: str = "web.yaml") -> model.Container:
    result = loader.load_file(write(name, text))
    assert result.findings == ()
    (doc,) = result.documents
    return doc.container


def field(container: model.Container, dotted: str) -> Any:
    value: Any = container
    for part in dotted.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    return value


# (spec lines, attribute path on Container, expected value)
VALID: list[tuple[str, str, object]] = [
    ("", "spec.image_pull_policy", model.PullPolicy.IF_NOT_PRESENT),
    ("", "spec.restart_policy", model.RestartPolicy.ALWAYS),
    ("", "spec.state", model.RunState.RUNNING),
    ("", "spec.stop_signal", "SIGTERM"),
    ("", "spec.termination_grace_period_seconds", 10),
    ("", "spec.host_network", False),
    ("", "spec.read_only_root_filesystem", False),
    ("", "spec.env", []),
    ("", "spec.mounts", []),
    ("", "spec.command", None),
    ("", "spec.resources.memory", None),
    ("", "metadata.labels", {}),
    ("  command: [/bin/httpd, -f, -p, '8080']", "spec.command", ["/bin/httpd", "-f", "-p", "8080"]),
    ("  args: [-v, '']", "spec.args", ["-v", ""]),
    ("  env: [{name: PATH, value: /bin}, {name: EMPTY}]", "spec.env.1.value", ""),
    ("  env: [{name: PATH, value: /bin}]", "spec.env.0.name", "PATH"),
    ("  workingDir: /var/www/", "spec.working_dir", "/var/www"),
    ("  workingDir: /", "spec.working_dir", "/"),
    ("  user: {uid: 1000, gid: 100, additionalGids: [10, 20]}", "spec.user.additional_gids",
     [10, 20]),
    ("  user: {uid: 4294967294}", "spec.user.uid", 4294967294),
    ("  user: {uid: 1000}", "spec.user.gid", 0),
    ("  hostname: web-1", "spec.hostname", "web-1"),
    ("  imagePullPolicy: Never", "spec.image_pull_policy", model.PullPolicy.NEVER),
    ("  restartPolicy: OnFailure", "spec.restart_policy", model.RestartPolicy.ON_FAILURE),
    ("  state: Paused", "spec.state", model.RunState.PAUSED),
    ("  stopSignal: int", "spec.stop_signal", "SIGINT"),
    ("  stopSignal: SIGQUIT", "spec.stop_signal", "SIGQUIT"),
    ("  terminationGracePeriodSeconds: 0", "spec.termination_grace_period_seconds", 0),
    ("  hostNetwork: true", "spec.host_network", True),
    ("  readOnlyRootFilesystem: yes", "spec.read_only_root_filesystem", True),
    ("  capabilities: {add: [cap_net_admin, SYS_TIME], drop: [ALL]}", "spec.capabilities.add",
     ["NET_ADMIN", "SYS_TIME"]),
    ("  capabilities: {drop: [all]}", "spec.capabilities.drop", ["ALL"]),
    ("  resources: {memory: 32Mi, cpu: 250m, pids: 64}", "spec.resources.memory_bytes", 32 << 20),
    ("  resources: {cpu: 250m}", "spec.resources.cpu_millicores", 250),
    ("  resources: {cpu: 1.5}", "spec.resources.cpu_millicores", 1500),
    ("  resources: {memory: 1e9}", "spec.resources.memory_bytes", 10**9),
    ("  resources: {memory: 1048576}", "spec.resources.memory_bytes", 1 << 20),
    ("  resources: {pids: 1}", "spec.resources.pids", 1),
    ("  mounts: [{type: tmpfs, destination: /tmp, sizeLimit: 16Mi, readOnly: true}]",
     "spec.mounts.0.size_limit", "16Mi"),
    ("  mounts: [{type: tmpfs, destination: /tmp}]", "spec.mounts.0.read_only", False),
    ("  mounts: [{type: bind, source: /srv/www, destination: /var/www, readOnly: true}]",
     "spec.mounts.0.read_only", True),
    ("  mounts: [{type: bind, source: /srv/www, destination: /var/www}]",
     "spec.mounts.0.destination", "/var/www"),
]


@pytest.mark.parametrize(("lines", "attr", "expected"), VALID,
                         ids=[f"{v[1]}:{v[0].strip()}" for v in VALID])
def test_valid_field(write: Write, lines: str, attr: str, expected: object) -> None:
    container = load_one(write, HEAD + lines + "\n")
    assert field(container, attr) == expected


@pytest.mark.parametrize("source", ["bundle: /srv/bundle", "image: busybox:1.36",
                                   "image: docker.io/library/busybox@sha256:" + "a" * 64])
def test_other_root_sources(write: Write, source: str) -> None:
    container = load_one(write, HEAD.replace("rootfs: /srv/rootfs", source))
    key, _, value = source.partition(": ")
    assert getattr(container.spec, key) == value
    assert container.spec.rootfs is None


def test_labels_and_annotations(write: Write) -> None:
    text = HEAD.replace("name: web", "name: web\n  labels: {app: web, 'on': 'yes'}\n"
                        "  annotations:\n    app.kubernetes.io/name: web")
    container = load_one(write, text)
    assert container.metadata.labels == {"app": "web", "on": "yes"}
    assert container.metadata.annotations == {"app.kubernetes.io/name": "web"}


def test_merge_keys_and_aliases(write: Write) -> None:
    text = HEAD + (
        "  mounts:\n"
        "    - &tmp {type: tmpfs, destination: /tmp, sizeLimit: 8Mi}\n"
        "    - <<: *tmp\n"
        "      destination: /run\n"
        "  env:\n"
        "    - &path {name: PATH, value: /bin}\n"
    )
    container = load_one(write, text)
    assert [m.destination for m in container.spec.mounts] == ["/tmp", "/run"]
    assert container.spec.mounts[1].size_limit == "8Mi"  # type: ignore[union-attr]


def test_bare_equals_and_merge_sign_are_text(write: Write) -> None:
    container = load_one(write, HEAD + "  args: [=, <<]\n")
    assert container.spec.args == ["=", "<<"]


def test_json_file_with_tabs(write: Write) -> None:
    text = ('{\n\t"apiVersion": "reconciler/v1",\n\t"kind": "Container",\n'
            '\t"metadata": {"name": "j"},\n\t"spec": {"rootfs": "/r", "workingDir": "w"}\n}\n')
    result = loader.load_file(write("j.json", text))
    assert [str(f) for f in result.findings] == [
        f"{result.file}:5: spec.workingDir: must be an absolute path inside the container, got 'w'"
    ]


# --- multi-document files --------------------------------------------------------------


def doc(name: str) -> str:
    return (f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}}}\n"
            "spec: {rootfs: /r}\n")


def test_multi_document_file(write: Write) -> None:
    text = "---\n" + doc("one") + "---\n# nothing here\n---\n" + doc("two") + "...\n---\n"
    result = loader.load_file(write("pair.yaml", text))
    assert result.ok
    assert [(d.container.name, d.line, d.index, d.file) for d in result.documents] == [
        ("one", 2, 0, result.file), ("two", 9, 2, result.file),
    ]


def test_one_invalid_document_breaks_the_whole_file(write: Write) -> None:
    text = doc("one") + "---\n" + doc("Two") + "---\n" + doc("three")
    result = loader.load_file(write("trio.yaml", text))
    assert result.documents == ()
    assert [(f.line, f.path) for f in result.findings] == [(8, "metadata.name")]


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n", "---\n---\n", "--- null\n"])
def test_files_without_documents_are_valid_and_empty(write: Write, text: str) -> None:
    result = loader.load_file(write("empty.yaml", text))
    assert result.ok
    assert result.documents == ()


def test_utf8_byte_order_mark_is_accepted(write: Write) -> None:
    result = loader.load_file(write("bom.yaml", b"\xef\xbb\xbf" + doc("bom").encode()))
    assert [d.container.name for d in result.documents] == ["bom"]


# --- relative host paths ---------------------------------------------------------------


def test_relative_host_paths_resolve_against_the_file_directory(write: Write,
                                                                tmp_path: Path) -> None:
    text = HEAD.replace("/srv/rootfs", "../rootfs/busybox") + (
        "  mounts:\n"
        "    - {type: bind, source: ./www, destination: /var/www}\n"
        "    - {type: bind, source: /abs/path/, destination: /abs}\n"
    )
    container = load_one(write, text, name="manifests/web.yaml")
    assert container.spec.rootfs == str(tmp_path / "rootfs" / "busybox")
    sources = [m.source for m in container.spec.mounts]  # type: ignore[union-attr]
    assert sources == [str(tmp_path / "manifests" / "www"), "/abs/path"]


def test_relative_paths_from_a_relative_file_name_are_absolute(
    write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write("m/web.yaml", HEAD.replace("/srv/rootfs", "rootfs"))
    monkeypatch.chdir(tmp_path)
    (doc_,) = loader.load_file("m/web.yaml").documents
    assert doc_.file == "m/web.yaml"
    assert doc_.container.spec.rootfs == str(tmp_path / "m" / "rootfs")


def test_relative_paths_resolve_next_to_a_symlink_not_its_target(
    write: Write, tmp_path: Path
) -> None:
    target = write("elsewhere/real.yaml", HEAD.replace("/srv/rootfs", "rootfs"))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "web.yaml").symlink_to(target)
    (doc_,) = loader.load_file(tmp_path / "m" / "web.yaml").documents
    assert doc_.container.spec.rootfs == str(tmp_path / "m" / "rootfs")


def test_host_paths_need_not_exist(write: Write) -> None:
    container = load_one(write, HEAD.replace("/srv/rootfs", "/does/not/exist"))
    assert container.spec.rootfs == "/does/not/exist"
    assert not os.path.exists("/does/not/exist")


def test_load_bytes_uses_the_given_base_dir() -> None:
    data = HEAD.replace("/srv/rootfs", "../r").encode()
    result = loader.load_bytes(data, file="<stdin>", base_dir="/etc/reconciler/m")
    (doc_,) = result.documents
    assert doc_.container.spec.rootfs == "/etc/reconciler/r"
    assert doc_.file == "<stdin>"
    assert result.digest == hashlib.sha256(data).hexdigest()


# --- results and findings --------------------------------------------------------------


def test_file_result_digest_and_ok(write: Write) -> None:
    path = write("web.yaml", HEAD)
    result = loader.load_file(path)
    assert result.ok
    assert result.file == str(path)
    assert result.digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_finding_text() -> None:
    assert str(loader.Finding("m/w.yaml", 7, "spec.image", "bad")) == "m/w.yaml:7: spec.image: bad"
    assert str(loader.Finding("m/web.yaml", 3, "", "invalid YAML")) == "m/web.yaml:3: invalid YAML"
    assert str(loader.Finding("m/big.yaml", None, "", "too large")) == "m/big.yaml: too large"


def test_results_are_frozen(write: Write) -> None:
    result = loader.load_file(write("web.yaml", HEAD))
    with pytest.raises(AttributeError):
        result.file = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        result.documents[0].line = 2  # type: ignore[misc]


# --- duplicate names -------------------------------------------------------------------


def test_duplicate_names_across_files_name_both(write: Write) -> None:
    first = loader.load_file(write("a.yaml", doc("web")))
    other = loader.load_file(write("b.yaml", doc("db")))
    second = loader.load_file(write("c.yaml", "# copy\n" + doc("web")))
    findings = loader.check_duplicates([first, other, second])
    assert [str(f) for f in findings] == [
        f'{second.file}:2: metadata.name: container "web" is already defined in {first.file}:1'
    ]


def test_duplicate_names_in_one_file(write: Write) -> None:
    result = loader.load_file(write("a.yaml", doc("web") + "---\n" + doc("web")))
    assert result.ok  # each document is valid on its own
    (finding,) = loader.check_duplicates([result])
    assert (finding.line, finding.message) == (
        6, f'container "web" is already defined in {result.file}:1'
    )


def test_a_third_definition_is_reported_against_the_first(write: Write) -> None:
    results = [loader.load_file(write(f"{n}.yaml", doc("web"))) for n in "abc"]
    assert [f.message for f in loader.check_duplicates(results)] == [
        f'container "web" is already defined in {results[0].file}:1'
    ] * 2


def test_no_duplicates(write: Write) -> None:
    results = [loader.load_file(write(f"{n}.yaml", doc(n))) for n in "abc"]
    assert loader.check_duplicates(results) == []
