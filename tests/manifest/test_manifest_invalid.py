"""Invalid manifests, one per case: the exact findings (line, field path, message).

Every case is a real file on disk read by ``loader.load_file``; a file with any finding
must yield no documents.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.manifest import loader

Write = Callable[[str, str | bytes], Path]

HEAD = """\
apiVersion: reconciler/v1
kind: Container
metadata:
  name: web
spec:
"""


def spec(*lines: str) -> str:
    """A manifest whose spec holds ``lines`` (given at 2-space indent), from line 6."""
    return HEAD + "".join(line + "\n" for line in lines)


def rootfs(*lines: str) -> str:
    """Like ``spec`` with ``rootfs`` on line 6, so ``lines`` start at line 7."""
    return spec("  rootfs: /srv/rootfs", *lines)


DNS = "use 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
EXAMPLES = "(examples: 64Mi, 1G, 500m, 0.5, 128)"
SUFFIXES = "(known: Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E)"

CASES: list[tuple[str, str, list[str]]] = [
    # --- unknown and missing fields
    ("unknown-field-typo", rootfs("  workingdir: /srv"),
     ['7: spec.workingdir: unknown field; did you mean "workingDir"?']),
    ("unknown-field-snake-case", rootfs("  working_dir: /srv"),
     ['7: spec.working_dir: unknown field; did you mean "workingDir"?']),
    ("unknown-field-no-match", rootfs("  frobnicate: 1"),
     ["7: spec.frobnicate: unknown field"]),
    ("unknown-top-level", HEAD.replace("spec:", "sepc:") + "  rootfs: /srv/rootfs\n",
     ["1: spec: required field missing", '5: sepc: unknown field; did you mean "spec"?']),
    ("metadata-typo", HEAD.replace("  name:", "  nmae:") + "  rootfs: /srv/rootfs\n",
     ["3: metadata.name: required field missing",
      '4: metadata.nmae: unknown field; did you mean "name"?']),
    ("missing-apiVersion", rootfs().removeprefix("apiVersion: reconciler/v1\n"),
     ["1: apiVersion: required field missing"]),
    ("missing-spec", HEAD.removesuffix("spec:\n"),
     ["1: spec: required field missing"]),
    ("missing-metadata", "apiVersion: reconciler/v1\nkind: Container\nspec: {rootfs: /r}\n",
     ["1: metadata: required field missing"]),
    # --- apiVersion and kind
    ("wrong-apiVersion", rootfs().replace("reconciler/v1", "v1"),
     ['1: apiVersion: kind Container needs apiVersion "reconciler/v1"; got string "v1"']),
    ("apiVersion-number", rootfs().replace("reconciler/v1", "1"),
     ["1: apiVersion: must be 'reconciler/v1'; got integer 1"]),
    ("wrong-kind", rootfs().replace("kind: Container", "kind: Pod"),
     ['1: apiVersion: kind Pod needs apiVersion "v1"; got string "reconciler/v1"']),
    # --- metadata
    ("metadata-null", rootfs().replace("metadata:\n  name: web\n", "metadata:\n"),
     ["3: metadata: must be a mapping; got null"]),
    ("name-uppercase", rootfs().replace("name: web", "name: Web"),
     [f"4: metadata.name: 'Web' is not a DNS-1123 label: {DNS}"]),
    ("name-too-long", rootfs().replace("name: web", "name: " + "a" * 64),
     [f"4: metadata.name: '{'a' * 64}' is not a DNS-1123 label: {DNS}"]),
    ("name-number", rootfs().replace("name: web", "name: 42"),
     ['4: metadata.name: must be a string; got integer 42 (quote it: "42")']),
    ("label-value-number", rootfs().replace("name: web", "name: web\n  labels: {replicas: 3}"),
     ['5: metadata.labels.replicas: must be a string; got integer 3 (quote it: "3")']),
    ("label-key-boolean", rootfs().replace("name: web", "name: web\n  labels:\n    on: x"),
     ['6: metadata.labels.on: mapping key must be a string, got a boolean (quote it: "on")']),
    ("annotation-value-boolean",
     rootfs().replace("name: web", "name: web\n  annotations:\n    app.io/enabled: true"),
     ['6: metadata.annotations["app.io/enabled"]: must be a string; got boolean true'
      ' (quote it: "true")']),
    # --- root source
    ("duplicate-key", rootfs("  rootfs: /other"), ["7: spec.rootfs: duplicate key"]),
    ("two-root-sources", rootfs("  image: busybox"),
     ["5: spec: needs exactly one root source of rootfs, bundle, image; got rootfs and image"]),
    ("no-root-source", spec("  command: [/bin/sh]"),
     ["5: spec: needs exactly one root source of rootfs, bundle, image; got none"]),
    ("bad-image", spec("  image: Busybox!!"),
     ["6: spec.image: 'Busybox!!' is not an image reference (e.g. busybox:latest)"]),
    ("bundle-empty", spec('  bundle: ""'), ["6: spec.bundle: must be a non-empty host path"]),
    ("rootfs-list", spec("  rootfs: [/a, /b]"), ["6: spec.rootfs: must be a string; got a list"]),
    ("pull-policy", spec("  image: busybox", "  imagePullPolicy: sometimes"),
     ["7: spec.imagePullPolicy: must be 'IfNotPresent', 'Always' or 'Never';"
      ' got string "sometimes"']),
    # --- process
    ("command-empty", rootfs("  command: []"),
     ["7: spec.command: must name a program: a non-empty list with a non-empty first item"]),
    ("command-number", rootfs("  command: [/bin/sleep, 5]"),
     ['7: spec.command[1]: must be a string; got integer 5 (quote it: "5")']),
    ("args-string", rootfs("  args: -v"), ['7: spec.args: must be a list; got string "-v"']),
    ("env-missing-name", rootfs("  env:", "    - value: x"),
     ["8: spec.env[0].name: required field missing"]),
    ("env-name-equals", rootfs("  env:", "    - {name: A=B, value: x}"),
     ["8: spec.env[0].name: 'A=B' is not a valid variable name (non-empty, no '=')"]),
    ("env-value-number", rootfs("  env:", "    - name: PORT", "      value: 8080"),
     ['9: spec.env[0].value: must be a string; got integer 8080 (quote it: "8080")']),
    ("env-value-yes", rootfs("  env:", "    - {name: A, value: x}", "    - {name: B, value: yes}"),
     ['9: spec.env[1].value: must be a string; got boolean true (quote it: "yes")']),
    ("env-not-a-list", rootfs("  env: {A: x}"), ["7: spec.env: must be a list; got a mapping"]),
    ("workingDir-relative", rootfs("  workingDir: srv"),
     ["7: spec.workingDir: must be an absolute path inside the container, got 'srv'"]),
    ("workingDir-dotdot", rootfs("  workingDir: /srv/../etc"),
     ["7: spec.workingDir: must not contain '..', got '/srv/../etc'"]),
    ("workingDir-value-on-next-line", rootfs("  workingDir:", "    srv"),
     ["8: spec.workingDir: must be an absolute path inside the container, got 'srv'"]),
    ("uid-negative", rootfs("  user: {uid: -1}"),
     ["7: spec.user.uid: must be greater than or equal to 0; got integer -1"]),
    ("gid-too-big", rootfs("  user:", "    gid: 4294967295"),
     ["8: spec.user.gid: must be less than or equal to 4294967294; got integer 4294967295"]),
    ("additionalGids-string", rootfs("  user: {additionalGids: [wheel]}"),
     ['7: spec.user.additionalGids[0]: must be an integer; got string "wheel"']),
    ("hostname-invalid", rootfs("  hostname: web_1"),
     ["7: spec.hostname: 'web_1' is not a valid hostname (a DNS-1123 label)"]),
    # --- mounts
    ("mount-missing-type", rootfs("  mounts:", "    - destination: /data", "      source: /srv"),
     ['8: spec.mounts[0].type: required field missing (one of "bind", "tmpfs")']),
    ("mount-unknown-type", rootfs("  mounts:", "    - destination: /data", "      type: nfs"),
     ['9: spec.mounts[0].type: must be one of "bind", "tmpfs"; got string "nfs"']),
    ("bind-relative-destination",
     rootfs("  mounts:", "    - type: bind", "      source: /srv", "      destination: data"),
     ["10: spec.mounts[0].destination: must be an absolute path inside the container,"
      " got 'data'"]),
    ("bind-missing-source", rootfs("  mounts:", "    - {type: bind, destination: /data}"),
     ["8: spec.mounts[0].source: required field missing"]),
    ("bind-empty-source", rootfs("  mounts:", '    - {type: bind, source: "", destination: /d}'),
     ["8: spec.mounts[0].source: must be a non-empty host path"]),
    ("bind-readOnly-string",
     rootfs("  mounts:", '    - {type: bind, source: /s, destination: /d, readOnly: "yes"}'),
     ['8: spec.mounts[0].readOnly: must be true or false; got string "yes"']),
    ("tmpfs-bad-size",
     rootfs("  mounts:", "    - type: tmpfs", "      destination: /tmp", "      sizeLimit: 64MB"),
     [f"10: spec.mounts[0].sizeLimit: '64MB' has an unknown suffix 'MB' {SUFFIXES}"]),
    ("tmpfs-zero-size", rootfs("  mounts:", "    - {type: tmpfs, destination: /t, sizeLimit: 0}"),
     ["8: spec.mounts[0].sizeLimit: must be greater than zero, got '0'"]),
    ("tmpfs-typo", rootfs("  mounts:", "    - type: tmpfs", "      destination: /tmp",
                          "      readonly: true"),
     ['10: spec.mounts[0].readonly: unknown field; did you mean "readOnly"?']),
    ("tmpfs-source", rootfs("  mounts:", "    - {type: tmpfs, destination: /t, source: /s}"),
     ["8: spec.mounts[0].source: unknown field"]),
    ("duplicate-destination",
     rootfs("  mounts:", "    - {type: tmpfs, destination: /tmp}",
            "    - {type: bind, source: /s, destination: /tmp/}"),
     ["5: spec: two mounts at destination '/tmp'"]),
    ("mount-over-root", rootfs("  mounts:", "    - {type: tmpfs, destination: /}"),
     ["5: spec: a mount cannot replace the root '/'"]),
    ("mounts-merge-key-reports-anchor-line",
     rootfs("  mounts:", "    - &tmp {type: tmpfs, destination: /tmp, sizeLimit: lots}",
            "    - <<: *tmp", "      destination: /var/tmp"),
     [f"8: spec.mounts[0].sizeLimit: 'lots' is not a quantity {EXAMPLES}",
      f"8: spec.mounts[1].sizeLimit: 'lots' is not a quantity {EXAMPLES}"]),
    # --- resources
    ("memory-boolean", rootfs("  resources: {memory: true}"),
     ["7: spec.resources.memory: must be a quantity such as 64Mi or 500m, not a boolean"]),
    ("memory-bad-suffix", rootfs("  resources:", "    memory: 32Q"),
     [f"8: spec.resources.memory: '32Q' has an unknown suffix 'Q' {SUFFIXES}"]),
    ("cpu-negative", rootfs("  resources:", "    cpu: -1"),
     [f"8: spec.resources.cpu: '-1' is not a quantity {EXAMPLES}"]),
    ("pids-zero", rootfs("  resources:", "    pids: 0"),
     ["8: spec.resources.pids: must be greater than or equal to 1; got integer 0"]),
    ("pids-quantity", rootfs("  resources:", "    pids: 1k"),
     ['8: spec.resources.pids: must be an integer; got string "1k"']),
    ("resources-list", rootfs("  resources:", "    - memory: 1Mi"),
     ["7: spec.resources: must be a mapping; got a list"]),
    ("resources-typo", rootfs("  resources:", "    memroy: 1Mi"),
     ['8: spec.resources.memroy: unknown field; did you mean "memory"?']),
    # --- lifecycle
    ("restartPolicy-case", rootfs("  restartPolicy: always"),
     ["7: spec.restartPolicy: must be 'Always', 'OnFailure' or 'Never'; got string \"always\""]),
    ("state-bad", rootfs("  state: Started"),
     ["7: spec.state: must be 'Running', 'Paused' or 'Stopped'; got string \"Started\""]),
    ("stopSignal-bad", rootfs("  stopSignal: SIGFOO"),
     ["7: spec.stopSignal: 'SIGFOO' is not a signal name (e.g. SIGTERM, SIGINT, SIGQUIT)"]),
    ("stopSignal-number", rootfs("  stopSignal: 15"),
     ['7: spec.stopSignal: must be a string; got integer 15 (quote it: "15")']),
    ("grace-float", rootfs("  terminationGracePeriodSeconds: 1.5"),
     ["7: spec.terminationGracePeriodSeconds: must be an integer; got number 1.5"]),
    ("grace-too-long", rootfs("  terminationGracePeriodSeconds: 3601"),
     ["7: spec.terminationGracePeriodSeconds: must be less than or equal to 3600;"
      " got integer 3601"]),
    # --- security and namespaces
    ("hostNetwork-string", rootfs('  hostNetwork: "false"'),
     ['7: spec.hostNetwork: must be true or false; got string "false"']),
    ("readOnlyRootFilesystem-number", rootfs("  readOnlyRootFilesystem: 1"),
     ["7: spec.readOnlyRootFilesystem: must be true or false; got integer 1"]),
    ("capability-add-bad", rootfs("  capabilities:", "    add: [NET_ADMIN, FLY]"),
     ["8: spec.capabilities.add[1]: 'FLY' is not a Linux capability (e.g. NET_ADMIN, SYS_TIME)"]),
    ("capability-drop-bad", rootfs("  capabilities: {drop: [cap_bogus]}"),
     ["7: spec.capabilities.drop[0]: 'cap_bogus' is not a Linux capability"
      " (e.g. NET_ADMIN, SYS_TIME)"]),
    ("capabilities-typo", rootfs("  capabilities: {adds: [NET_ADMIN]}"),
     ['7: spec.capabilities.adds: unknown field; did you mean "add"?']),
    # --- documents and YAML
    ("document-list", "- apiVersion: reconciler/v1\n- kind: Container\n",
     ["1: a manifest document must be a mapping of apiVersion, kind, metadata and spec;"
      " got a list"]),
    ("document-scalar", "# a comment\nhello\n",
     ["2: a manifest document must be a mapping of apiVersion, kind, metadata and spec;"
      ' got string "hello"']),
    ("syntax-error", rootfs("  command: [/bin/sh", "  workingDir: /"),
     ["8: invalid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence"
      " on line 7)"]),
    ("tab-indentation", rootfs("  resources:", "\tmemory: 1Mi"),
     ["8: invalid YAML: found character '\\t' that cannot start any token"
      " (while scanning for the next token)"]),
    ("undefined-alias", rootfs("  workingDir: *dir"),
     ["7: invalid YAML: found undefined alias 'dir'"]),
    ("bad-explicit-int", rootfs("  resources: {pids: !!int many}"),
     ["1: a value with an explicit tag (!!bool, !!int, !!float, !!timestamp ...) that the"
      " tag cannot read"]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_manifest(write: Write, text: str, expected: list[str]) -> None:
    path = write("web.yaml", text)
    result = loader.load_file(path)
    assert [f"{f.line}: {f.path + ': ' if f.path else ''}{f.message}" for f in result.findings] \
        == expected
    assert all(f.file == str(path) for f in result.findings)
    assert result.documents == ()
    assert not result.ok


def test_case_table_is_large_and_unique() -> None:
    names = [c[0] for c in CASES]
    assert len(names) >= 35
    assert len(set(names)) == len(names)


def test_every_case_is_valid_once_fixed(write: Write) -> None:
    # The base the cases are built from is itself valid, so each case fails for its own
    # reason only.
    result = loader.load_file(write("web.yaml", rootfs()))
    assert result.findings == ()
    assert [d.container.name for d in result.documents] == ["web"]


def test_all_problems_of_a_file_are_reported_in_line_order(write: Write) -> None:
    text = rootfs("  workingDir: srv", "  hostNetwork: 0", "  rootfs: /again", "---",
                  "kind: Container")
    result = loader.load_file(write("web.yaml", text))
    assert [(f.line, f.path) for f in result.findings] == [
        (7, "spec.workingDir"), (8, "spec.hostNetwork"), (9, "spec.rootfs"),
        (11, "apiVersion"), (11, "metadata"), (11, "spec"),
    ]


@pytest.mark.parametrize(("text", "line"), [
    ("apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: web}\nspec:\n"
     "  rootfs: /x\n  command: [/bin/sh,\n", 6),
    ("a: [1, 2\n", 1),
    ("a: {b: [1, 2], c: 'y [ z', d: {e: 1, # a comment with [ in it\n  f: 2\n", 1),
    ("spec: [\n", 1),
])
def test_an_unclosed_bracket_is_named_on_its_line(write: Write, text: str, line: int) -> None:
    """PyYAML reports the end of the stream, one line past the last: the finding points
    at the bracket left open, and no finding is ever past the file's last line."""
    (finding,) = loader.load_file(write("web.yaml", text)).findings
    assert finding.line == line
    assert finding.message.endswith("opened here is never closed (the file ends first)")
    assert line <= text.count("\n")
