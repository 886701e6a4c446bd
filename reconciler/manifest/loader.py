"""Manifest files in, validated ``Container`` values or findings with file and line out.

Sits between the files on disk and the rest of the program: ``reconciler validate`` and
the daemon (on every change in the manifests directory) call ``load_file`` and get a
``FileResult``; bad content never raises. Each problem is a ``Finding`` printed as
``web.yaml:7: spec.workingDir: must be an absolute path inside the container``.

One file, step by step:

    stat (size limit) → read → NUL / UTF-8 checks
    → compose each YAML document while checking nesting depth, node count with aliases
      expanded, tags, duplicate and non-string keys: libyaml's parser under our Python
      composer first; a file with any problem, or with a character on which the two
      parsers disagree, is loaded by the pure-Python SafeLoader (the reference), whose
      result is the one given
    → construct plain data → ``model.Container`` (pydantic)
    → each pydantic error becomes a finding on the line of its YAML node

A file with any problem yields findings and no documents: a half-valid file is broken as
a whole. Hostile input (alias bombs, deep nesting, huge or binary files, Python tags) is
refused while composing, before anything is expanded or constructed.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime
import difflib
import functools
import hashlib
import json
import os
import re
import stat
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import pydantic
import yaml

try:  # PyYAML built without libyaml (some source builds): the reference loader alone
    import yaml._yaml as _libyaml

    _CParser: Any = _libyaml.CParser
except ImportError:  # pragma: no cover - Debian's and PyPI's x86-64 wheels have it
    _CParser = None
from pydantic_core import ErrorDetails

from reconciler.manifest import model

if typing.TYPE_CHECKING:
    from reconciler.manifest import policy

# Imported when a v1 document (or a Network) is first seen (``_kinds``): the daemon's
# start-up does not pay for the Kubernetes models.
if TYPE_CHECKING:
    from reconciler.manifest import kube, network

MAX_SIZE = 1 << 20  # bytes per file, checked with stat before reading
MAX_NODES = 10_000  # YAML nodes per document, counted with every alias expanded
MAX_DEPTH = 64  # nesting of collections, also counted through aliases
# Nodes per file as written, all documents together: pure-Python YAML composes some
# 40,000 nodes a second, so this bounds the time any file under MAX_SIZE can cost. A
# container takes 20 to 100 nodes.
MAX_FILE_NODES = 10_000
MAX_DOCUMENTS = 1_000  # per file, empty ones included

_TAG_PREFIX = "tag:yaml.org,2002:"
_STR, _NULL, _MERGE, _VALUE = (_TAG_PREFIX + t for t in ("str", "null", "merge", "value"))
# Exactly the tags SafeLoader can construct; anything else (!!python/..., local !tags) is
# refused before construction.
_SAFE_TAGS = frozenset(t for t in yaml.SafeLoader.yaml_constructors if t is not None)
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")

PathElem = str | int


@dataclass(frozen=True)
class Finding:
    """One problem in a manifest file; ``line`` is 1-based, ``None`` for the whole file."""

    file: str
    line: int | None
    path: str
    message: str
    # a policy with ``enforce: evict`` forbids this object (kind, key): it is deleted,
    # not kept running on its last good revision
    evicts: tuple[str, str] | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


Document = Union[model.Container, "kube.Pod", "kube.ConfigMap", "kube.Secret",
                 "network.Network"]

# (apiVersion, kind) of every kind a document may be; the models: ``_kinds``
KINDS = ((model.API_VERSION, "Container"), (model.API_VERSION, "Network"), ("v1", "Pod"),
         ("v1", "ConfigMap"), ("v1", "Secret"))


@functools.cache
def _kinds() -> dict[tuple[str, str], type[pydantic.BaseModel]]:
    from reconciler.manifest import kube, network

    return {(model.API_VERSION, "Container"): model.Container,
            (model.API_VERSION, "Network"): network.Network, ("v1", "Pod"): kube.Pod,
            ("v1", "ConfigMap"): kube.ConfigMap, ("v1", "Secret"): kube.Secret}


@dataclass(frozen=True)
class Loaded:
    """A valid document: ``line`` is where it starts, ``index`` its position in the file
    counting every YAML document (empty ones included), from 0."""

    document: Document
    file: str
    line: int
    index: int

    @property
    def container(self) -> model.Container:
        """The document of a ``kind: Container`` (the other kinds have none)."""
        if not isinstance(self.document, model.Container):
            raise TypeError(f"a {self.document.kind} document, not a Container")
        return self.document

    @property
    def key(self) -> tuple[str, str]:
        """(kind, name): a Container's name, ``namespace/name`` for the Kubernetes kinds."""
        return key_of(self.document)


def key_of(document: Document) -> tuple[str, str]:
    if isinstance(document, model.Container):
        return "Container", document.name
    return document.kind, document.key


@dataclass(frozen=True)
class FileResult:
    """What one file holds: its documents if all are valid, else only findings.

    ``digest`` is the sha256 of the bytes read, empty when the file was not read (too
    large, not a regular file, unreadable).
    """

    file: str
    digest: str
    documents: tuple[Loaded, ...]
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings


def load_file(path: str | os.PathLike[str], *, max_size: int = MAX_SIZE,
              check: policy.Check | None = None) -> FileResult:
    """Load every document of one file; relative host paths resolve against its directory.

    The directory is the one the file is named in: a symlink's own directory, not its
    target's (a ConfigMap's ``web.yaml -> ..data/web.yaml`` resolves next to ``web.yaml``).
    """
    file = os.fspath(path)
    try:
        info = os.stat(file)
        if not stat.S_ISREG(info.st_mode):
            return _broken(file, "not a regular file")
        if info.st_size > max_size:
            return _broken(file, _too_large(info.st_size, max_size))
        # O_NONBLOCK: a FIFO swapped in after the stat must not hang the daemon.
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as fh:
            data = fh.read(max_size + 1)
    except OSError as exc:
        return _broken(file, f"cannot read file: {exc.strerror or exc}")
    if len(data) > max_size:  # grew after the stat
        return _broken(file, _too_large(len(data), max_size))
    return load_bytes(data, file=file, base_dir=os.path.dirname(os.path.abspath(file)),
                      check=check)


def load_bytes(data: bytes, *, file: str, base_dir: str | None,
               check: policy.Check | None = None) -> FileResult:
    """Load every document in ``data``; ``file`` names it in findings, ``base_dir`` anchors
    relative host paths (``None``: an etcd key, where a relative path is an error).
    ``check``: a policy's hook (``policy.checker``); what it forbids in a valid document
    is a finding on the field's line."""
    digest = hashlib.sha256(data).hexdigest()
    text = _decode(data)
    if isinstance(text, Finding):
        return FileResult(file, digest, (), (_in_file(text, file),))
    if file.lower().endswith(".json"):
        # JSON may indent with tabs, which YAML 1.1 refuses; JSON strings cannot hold a
        # raw tab, so outside strings they are plain whitespace.
        text = text.replace("\t", " ")
    documents, findings = _parse(text, file=file, base_dir=base_dir, check=check)
    if findings:
        return FileResult(file, digest, (), tuple(_clamped(findings, text)))
    last = _last_line(text)  # what later findings on a document (a duplicate) will name
    return FileResult(file, digest, tuple(d if d.line <= last else
                                          dataclasses.replace(d, line=last)
                                          for d in documents), ())


def policy_from(value: str) -> tuple[policy.Policy | None, list[Finding]]:
    """``--policy VALUE``: a built-in level by its name (``baseline``), else a file."""
    from reconciler.manifest import policy

    if value in policy.LEVELS:
        return policy.builtin(value), []
    return load_policy(value)


def load_policy(path: str | os.PathLike[str]) -> tuple[policy.Policy | None, list[Finding]]:
    """A policy file (``run --policy``, ``validate --policy``): one ``kind: Policy``
    document, or its findings, each on its line as a manifest's are."""
    from reconciler.manifest import policy

    file = os.fspath(path)
    try:
        with open(file, "rb") as fh:
            data = fh.read(MAX_SIZE + 1)
    except OSError as exc:
        return None, [Finding(file, None, "", f"cannot read file: {exc.strerror or exc}")]
    if len(data) > MAX_SIZE:
        return None, [Finding(file, None, "", f"the file is larger than {MAX_SIZE} bytes: "
                                              "not a policy")]
    text = _decode(data)
    if isinstance(text, Finding):
        return None, [_in_file(text, file)]
    try:
        loader = _Loader(text)  # the reference loader refuses a bad character here
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        return None, [Finding(file, line, "", f"invalid YAML: character #x{exc.character:04x}"
                                              " is not allowed")]
    try:
        root = loader.get_single_node()
        if root is None:
            return None, [Finding(file, None, "", "empty: a policy file holds one "
                                                  "kind: Policy document")]
        content = loader.construct_document(root)
    except _Refused as exc:
        return None, _clamped([Finding(file, exc.line, exc.path, exc.message)], text)
    except yaml.MarkedYAMLError as exc:
        return None, [_syntax_finding(exc, text, file)]
    except yaml.YAMLError as exc:
        return None, [Finding(file, None, "", f"invalid YAML: {exc}")]
    except _TAG_ERRORS:
        return None, [Finding(file, None, "", _TAGGED)]
    finally:
        loader.dispose()
    if loader.problems:
        return None, _clamped([_in_file(f, file) for f in loader.problems], text)
    if not isinstance(content, dict):
        what = "empty" if content is None else f"a {type(content).__name__}, not a mapping"
        return None, _clamped([Finding(file, _line(root.start_mark), "",
                                       f"{what}: a policy file holds one kind: Policy "
                                       "document")], text)
    try:
        return policy.Policy.model_validate(content, context={"base_dir": None}), []
    except pydantic.ValidationError as exc:
        return None, _clamped(sorted((_from_error(err, root, file, policy.Policy)
                                      for err in exc.errors(include_url=False)),
                                     key=lambda f: f.line or 0), text)


_TAG_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError)
_TAGGED = ("a value with an explicit tag (!!bool, !!int, !!float, !!timestamp ...) that the "
           "tag cannot read")


def _clamped(findings: Iterable[Finding], text: str) -> list[Finding]:
    """Lines as editors count them: PyYAML also breaks lines at \\r, NEL, LS and PS, which
    can number a line past the file's last; such a finding is on the last line."""
    last = _last_line(text)
    return [f if f.line is None or f.line <= last else dataclasses.replace(f, line=last)
            for f in findings]


def _last_line(text: str) -> int:
    return max(1, text.count("\n") + (0 if text.endswith("\n") else 1))


def check_duplicates(results: Iterable[FileResult]) -> list[Finding]:
    """A finding for each object (kind and name) defined again after its first definition."""
    first: dict[tuple[str, str], Loaded] = {}
    findings = []
    for result in results:
        for doc in result.documents:
            prior = first.setdefault(doc.key, doc)
            if prior is not doc:
                findings.append(Finding(
                    doc.file, doc.line, "metadata.name",
                    f"{describe_key(doc.key)} is already defined in {prior.file}:{prior.line}",
                ))
    return findings


def describe_key(key: tuple[str, str]) -> str:
    """``container "web"``, ``pod "default/web"``."""
    return f'{key[0].lower()} "{key[1]}"'


# --- bytes to text ---------------------------------------------------------------------


def _broken(file: str, message: str) -> FileResult:
    return FileResult(file, "", (), (Finding(file, None, "", message),))


def _too_large(size: int, limit: int) -> str:
    return f"file too large: {size} bytes, over the limit of {limit} bytes"


def _in_file(finding: Finding, file: str) -> Finding:
    return Finding(file, finding.line, finding.path, finding.message)


def _decode(data: bytes) -> str | Finding:
    """The text of a manifest, or a finding (with an empty file name) saying why not."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return Finding("", 1, "", "file is UTF-16 or UTF-32 (byte order mark); save it as UTF-8")
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        return Finding("", line, "", f"binary file (NUL byte at offset {nul}), not YAML text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text: invalid byte 0x{data[exc.start]:02x} at offset {exc.start}"
        return Finding("", line, "", message)


# --- text to documents -----------------------------------------------------------------


class _Refused(Exception):
    """Input the loader will not go on with (a limit or a forbidden tag)."""

    def __init__(self, message: str, *, line: int | None, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.path = path


def _line(mark: yaml.Mark | None) -> int | None:
    return None if mark is None else mark.line + 1


# Text the fast path leaves to the reference: what the Reader refuses, and where libyaml
# reads differently from PyYAML's pure scanner (found by fuzzing the example manifests,
# tests/manifest/test_manifest_fast_loader.py): a tab as separation space, "?" inside a
# flow plain scalar ([/var?/www]), a byte-order mark inside the text, a tag ("!" on an
# empty value is "" for libyaml, null for PyYAML; "!!str," ends the tag for libyaml
# only), and "#" right after a block scalar's header ("|#x" is a comment for libyaml).
_DISAGREE = re.compile("[\t?\ufeff!]|[|>][-+0-9]*#")


def _fast_refuses(text: str) -> bool:
    return bool(_DISAGREE.search(text) or yaml.reader.Reader.NON_PRINTABLE.search(text))


class _Checks(yaml.composer.Composer):
    """The composer with the loader's checks, shared by both loaders below.

    ``problems`` collects the duplicate and non-string keys of the last composed document;
    limits and forbidden tags raise ``_Refused`` at once. Expanded size and depth are
    memoized per node, so an alias costs one lookup and nothing is ever expanded.
    """

    if TYPE_CHECKING:  # the parser's, pure-Python or libyaml's, later in the MRO
        def check_event(self, *choices: Any) -> bool: ...
        def peek_event(self) -> yaml.Event: ...

    def _start_checks(self) -> None:
        self.problems: list[Finding] = []
        self._path: list[PathElem] = []
        self._depth = 0
        self._total = 0  # in this document, aliases expanded
        self._file_total = 0  # in this file, as written
        self._documents = 0
        self._measured: dict[int, tuple[int, int]] = {}  # id(node) -> (size, depth) expanded

    def compose_document(self) -> yaml.Node | None:
        self._documents += 1
        if self._documents > MAX_DOCUMENTS:
            raise _Refused(
                f"file has more than {MAX_DOCUMENTS} documents; split it into smaller files",
                line=_line(self._peek().start_mark),
            )
        self.problems = []
        self._total = 0
        self._measured = {}
        return super().compose_document()

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        key: object = index  # PyYAML passes the key node for a mapping value
        if self.check_event(yaml.AliasEvent):
            return self._compose_alias(parent, index)
        mark = self._peek().start_mark
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", line=_line(mark))
        self._count(1, mark, f"document has more than {MAX_NODES} nodes")
        self._file_total += 1
        if self._file_total > MAX_FILE_NODES:
            raise _Refused(
                f"file has more than {MAX_FILE_NODES} YAML nodes; split it into smaller files",
                line=_line(mark),
            )
        elem = _path_elem(key)
        if elem is not None:
            self._path.append(elem)
        try:
            node = super().compose_node(parent, index)
            if node is not None:
                self._measure(node)
                self._check(node, is_key=isinstance(parent, yaml.MappingNode) and key is None)
        finally:
            if elem is not None:
                self._path.pop()
            self._depth -= 1
        return node

    def _compose_alias(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self._peek()
        node = super().compose_node(parent, index)  # raises for an undefined alias
        measured = self._measured.get(id(node))
        if measured is None:  # its anchor is still being composed
            elem = _path_elem(index)
            path = self._path if elem is None else [*self._path, elem]
            raise _Refused(
                f"alias *{event.anchor} refers to a node that contains it (a recursive"
                " structure)", line=_line(event.start_mark), path=_format_path(path),
            )
        size, depth = measured
        self._count(
            size, event.start_mark,
            f"alias *{event.anchor} expands the document past {MAX_NODES} nodes;"
            " refused without expanding it (an alias bomb?)",
        )
        if self._depth + depth > MAX_DEPTH:
            raise _Refused(
                f"nested deeper than {MAX_DEPTH} levels once aliases are expanded",
                line=_line(event.start_mark),
            )
        return node

    def _peek(self) -> Any:
        return self.peek_event()

    def _count(self, size: int, mark: yaml.Mark | None, message: str) -> None:
        self._total += size
        if self._total > MAX_NODES:
            raise _Refused(message, line=_line(mark))

    def _measure(self, node: yaml.Node) -> None:
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        sizes = [self._measured[id(child)] for child in children]
        self._measured[id(node)] = (
            1 + sum(s for s, _ in sizes), 1 + max((d for _, d in sizes), default=0)
        )

    def _check(self, node: yaml.Node, *, is_key: bool) -> None:
        # SafeLoader resolves a bare "=" to !!value and "<<" to !!merge but constructs
        # neither as a plain value; both are text unless "<<" is a key.
        if node.tag == _VALUE or (node.tag == _MERGE and not is_key):
            node.tag = _STR
        if node.tag == _MERGE:
            return
        if node.tag not in _SAFE_TAGS:
            raise _Refused(
                f"tag {_short_tag(node.tag)} is not allowed: manifests are plain YAML data",
                line=_line(node.start_mark), path=_format_path(self._path),
            )
        if not isinstance(node, yaml.MappingNode):
            return
        seen: set[str] = set()
        for key, _ in node.value:
            if key.tag == _MERGE:
                continue
            line = _line(key.start_mark)
            if not isinstance(key, yaml.ScalarNode) or key.tag != _STR:
                text = key.value if isinstance(key, yaml.ScalarNode) else "?"
                message = f"mapping key must be a string, got {_TAG_WORDS.get(key.tag, key.tag)}"
                if isinstance(key, yaml.ScalarNode):
                    message += f" (quote it: {json.dumps(text)})"
                self.problems.append(Finding("", line, _format_path([*self._path, text]), message))
            elif key.value in seen:
                path = _format_path([*self._path, key.value])
                self.problems.append(Finding("", line, path, "duplicate key"))
            else:
                seen.add(key.value)




class _Loader(_Checks, yaml.SafeLoader):
    """The pure-Python SafeLoader with the checks: the reference, whose words every error
    a user sees is in (the fast loader hands anything unusual to it)."""

    def __init__(self, text: str) -> None:
        yaml.SafeLoader.__init__(self, text)  # the Reader checks every character up front
        self._start_checks()

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803
        # The scanner reads up to 1024 characters ahead before the composer sees a node:
        # refuse "[[[[..." here, at the 65th bracket, not after a thousand.
        super().fetch_flow_collection_start(TokenClass)
        if self.flow_level > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", line=self.line + 1)


class _FastLoader(_Checks, _CParser or object,  # type: ignore[misc]
                  yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """libyaml's parser under the same composer and checks: the events come from C (about
    five times faster for a typical manifest), the nodes, limits, tags and keys are
    composed and checked in Python exactly as by ``_Loader``. Used only for files that
    load cleanly: any error or refusal is loaded again by ``_Loader``, so every message
    and line a user sees comes from the reference loader."""

    def __init__(self, text: str) -> None:
        _CParser.__init__(self, text)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._start_checks()


_TAG_WORDS = {
    _TAG_PREFIX + tag: word for tag, word in [
        ("bool", "a boolean"), ("int", "an integer"), ("float", "a number"), ("null", "null"),
        ("timestamp", "a timestamp"), ("seq", "a list"), ("map", "a mapping"),
    ]
}


def _path_elem(index: object) -> PathElem | None:
    """The path element of a node PyYAML composes with ``index``: the key node for a
    mapping value, the position in a sequence, None for a key or the root."""
    if isinstance(index, yaml.ScalarNode):
        return str(index.value)
    if isinstance(index, int):
        return index
    return "?" if isinstance(index, yaml.Node) else None


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG_PREFIX) if tag.startswith(_TAG_PREFIX) else tag


def _parse(text: str, *, file: str, base_dir: str | None,
           check: policy.Check | None = None) -> tuple[list[Loaded], list[Finding]]:
    """The documents of ``text``, or its findings, exactly as the reference loader gives
    them. libyaml's parser first, unless the text has a character on which the two
    parsers are known to disagree (``_fast_refuses``); anything but a clean load (a YAML
    error, a refused limit or tag, a duplicate key, an invalid field) is loaded again by
    the reference, whose findings are the ones reported."""
    if _CParser is not None and not _fast_refuses(text):
        try:
            documents, findings = _parse_with(_FastLoader, text, file=file,
                                              base_dir=base_dir, check=check)
        except Exception:  # noqa: BLE001 - whatever it was, the reference says it
            pass
        else:
            if not findings:
                return documents, findings
    return _parse_with(_Loader, text, file=file, base_dir=base_dir, check=check)


def _parse_with(
    kind: type[_Loader] | type[_FastLoader], text: str, *, file: str, base_dir: str | None,
    check: policy.Check | None = None,
) -> tuple[list[Loaded], list[Finding]]:
    documents: list[Loaded] = []
    findings: list[Finding] = []
    loader: _Loader | _FastLoader | None = None
    try:
        loader = kind(text)  # the reference loader checks every character up front
        index = 0
        while loader.check_node():
            root = loader.get_node()
            if root is not None and not (isinstance(root, yaml.ScalarNode) and root.tag == _NULL):
                doc, problems = _document(loader, root, file=file, base_dir=base_dir,
                                          index=index, check=check)
                if doc is not None:
                    documents.append(doc)
                findings.extend(problems)
            index += 1
    except _Refused as exc:
        findings.append(Finding(file, exc.line, exc.path, exc.message))
    except yaml.MarkedYAMLError as exc:
        findings.append(_syntax_finding(exc, text, file))
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        message = f"invalid YAML: character #x{exc.character:04x} is not allowed"
        findings.append(Finding(file, line, "", message))
    except RecursionError:  # a safety net: MAX_DEPTH keeps the composer far from it
        findings.append(Finding(file, None, "", "nested too deeply"))
    finally:
        if loader is not None:
            loader.dispose()
    return documents, findings


def _syntax_finding(exc: yaml.MarkedYAMLError, text: str, file: str) -> Finding:
    """A YAML syntax error on a line of the file. PyYAML reports an unclosed bracket at
    the end of the stream, a line past the last one: such an error points at the bracket
    left open instead, and no line is ever past the file's last."""
    line, message = _line(exc.problem_mark), _yaml_message(exc)
    if "<stream end>" in str(exc.problem):
        opened = _unclosed(text)
        if opened is not None:
            bracket, line = opened
            message = (f"invalid YAML: '{bracket}' opened here is never closed (the file"
                       " ends first)")
    last = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
    return Finding(file, None if line is None else min(line, last), "", message)


def _unclosed(text: str) -> tuple[str, int] | None:
    """The innermost flow bracket (``[`` or ``{``) left open, with its line; quoted text
    and comments are skipped. A rough scan: only used to word an error better."""
    stack: list[tuple[str, int]] = []
    line, quote, comment, previous = 1, "", False, " "
    for ch in text:
        if ch == "\n":
            line, comment = line + 1, False
        elif comment:
            pass
        elif quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'" and previous in " \t[{,:":
            quote = ch
        elif ch == "#" and previous in " \t":
            comment = True
        elif ch in "[{":
            stack.append((ch, line))
        elif ch in "]}" and stack:
            stack.pop()
        previous = ch
    return stack[-1] if stack else None


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    message = f"invalid YAML: {exc.problem or exc.context or 'syntax error'}"
    if exc.problem and exc.context:
        where = _line(exc.context_mark)
        message += f" ({exc.context}" + (f" on line {where})" if where else ")")
    return message


def _document(
    loader: _Loader | _FastLoader, root: yaml.Node, *, file: str, base_dir: str | None,
    index: int, check: policy.Check | None = None,
) -> tuple[Loaded | None, list[Finding]]:
    """One composed document validated: the ``Loaded`` value or its findings."""
    start = root.start_mark.line + 1
    findings = [_in_file(f, file) for f in loader.problems]
    try:
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        return None, [Finding(file, _line(exc.problem_mark), "", _yaml_message(exc))]
    except _TAG_ERRORS:
        # SafeConstructor's own failures on explicit tags (`!!int abc`, `!!bool maybe`,
        # `!!int ""`), in Python's words (KeyError: 'maybe'): said in ours.
        return None, [Finding(file, start, "", _TAGGED)]
    kind, wrong = _kind_of(data, root, file)
    if wrong is not None:
        return None, [*findings, wrong]
    try:
        document = kind.model_validate(data, context={"base_dir": base_dir})
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False)
        # A non-string key is already a finding; pydantic's word on it would repeat it.
        # A key refused by its own validator (a ConfigMap key "a b") is said only here.
        said = [err for err in errors
                if err["type"] != "invalid_key" and "[key]" not in err["loc"]]
        findings += [_from_error(err, root, file, kind)
                     for err in (said if findings or said else errors)]
        return None, sorted(findings, key=lambda f: f.line or 0)
    if not findings and check is not None:
        key = key_of(typing.cast("Document", document))
        findings = [Finding(file, _value_line(root, v.path), _format_path(v.path),
                            f"{v.message} (policy: {v.rule}{', evicted' if v.evict else ''})",
                            key if v.evict else None)
                    for v in check(document)]
    if findings:
        return None, sorted(findings, key=lambda f: f.line or 0)
    return Loaded(typing.cast("Document", document), file, start, index), []


def _kind_of(data: object, root: yaml.Node, file: str
             ) -> tuple[type[pydantic.BaseModel], Finding | None]:
    """The model for a document by its apiVersion and kind: ours (the default, whose
    errors say what is missing), or a Kubernetes v1 kind; a kind we do not know at all
    is a finding on its line."""
    if not isinstance(data, dict):
        return model.Container, None
    version, kind = data.get("apiVersion"), data.get("kind")
    if not isinstance(kind, str) or not isinstance(version, str):
        return model.Container, None
    if (version, kind) == (model.API_VERSION, "Container"):
        return model.Container, None
    if (version, kind) in KINDS:
        return _kinds()[(version, kind)], None
    known = [k for v, k in KINDS if k == kind]
    if known:
        versions = " or ".join(f'"{v}"' for v, k in KINDS if k == kind)
        return model.Container, Finding(
            file, _value_line(root, ("apiVersion",)), "apiVersion",
            f"kind {kind} needs apiVersion {versions}; got {_describe(version)}")
    if version == model.API_VERSION:
        ours = " or ".join(k for v, k in KINDS if v == version)
        return model.Container, Finding(
            file, _value_line(root, ("kind",)), "kind",
            f"kind {kind} is not a {version} kind: use {ours}")
    kinds = ", ".join(sorted({k for v, k in KINDS if v == "v1"}))
    return model.Container, Finding(
        file, _value_line(root, ("kind",)), "kind",
        f'kind {kind} ({version}) is not supported: use Container or Network'
        f' ({model.API_VERSION}), or '
        f"the Kubernetes v1 kinds {kinds}")


# --- pydantic errors to findings -------------------------------------------------------


def _from_error(err: ErrorDetails, root: yaml.Node, file: str,
                top: type[pydantic.BaseModel] = model.Container) -> Finding:
    """One pydantic error as a finding, on the line of its node (see the module doc)."""
    kind = err["type"]
    path, owner, candidates = _walk_model(err["loc"], top)
    line = _value_line(root, path)
    if kind == "missing":
        line, message = _value_line(root, path[:-1]), "required field missing"
    elif kind == "extra_forbidden":
        names = [f.alias or name for name, f in owner.model_fields.items()] if owner else []
        best = _closest(path[-1], names) if isinstance(path[-1], str) else None
        line, message = _key_line(root, path), "unknown field"
        if path[-1] in getattr(owner, "UNSUPPORTED", ()):
            message = (f"not supported by reconciler (a Kubernetes {_kube_type(owner)} field"
                       " it cannot honour; see docs/pods.md)")
        elif best:
            message += f'; did you mean "{best}"?'
    elif kind in ("union_tag_not_found", "union_tag_invalid"):
        field = str(err.get("ctx", {}).get("discriminator", "type")).strip("'")
        tags = sorted({t for m in candidates for t in _literal_values(m, field)})
        expected = ", ".join(f'"{t}"' for t in tags)
        if kind == "union_tag_not_found":
            message = f"required field missing (one of {expected})"
        else:
            value = err["input"]
            tag = value.get(field) if isinstance(value, dict) else None
            message = f"must be one of {expected}; got {_describe(tag)}"
        path = (*path, field)
        line = _value_line(root, path)
    else:
        message = _message(err, root, path)
    return Finding(file, line, _format_path(path), message)


_EXPECTED = {
    "model_type": "a mapping", "model_attributes_type": "a mapping", "dict_type": "a mapping",
    "list_type": "a list", "string_type": "a string", "int_type": "an integer",
    "int_from_float": "an integer", "float_type": "a number", "bool_type": "true or false",
}


def _message(err: ErrorDetails, root: yaml.Node, path: Sequence[PathElem]) -> str:
    kind, msg, value = err["type"], err["msg"], err["input"]
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if not path and kind == "model_type":
        return (
            "a manifest document must be a mapping of apiVersion, kind, metadata and spec;"
            f" got {_describe(value)}"
        )
    if kind in _EXPECTED:
        message = f"must be {_EXPECTED[kind]}; got {_describe(value)}"
        node = _locate(root, path)[0]
        if kind == "string_type" and isinstance(node, yaml.ScalarNode) and node.value:
            message += f" (quote it: {json.dumps(node.value)})"
        return message
    if msg.startswith("Input should be "):  # enum, literal, ge, le, ...
        return f"must be {msg.removeprefix('Input should be ')}; got {_describe(value)}"
    return msg


def _describe(value: object) -> str:
    """A value as a YAML reader would name it: ``string "yes"``, ``integer 8080``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean " + ("true" if value else "false")
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        text = json.dumps(value if len(value) <= 60 else value[:57] + "...")
        return f"string {text}"
    if isinstance(value, datetime.date):
        return f"timestamp {value.isoformat()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple | set):
        return "a list"
    if isinstance(value, bytes):
        return "binary data"
    return type(value).__name__


def _closest(name: str, names: Sequence[str]) -> str | None:
    """The valid field ``name`` most likely meant: same letters first, then difflib."""
    def squash(text: str) -> str:
        return text.replace("_", "").replace("-", "").lower()

    for candidate in names:
        if squash(candidate) == squash(name):
            return candidate
    lowered = {candidate.lower(): candidate for candidate in names}
    best = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[best[0]] if best else None


# --- following a loc through the models and the YAML nodes -----------------------------


def _alternatives(tp: Any) -> list[Any]:
    """The types a value of ``tp`` may have: Annotated and Optional unwrapped."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _alternatives(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return [t for arg in args for t in _alternatives(arg)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def _literal_values(tp: Any, field: str) -> list[str]:
    info = tp.model_fields.get(field) if _is_model(tp) else None
    if info is None or typing.get_origin(info.annotation) is not typing.Literal:
        return []
    return [str(v) for v in typing.get_args(info.annotation)]


def _kube_type(owner: type[pydantic.BaseModel] | None) -> str:
    name = owner.__name__ if owner is not None else "object"
    return name.removeprefix("Kube")


def _walk_model(
    loc: Sequence[PathElem], top: type[pydantic.BaseModel] = model.Container,
) -> tuple[tuple[PathElem, ...], type[pydantic.BaseModel] | None, list[Any]]:
    """A pydantic loc as the user sees it, the model holding its last element, and the
    types found at its end.

    pydantic puts the tag of a tagged union into the loc (``mounts, 0, 'bind', source``);
    it is dropped here: the user wrote ``mounts[0].source``.
    """
    candidates: list[Any] = [top]
    path: list[PathElem] = []
    owner: type[pydantic.BaseModel] | None = None
    for elem in loc:
        if elem == "[key]":
            continue
        models = [c for c in candidates if _is_model(c)]
        if isinstance(elem, str) and len(models) > 1:
            tagged = [
                m for m in models if any(elem in _literal_values(m, f) for f in m.model_fields)
            ]
            if tagged:
                candidates = tagged
                continue
        owner = models[0] if len(models) == 1 else None
        following: list[Any] = []
        for tp in candidates:
            origin, args = typing.get_origin(tp), typing.get_args(tp)
            if _is_model(tp):
                fields = {f.alias or n: f for n, f in tp.model_fields.items()}
                if elem in fields:
                    following += _alternatives(fields[str(elem)].annotation)
            elif origin is list and isinstance(elem, int):
                following += _alternatives(args[0])
            elif origin is dict and isinstance(elem, str):
                following += _alternatives(args[1])
        candidates = following
        path.append(elem)
    return tuple(path), owner, candidates


def _locate(
    root: yaml.Node, path: Sequence[PathElem]
) -> tuple[yaml.Node, int | None]:
    """The node at ``path`` (or the deepest one found) and the line of its key, if any.

    Runs after construction, so merged keys (``<<: *base``) are in place, pointing at the
    lines where they were written; the last of equal keys wins, as in the data.
    """
    node, key_line = root, None
    for elem in path:
        if isinstance(node, yaml.MappingNode):
            pairs = [(k, v) for k, v in node.value if k.tag == _STR and k.value == elem]
            if not pairs:
                break
            key, node = pairs[-1]
            key_line = _line(key.start_mark)
        elif isinstance(node, yaml.SequenceNode) and isinstance(elem, int):
            if not 0 <= elem < len(node.value):
                break
            node, key_line = node.value[elem], None
        else:
            break
    return node, key_line


def _value_line(root: yaml.Node, path: Sequence[PathElem]) -> int | None:
    """The line to report a problem with the value at ``path``: the key's line for a
    collection (``resources:``), else the value's own."""
    node, key_line = _locate(root, path)
    if key_line is not None and isinstance(node, yaml.CollectionNode):
        return key_line
    return _line(node.start_mark)


def _key_line(root: yaml.Node, path: Sequence[PathElem]) -> int | None:
    node, key_line = _locate(root, path)
    return key_line if key_line is not None else _line(node.start_mark)


def _format_path(path: Sequence[PathElem]) -> str:
    """``spec.mounts[0].source``; keys that are not identifiers in brackets:
    ``metadata.labels["app.kubernetes.io/name"]``."""
    text = ""
    for elem in path:
        if isinstance(elem, int):
            text += f"[{elem}]"
        elif _PLAIN_KEY.fullmatch(elem):
            text += f".{elem}" if text else elem
        else:
            text += f"[{json.dumps(elem)}]"
    return text
