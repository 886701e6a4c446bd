"""``reconciler apply``, ``delete`` and ``restart``: the manifests directory edited for you.

These verbs never talk to the daemon or runc: the directory is the single source of
truth, and the daemon converges to it as to any hand edit. Each object ``apply`` writes
gets a file of its own with a predictable name (``container-web.yaml``,
``pod-default-site.yaml``, ``configmap-default-x.yaml``, ``secret-default-x.yaml``, the
last with mode 0600). Every file is replaced atomically: the new content goes to a hidden
temp file in the same directory (a name the scanner skips), is fsynced, then renamed.

``delete`` and ``restart`` edit the file that defines the object, wherever it is and
whatever its name: a document of a multi-document file is cut out of its text (found with
the YAML parser's marks), so the other documents keep their bytes and comments; a
restart inserts or updates one annotation line, ``reconciler.io/restartedAt``. Each
edit is checked by loading the new text with the daemon's loader before it is written;
an edit that does not come out exactly as meant falls back to re-serializing.

Exit codes: 0 done, 1 refused (a finding, a name defined elsewhere, an unknown name),
2 a usage error. Nothing is written when anything is refused.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import atomic, config, errors
from reconciler.cli import daemon as daemon_cli
from reconciler.cli.inputs import Refused, raw_documents, read_inputs
from reconciler.cli.inputs import lines as _lines

if TYPE_CHECKING:
    import yaml

    from reconciler.manifest import loader

    _Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

# kind -> the words a user may type for it
_TYPES = {
    "container": "Container", "containers": "Container", "ctr": "Container",
    "pod": "Pod", "pods": "Pod", "po": "Pod",
    "configmap": "ConfigMap", "configmaps": "ConfigMap", "cm": "ConfigMap",
    "secret": "Secret", "secrets": "Secret",
    "network": "Network", "networks": "Network", "net": "Network",
}
_DEFAULT_NAMESPACE = "default"


# -- the command line ---------------------------------------------------------------------


def register(subparsers: _Subparsers) -> None:
    """Add the ``apply``, ``delete`` and ``restart`` subcommands."""
    apply = subparsers.add_parser(
        "apply",
        help="write manifests into the watched directory, one file per object",
        description=(
            "Check manifests as the daemon would, then write each object into the manifests"
            " directory as a file of its own (container-NAME.yaml, pod-NAMESPACE-NAME.yaml,"
            " configmap-..., secret-... with mode 0600), atomically. Refused, with nothing"
            " written, when a document has a problem or another file defines the object."
        ),
    )
    apply.add_argument("-f", "--filename", action="append", required=True, metavar="PATH",
                       help="a manifest file, a directory of them, or - for stdin"
                       " (repeatable)")
    _manifests_option(apply)
    apply.set_defaults(func=run_apply)

    delete = subparsers.add_parser(
        "delete",
        help="remove objects from the watched directory",
        description=(
            "Remove each object's document from the file that defines it (the file itself"
            " when it holds nothing else), atomically. NAME is a container or pod name, or"
            " TYPE/NAME with TYPE one of container, pod, configmap, secret."
        ),
    )
    delete.add_argument("names", nargs="*", metavar="NAME", help="NAME or TYPE/NAME")
    delete.add_argument("-f", "--filename", action="append", metavar="PATH",
                        help="delete every object this file (or - for stdin) defines")
    _namespace_option(delete)
    _manifests_option(delete)
    delete.set_defaults(func=run_delete)

    restart = subparsers.add_parser(
        "restart",
        help="recreate a container or a whole pod by annotating its manifest",
        description=(
            f"Set the annotation {_restarted_at()}: NOW on the object's document, in the"
            " file that defines it: the daemon then makes a new instance (a pod: all of it)."
        ),
    )
    restart.add_argument("name", metavar="NAME", help="a container NAME, or pod/NAME")
    _namespace_option(restart)
    _manifests_option(restart)
    restart.set_defaults(func=run_restart)


def _restarted_at() -> str:
    return "reconciler.io/restartedAt"  # model.RESTARTED_AT, without importing pydantic


def _manifests_option(p: argparse.ArgumentParser) -> None:
    env = config.SETTINGS["manifests"][0]
    p.add_argument("--manifests", default=daemon_cli._default("manifests"), metavar="DIR",
                   help=f"the watched directory; default: %(default)s ({env} or config file)")


def _namespace_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", default=_DEFAULT_NAMESPACE, metavar="NS",
                   help=f"the namespace of a pod, configmap or secret (default:"
                   f" {_DEFAULT_NAMESPACE})")


# -- apply ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Write:
    key: tuple[str, str]
    path: Path
    data: bytes
    secret: bool
    word: str  # created, configured, unchanged


def run_apply(args: argparse.Namespace) -> int:
    from reconciler.manifest import loader

    directory = _directory(args.manifests)
    inputs = read_inputs(args.filename)
    findings = [f for r in inputs for f in r.findings]
    findings += loader.check_duplicates(r for r in inputs if r.ok)
    if findings:
        raise Refused(_lines(findings))
    docs = [d for r in inputs for d in r.documents]
    if not docs:
        raise Refused("no objects passed to apply")
    existing = _load_directory(directory)
    writes = _plan_writes(docs, raw_documents(inputs), directory, existing)
    _check_expansion(directory, existing, writes)
    for w in writes:
        if w.word != "unchanged":
            _write_atomic(w.path, w.data, mode=0o600 if w.secret else _mode_of(w.path))
        print(f"{_display(w.key)} {w.word}")  # noqa: T201
    return 0


def _plan_writes(docs: list[loader.Loaded], raw: dict[tuple[str, int], Any], directory: Path,
                 existing: list[loader.FileResult]) -> list[_Write]:
    from reconciler.manifest import loader

    defined = {d.key: d for r in existing for d in r.documents}
    by_file = {r.file: r for r in existing}
    writes: list[_Write] = []
    targets: dict[Path, loader.Loaded] = {}
    problems: list[str] = []
    for doc in docs:
        path = directory / _file_name(doc.key)
        if path in targets:
            problems.append(f"{doc.file}:{doc.line}: {loader.describe_key(doc.key)} would be"
                            f" written to {path.name}, as {_display(targets[path].key)} is")
            continue
        targets[path] = doc
        prior = defined.get(doc.key)
        if prior is not None and Path(prior.file) != path:
            problems.append(f"{loader.describe_key(doc.key)} is already defined in"
                            f" {prior.file}:{prior.line}; edit that file, or delete the"
                            " object first")
            continue
        there = by_file.get(str(path))
        if there is not None and (not there.ok or [d.key for d in there.documents] != [doc.key]):
            problems.append(f"{path} exists and holds more than {loader.describe_key(doc.key)};"
                            " apply writes a file of its own")
            continue
        data = _dump(raw[(doc.file, doc.index)]).encode("utf-8")
        reloaded = loader.load_bytes(data, file=str(path), base_dir=str(directory))
        if not reloaded.ok or len(reloaded.documents) != 1 or (
                _dump_model(reloaded.documents[0]) != _dump_model(doc)):
            problems.append(f"{doc.file}:{doc.line}: {loader.describe_key(doc.key)} means"
                            f" something else once written to {directory} (a relative host"
                            " path?); use absolute paths")
            continue
        try:
            old = path.read_bytes()
        except FileNotFoundError:
            word = "created"
        else:
            word = "unchanged" if old == data else "configured"
        writes.append(_Write(doc.key, path, data, doc.key[0] == "Secret", word))
    if problems:
        raise Refused("\nerror: ".join(problems))
    return writes


def _check_expansion(directory: Path, existing: list[loader.FileResult],
                     writes: list[_Write]) -> None:
    """What the daemon would make of the directory with these files written: refused if
    that is any problem it does not have now (a pod naming a ConfigMap that is nowhere)."""
    from reconciler.core import desired
    from reconciler.manifest import loader

    def problems(results: dict[str, loader.FileResult]) -> list[loader.Finding]:
        snap = desired.SourceSnapshot("apply", True, None, results)
        return list(desired.build(snap, None, pods_dir="/").problems)

    before = {r.file: r for r in existing}
    after = dict(before)
    for w in writes:
        after[str(w.path)] = loader.load_bytes(w.data, file=str(w.path), base_dir=str(directory))
    written = {str(w.path) for w in writes}
    old = {p for p in problems(before) if p.file not in written}
    new = [p for p in problems(after) if p not in old]
    if new:
        raise Refused(_lines(new))


def _file_name(key: tuple[str, str]) -> str:
    kind, name = key
    return f"{kind.lower()}-{name.replace('/', '-')}.yaml"


def _dump_model(doc: loader.Loaded) -> Any:
    return doc.document.model_dump(mode="json")


# -- delete ---------------------------------------------------------------------------------


def run_delete(args: argparse.Namespace) -> int:
    if bool(args.names) == bool(args.filename):
        raise errors.UsageError("name the objects to delete, or give -f FILE (not both)")
    directory = _directory(args.manifests)
    existing = _load_directory(directory)
    if args.filename:
        inputs = read_inputs(args.filename)
        findings = [f for r in inputs for f in r.findings]
        if findings:
            raise Refused(_lines(findings))
        keys = list(dict.fromkeys(d.key for r in inputs for d in r.documents))
    else:
        keys = list(dict.fromkeys(
            _resolve(existing, name, args.namespace, kinds=None) for name in args.names))
    found = [_defining(existing, key) for key in keys]
    by_file: dict[str, list[loader.Loaded]] = {}
    for doc in found:
        by_file.setdefault(doc.file, []).append(doc)
    edits = {file: _without(file, docs, directory) for file, docs in by_file.items()}
    for file, data in edits.items():
        if data is None:
            _unlink(Path(file))
        else:
            _write_atomic(Path(file), data, mode=_mode_of(Path(file)))
    for key in keys:
        print(f"{_display(key)} deleted")  # noqa: T201
    return 0


def _without(file: str, docs: list[loader.Loaded], directory: Path) -> bytes | None:
    """The file's bytes without these documents (None: nothing would be left)."""
    from reconciler.manifest import loader

    result = loader.load_file(file)
    gone = {d.index for d in docs}
    keep = [d for d in result.documents if d.index not in gone]
    if not keep:
        return None
    text = Path(file).read_text(encoding="utf-8")
    spans = _spans(text)
    cut = text
    for index in sorted(gone, reverse=True):
        start, end = spans[index]
        cut = cut[:start] + cut[end:]
    if _same_documents(cut, file, keep):
        return cut.encode("utf-8")
    data = _documents_data(text, file)  # the cut went wrong: the rest, re-serialized
    fallback = "---\n".join(_dump(data[d.index]) for d in keep)
    if _same_documents(fallback, file, keep):
        return fallback.encode("utf-8")
    raise Refused(f"{file}: cannot remove {_display(docs[0].key)} without changing the other"
                  " documents; edit it by hand")


def _same_documents(text: str, file: str, keep: list[loader.Loaded],
                    changed: tuple[int, Any] | None = None) -> bool:
    """``text`` loads as exactly the documents ``keep`` (``changed``: position in ``keep``
    and the model dump the one document there must have instead)."""
    from reconciler.manifest import loader

    result = loader.load_bytes(text.encode("utf-8"), file=file,
                               base_dir=os.path.dirname(os.path.abspath(file)))
    if not result.ok or len(result.documents) != len(keep):
        return False
    for i, (new, old) in enumerate(zip(result.documents, keep, strict=True)):
        want = changed[1] if changed is not None and changed[0] == i else _dump_model(old)
        if new.key != old.key or _dump_model(new) != want:
            return False
    return True


# -- restart --------------------------------------------------------------------------------


def run_restart(args: argparse.Namespace) -> int:
    directory = _directory(args.manifests)
    existing = _load_directory(directory)
    key = _resolve(existing, args.name, args.namespace, kinds=("Container", "Pod"))
    doc = _defining(existing, key)
    old = doc.document.metadata.annotations.get(_restarted_at())
    stamp = _now(precise=False)
    if stamp == old:  # twice in one second: still a change
        stamp = _now(precise=True)
    _write_atomic(Path(doc.file), _annotated(doc, stamp), mode=_mode_of(Path(doc.file)))
    print(f"{_display(key)} restarted")  # noqa: T201
    return 0


def _now(*, precise: bool) -> str:
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if precise else "%Y-%m-%dT%H:%M:%SZ")


def _annotated(doc: loader.Loaded, stamp: str) -> bytes:
    """The bytes of ``doc``'s file with the restart annotation set to ``stamp``."""
    import json

    from reconciler.manifest import loader

    file = doc.file
    result = loader.load_file(file)
    keep = list(result.documents)
    position = next(i for i, d in enumerate(keep) if d.index == doc.index)
    want = _dump_model(doc)
    want["metadata"]["annotations"] = {**want["metadata"].get("annotations", {}),
                                       _restarted_at(): stamp}
    changed = (position, want)
    text = Path(file).read_text(encoding="utf-8")
    if file.lower().endswith(".json"):
        data = json.loads(text)
        _set_annotation(data, stamp)
        out = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        if _same_documents(out, file, keep, changed):
            return out.encode("utf-8")
    else:
        edited = _annotate_text(text, doc.index, stamp)
        if edited is not None and _same_documents(edited, file, keep, changed):
            return edited.encode("utf-8")
        # the document re-serialized in its place; the others keep their text
        data = _documents_data(text, file)[doc.index]
        _set_annotation(data, stamp)
        start, end = _spans(text)[doc.index]
        head = text[start:end]
        marker = head.split("\n", 1)[0] + "\n" if head.startswith("---") else ""
        out = text[:start] + marker + _dump(data) + text[end:]
        if _same_documents(out, file, keep, changed):
            return out.encode("utf-8")
    raise Refused(f"{file}: cannot set {_restarted_at()} on {_display(doc.key)} without"
                  " changing anything else; set it by hand")


def _set_annotation(data: dict[str, Any], stamp: str) -> None:
    metadata = data.setdefault("metadata", {})
    annotations = metadata.get("annotations") or {}
    annotations[_restarted_at()] = stamp
    metadata["annotations"] = annotations


def _annotate_text(text: str, index: int, stamp: str) -> str | None:
    """The text with the annotation line inserted or its value replaced, keeping every
    other byte; None when the document is not written in block style."""
    import yaml

    roots = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    root = roots[index] if index < len(roots) else None
    metadata = _child(root, "metadata")
    if not _block_mapping(metadata):
        return None
    value = f'"{stamp}"'
    annotations = _child(metadata, "annotations")
    if annotations is None:
        anchor = metadata.value[0][0]
        indent = " " * anchor.start_mark.column
        line = f"{indent}annotations:\n{indent}  {_restarted_at()}: {value}\n"
        name = _child(metadata, "name")
        if isinstance(name, yaml.ScalarNode) and name.start_mark.line == name.end_mark.line:
            after = text.find("\n", name.end_mark.index) + 1  # below the name's line
            if after > 0:
                return text[:after] + line + text[after:]
    elif _block_mapping(annotations):
        current = _child(annotations, _restarted_at())
        if current is not None:
            if (not isinstance(current, yaml.ScalarNode)
                    or current.start_mark.line != current.end_mark.line):
                return None
            return text[:current.start_mark.index] + value + text[current.end_mark.index:]
        anchor = annotations.value[0][0]
        line = f"{' ' * anchor.start_mark.column}{_restarted_at()}: {value}\n"
    else:
        return None
    start = anchor.start_mark.index - anchor.start_mark.column
    if text[start:anchor.start_mark.index].strip():
        return None  # the key does not begin its line
    return text[:start] + line + text[start:]


def _child(node: yaml.Node | None, key: str) -> Any:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return None
    found = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key]
    return found[-1] if found else None


def _block_mapping(node: Any) -> bool:
    import yaml

    return isinstance(node, yaml.MappingNode) and not node.flow_style and bool(node.value)


# -- the directory ---------------------------------------------------------------------------


def _directory(manifests: str) -> Path:
    path = Path(manifests)
    if not path.is_dir():
        raise Refused(f"manifests directory {manifests} does not exist (--manifests,"
                      f" {config.SETTINGS['manifests'][0]})")
    return path


def _load_directory(directory: Path) -> list[loader.FileResult]:
    from reconciler.manifest import files, loader

    try:
        scanned = files.scan(directory)
    except OSError as exc:
        raise Refused(f"cannot scan {directory}: {exc.strerror or exc}") from exc
    return [loader.load_file(p) for p in scanned]


def _resolve(existing: list[loader.FileResult], text: str, namespace: str,
             kinds: tuple[str, ...] | None) -> tuple[str, str]:
    """The (kind, name) key ``NAME`` or ``TYPE/NAME`` names in the directory."""
    kind: str | None = None
    name = text
    if "/" in text:
        word, name = text.split("/", 1)
        kind = _TYPES.get(word.lower())
        if kind is None:
            raise errors.UsageError(f'unknown type "{word}" in {text!r} (use container, pod,'
                                    " configmap, secret or network)")
        if kinds is not None and kind not in kinds:
            raise errors.UsageError(f"only a container or a pod can be restarted, not {text}")
    if not name:
        raise errors.UsageError(f"no name in {text!r}")
    candidates = [kind] if kind is not None else list(kinds or ("Container", "Pod"))
    wanted = [(k, name if k in ("Container", "Network") else f"{namespace}/{name}")
              for k in candidates]
    defined = {d.key for r in existing for d in r.documents}
    matches = [key for key in wanted if key in defined]
    if len(matches) > 1:
        raise Refused(f"{name} is " + " and ".join(_display(k) for k in matches)
                      + "; say which: " + " or ".join(_display(k) for k in matches))
    if not matches:
        broken = sum(1 for r in existing if not r.ok)
        what = " or ".join(_display(k) for k in wanted)
        hint = (f" ({broken} file(s) there have problems: see reconciler validate)"
                if broken else "")
        raise Refused(f"{what} not found in the manifests directory{hint}")
    return matches[0]


def _defining(existing: list[loader.FileResult], key: tuple[str, str]) -> loader.Loaded:
    from reconciler.manifest import loader

    docs = [d for r in existing for d in r.documents if d.key == key]
    if not docs:
        raise Refused(f"{_display(key)} not found in the manifests directory")
    if len(docs) > 1:
        where = ", ".join(f"{d.file}:{d.line}" for d in docs)
        raise Refused(f"{loader.describe_key(key)} is defined more than once ({where});"
                      " fix that first")
    return docs[0]


def _display(key: tuple[str, str]) -> str:
    """kubectl's words: ``container/web``, ``pod/site`` (namespace left out)."""
    return f"{key[0].lower()}/{key[1].rsplit('/', 1)[-1]}"


# -- text and files -------------------------------------------------------------------------


def _documents_data(text: str, file: str) -> list[Any]:
    import yaml

    if file.lower().endswith(".json"):
        text = text.replace("\t", " ")
    return list(yaml.safe_load_all(text))


def _spans(text: str) -> list[tuple[int, int]]:
    """Where each YAML document is in ``text``, as character offsets: from its ``---``
    line (or the end of the one before; the file's start for the first) to the next."""
    import yaml

    starts: list[int] = []
    previous_end = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.DocumentStartEvent):
            if event.explicit:
                mark = event.start_mark
                assert mark is not None
                starts.append(mark.index - mark.column)
            else:
                starts.append(previous_end if starts else 0)
        elif isinstance(event, yaml.DocumentEndEvent):
            assert event.end_mark is not None
            end = event.end_mark.index
            newline = text.find("\n", end)
            previous_end = len(text) if newline < 0 else newline + 1
            if end == 0 or text[end - 1] == "\n":
                previous_end = end
    ends = [*starts[1:], len(text)]
    return list(zip(starts, ends, strict=True))


def _dump(data: Any) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value and value.strip() == value.rstrip("\n").strip() else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=4096)


def _mode_of(path: Path) -> int:
    """The permission bits of the file being replaced; a new file's: 0666 less the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    atomic.write(path, data, mode=mode, sync_dir=True)


def _unlink(path: Path) -> None:
    os.unlink(path)
    atomic.fsync_dir(path.parent)
