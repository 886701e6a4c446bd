"""``reconciler validate`` and ``reconciler schema``: output, exit codes, the JSON Schema,
and the example manifests shipped in ``manifests/``."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from reconciler.cli import main
from reconciler.manifest import files, kube, loader, model

Write = Callable[[str, str | bytes], Path]

REPO = Path(__file__).resolve().parents[2]


def manifest(name: str, *spec_lines: str) -> str:
    return (f"apiVersion: reconciler/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n"
            "  rootfs: /srv/rootfs\n" + "".join(line + "\n" for line in spec_lines))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def good(write: Write, tmp_path: Path) -> Path:
    write("m/web.yaml", manifest("web"))
    write("m/more/jobs.yml", manifest("one") + "---\n" + manifest("two"))
    write("m/.web.yaml.swp", b"\x00binary swap")
    write("m/web.yaml~", "not: [valid")
    return tmp_path / "m"


def test_valid_directory(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    assert run(capsys, "validate", str(good)) == (0, "3 documents in 2 files are valid\n", "")


def test_valid_single_file(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, _ = run(capsys, "validate", str(good / "web.yaml"))
    assert (code, out) == (0, "1 document in 1 file is valid\n")


def test_invalid_files(capsys: pytest.CaptureFixture[str], write: Write, good: Path) -> None:
    bad = write("m/bad.yaml", manifest("bad", "  workingdir: /srv", "  resources: {memory: 1Q}"))
    code, out, err = run(capsys, "validate", str(good))
    assert code == 1
    assert err == ""
    assert out.splitlines() == [
        f'{bad}:7: spec.workingdir: unknown field; did you mean "workingDir"?',
        f"{bad}:8: spec.resources.memory: '1Q' has an unknown suffix 'Q'"
        " (known: Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E)",
        "2 problems in 1 file",
    ]


def test_duplicates_across_files(capsys: pytest.CaptureFixture[str], write: Write,
                                 good: Path) -> None:
    copy = write("m/zz/copy.yaml", manifest("web"))
    code, out, _ = run(capsys, "validate", str(good))
    assert code == 1
    assert out.splitlines() == [
        f'{copy}:1: metadata.name: container "web" is already defined in {good / "web.yaml"}:1',
        "1 problem in 1 file",
    ]


def test_json_output(capsys: pytest.CaptureFixture[str], write: Write, good: Path) -> None:
    bad = write("m/bad.yaml", manifest("bad", "  hostNetwork: 'no'"))
    big = write("big.yaml", "# padding\n" * 200)
    code, out, _ = run(capsys, "validate", "-o", "json", "--max-size", "1Ki", str(good), str(big))
    assert code == 1
    assert json.loads(out) == [
        {"file": str(bad), "line": 7, "path": "spec.hostNetwork",
         "message": 'must be true or false; got string "no"', "severity": "error"},
        {"file": str(big), "line": None, "path": "",
         "message": "file too large: 2000 bytes, over the limit of 1024 bytes",
         "severity": "error"},
    ]


def test_json_output_when_valid(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, _ = run(capsys, "validate", "--output=json", str(good))
    assert (code, json.loads(out)) == (0, [])


def test_missing_path_is_a_usage_error(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, err = run(capsys, "validate", str(good), str(good / "nope.yaml"))
    assert (code, out) == (2, "")
    assert err == f"error: {good / 'nope.yaml'}: No such file or directory\n"


@pytest.mark.parametrize("size", ["lots", "0", "-1"])
def test_bad_max_size_is_a_usage_error(capsys: pytest.CaptureFixture[str], good: Path,
                                       size: str) -> None:
    code, out, err = run(capsys, "validate", f"--max-size={size}", str(good))
    assert (code, out) == (2, "")
    assert err.startswith("error: --max-size: ")


def test_no_paths_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["validate"])
    assert exc.value.code == 2
    assert "PATH" in capsys.readouterr().err


def test_explicit_file_is_read_whatever_its_name(capsys: pytest.CaptureFixture[str],
                                                 good: Path) -> None:
    code, out, _ = run(capsys, "validate", str(good / "web.yaml~"))
    assert code == 1
    assert out.splitlines() == [
        f"{good / 'web.yaml~'}:1: invalid YAML: '[' opened here is never closed (the file"
        " ends first)",
        "1 problem in 1 file",
    ]


def test_a_file_named_twice_is_read_once(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, _ = run(capsys, "validate", str(good), str(good / "web.yaml"), str(good) + "/")
    assert (code, out) == (0, "3 documents in 2 files are valid\n")


def test_directory_without_manifests_warns(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    code, out, err = run(capsys, "validate", str(tmp_path))
    assert (code, out) == (0, "0 documents in 0 files are valid\n")
    assert err == f"warning: no manifest files in {tmp_path}\n"


def test_console_script(good: Path, write: Write) -> None:
    bad = write("m/bad.yaml", manifest("bad", "  workingDir: srv"))
    script = Path(sys.executable).parent / "reconciler"  # installed next to this Python
    proc = subprocess.run([str(script), "validate", "-o", "json", str(good)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr
    assert [(f["file"], f["line"], f["path"]) for f in json.loads(proc.stdout)] == [
        (str(bad), 7, "spec.workingDir")
    ]


# --- schema ----------------------------------------------------------------------------


def schema_output() -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["schema"]) == 0
    return buffer.getvalue()


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(schema_output())
    jsonschema.Draft202012Validator.check_schema(parsed)
    return parsed


def test_schema_is_indented_json() -> None:
    out = schema_output()
    assert out.startswith("{\n  ")
    assert json.loads(out)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def example_files() -> list[Path]:
    return files.scan(REPO / "manifests")


def test_there_are_examples() -> None:
    assert 2 <= len(example_files()) <= 3


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_examples_match_the_schema(schema: dict[str, Any], path: Path) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    for document in yaml.safe_load_all(path.read_text()):
        assert list(validator.iter_errors(document)) == []


@pytest.mark.parametrize(("change", "error"), [
    ({"workingdir": "/x"}, "Additional properties are not allowed ('workingdir' was unexpected)"),
    ({"hostNetwork": "false"}, "'false' is not of type 'boolean'"),
    ({"restartPolicy": "always"}, "'always' is not one of ['Always', 'OnFailure', 'Never']"),
])
def test_schema_rejects_invalid_documents(schema: dict[str, Any], change: dict[str, str],
                                          error: str) -> None:
    document = yaml.safe_load(manifest("web"))
    document["spec"].update(change)
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(document)]
    assert errors == [error]


def test_examples_validate(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", str(REPO / "manifests"))
    files_ = example_files()
    documents = sum(len(loader.load_file(p).documents) for p in files_)
    assert (code, out) == (0, f"{documents} documents in {len(files_)} files are valid\n")


def test_examples_use_the_busybox_image_and_its_applets() -> None:
    """`make run` builds busybox:latest (deploy/mkimage-busybox.sh) with an applet link at
    each applet's usual path; every example runs one of them."""
    applets = set(subprocess.run(["busybox", "--list-full"], capture_output=True, text=True,
                                 check=True).stdout.split()) if shutil.which("busybox") else None
    for path in example_files():
        result = loader.load_file(path)
        assert result.ok
        for doc in result.documents:
            if isinstance(doc.document, kube.Pod):  # a pod's images: `make image`'s, as is
                for _, c in doc.document.spec.all_containers():
                    assert c.image == "busybox:latest"
                    assert c.pull_policy.value != "Always"  # nothing can be pulled
                continue
            if not isinstance(doc.document, model.Container):
                continue
            spec = doc.container.spec
            assert spec.image == "busybox:latest"
            assert spec.command is not None
            program = spec.command[0]
            assert program.startswith("/")
            if applets is not None:
                assert program.lstrip("/") in applets, program


def test_yaml_examples_in_the_docs_are_valid() -> None:
    text = (REPO / "docs" / "manifests.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        result = loader.load_bytes(block.encode(), file="docs.yaml", base_dir=str(REPO))
        assert result.findings == ()
        assert result.documents != ()


@pytest.mark.parametrize("path", sorted((REPO / "tests" / "manifest" / "kube").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_kubernetes_fixtures_match_the_schema(schema: dict[str, Any], path: Path) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    for document in yaml.safe_load_all(path.read_text()):
        assert list(validator.iter_errors(document)) == []


def test_schema_names_the_wrong_pod_field(schema: dict[str, Any]) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "tty": "yes"}]}}
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(pod)]
    assert errors == ["'yes' is not of type 'boolean'"]


def test_validate_expands_pods_as_the_daemon_does(write: Write,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pod = write("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
                "  containers:\n  - name: c\n    image: busybox:1.36\n"
                "    envFrom: [{configMapRef: {name: missing}}]\n")
    code, out, _ = run(capsys, "validate", str(pod))
    assert code == 1
    assert 'spec.containers[0].envFrom[0]: ConfigMap "default/missing" not found' in out
