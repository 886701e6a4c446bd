"""kubectl's JSONPath templates, for ``get -o jsonpath=TEMPLATE``: the common subset.

Where it sits: the CLI layer, pure (a template's text in, a ``Template`` out; a template
and a JSON document in, text out). ``cli/daemon.py`` imports it only for ``-o jsonpath``,
so ``get`` starts no slower; tests/ops/test_ops_cli_output.py holds it to tables of cases.

    "{range .items[*]}{.name}{'\\t'}{.phase}{'\\n'}{end}" ─▶ parse() ─▶ Template
    Template, {"kind": "List", "items": [...]} ─▶ render() ─▶ "web\\tRunning\\n..."

The syntax is kubectl's (``k8s.io/client-go/util/jsonpath``): text, and expressions in
braces.

    {.a.b}  {['a.b']}  {.a\\.b}      a field; a missing one prints nothing (kubectl's
                                   default, --allow-missing-template-keys=true)
    {.items[0]}  {.items[-1]}      an element; out of range, an error (as in kubectl)
    {.items[1:3]}  {.items[::2]}   a slice, clamped to the list (kubectl refuses one that
                                   reaches past the end)
    {.items[0,2]}  {['a','b']}     several
    {.items[*]}  {.labels.*}       every element, every value
    {..name}                       every ``name``, at any depth
    {.items[?(@.phase=="Running")]}  a filter: == != < > <= >= between a path and a
    {.items[?(@.pid)]}               quoted string, a number, true or false; or the
                                     field is there
    {range .items[*]}...{end}      the body once per result, the result being ``@``
    {"\\t"}  {'\\n'}                 quoted text, with Go's escapes
    {@}  {$}  {.}                  the object itself

Results print as kubectl prints them: a string as it is, a number or a boolean as in
JSON, an object or a list as compact JSON (keys sorted), null as nothing; the results of
one expression are separated by a space. Values of different types compare unequal, and
never less or greater (kubectl stops with an error).

A template that does not parse raises ``JSONPathError`` naming the 1-based position of the
fault; one that cannot be applied to the document (an index out of range, an index into
an object) raises ``EvalError``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias


class JSONPathError(ValueError):
    """A template that does not parse; the message names the position (1-based)."""


class EvalError(ValueError):
    """A template that does not apply to the document (kubectl: "error executing")."""


# -- a template, as frozen values ------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    name: str


@dataclass(frozen=True)
class Wildcard:
    pass


@dataclass(frozen=True)
class Recursive:
    pass


@dataclass(frozen=True)
class Index:
    index: int


@dataclass(frozen=True)
class Slice:
    start: int | None
    stop: int | None
    step: int | None


@dataclass(frozen=True)
class Union:
    choices: tuple[Field | Index | Slice, ...]


@dataclass(frozen=True)
class Literal:
    value: str | int | float | bool


@dataclass(frozen=True)
class Filter:
    left: Path | Literal
    op: str | None  # None: the left path finds something
    right: Path | Literal | None


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Expr:
    path: Path


@dataclass(frozen=True)
class Range:
    path: Path
    body: Template


Step: TypeAlias = "Field | Wildcard | Recursive | Index | Slice | Union | Filter"
Path: TypeAlias = "tuple[Step, ...]"
Node: TypeAlias = "Text | Expr | Range"
Template: TypeAlias = "tuple[Node, ...]"

_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")  # the two-character ones first
_ENDS_NAME = frozenset(" \t\r\n.,[]$@{}()=!<>")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a",
            "b": "\b", "f": "\f", "v": "\v"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_CLOSING = {"{": "}", "[": "]", "(": ")"}
_HEX = frozenset("0123456789abcdefABCDEF")
_OCTAL = frozenset("01234567")


# -- parsing -----------------------------------------------------------------------------------


def parse(text: str) -> Template:
    """``text`` as a ``Template``; raises ``JSONPathError`` with the position of a fault."""
    return _Parser(text).nodes(in_range=None)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.opened: list[tuple[str, int]] = []  # the brackets open here, and where

    # a few looks at the text

    def peek(self, ahead: int = 0) -> str:
        at = self.i + ahead
        return self.text[at] if at < len(self.text) else ""

    def skip_spaces(self) -> None:
        while self.peek() in (" ", "\t"):
            self.i += 1

    def error(self, message: str, *, at: int | None = None) -> JSONPathError:
        """A fault at ``at`` (here by default); at the end of the text, whatever is still
        open is the fault, where it was opened."""
        if at is None and self.i >= len(self.text) and self.opened:
            bracket, at = self.opened[-1]
            message = f"unclosed {bracket!r}"
        return JSONPathError(f"{message} at position {(self.i if at is None else at) + 1}")

    def open(self, bracket: str) -> None:
        self.expect(bracket)
        self.opened.append((bracket, self.i - len(bracket)))

    def expect(self, wanted: str) -> None:
        if not self.text.startswith(wanted, self.i):
            raise self.error(f"expected {wanted!r}, found {self.peek()!r}")
        self.i += len(wanted)
        if self.opened and wanted == _CLOSING[self.opened[-1][0]]:
            self.opened.pop()

    def word(self, word: str) -> bool:
        """Whether the action goes on with the keyword ``word`` (taken if so)."""
        after = self.peek(len(word))
        if self.text.startswith(word, self.i) and (after in ("", "}") or after.isspace()):
            self.i += len(word)
            return True
        return False

    # the template

    def nodes(self, *, in_range: int | None) -> Template:
        """Text and actions up to the end, or to the ``{end}`` of the ``{range}`` opened
        at ``in_range`` (a range left open runs to the end of the template, as in kubectl)."""
        out: list[Node] = []
        while self.i < len(self.text):
            if self.peek() != "{":
                end = self.text.find("{", self.i)
                end = len(self.text) if end < 0 else end
                out.append(Text(self.text[self.i:end]))
                self.i = end
                continue
            start = self.i
            self.open("{")
            self.skip_spaces()
            if self.word("end"):
                self.close()
                if in_range is None:
                    raise self.error("{end} without a {range}", at=start)
                return tuple(out)
            if self.word("range"):
                self.skip_spaces()
                path = self.path(required=True)
                self.close()
                out.append(Range(path, self.nodes(in_range=start)))
            elif self.peek() in ("'", '"'):
                out.append(Text(self.quoted()))
                self.close()
            else:
                out.append(Expr(self.path(required=True)))
                self.close()
        return tuple(out)

    def close(self) -> None:
        self.skip_spaces()
        self.expect("}")

    # paths

    def path(self, *, required: bool = False) -> Path:
        """``@``/``$``, then fields, ``..``, ``*`` and brackets, kubectl's way."""
        begin = self.i
        marked = self.peek() in ("@", "$")
        if marked:
            self.i += 1
        steps: list[Step] = []
        while True:
            if self.text.startswith("..", self.i):
                self.i += 2
                steps.append(Recursive())
                if self.peek() not in ("[", "*"):
                    name = self.name()
                    if not name:
                        raise self.error("expected a field name after '..'")
                    steps.append(Field(name))
            elif self.peek() == ".":
                self.i += 1
                marked = True
                if self.peek() == "*":  # `.*`: every value
                    self.i += 1
                    steps.append(Wildcard())
                    continue
                name = self.name()
                if name:  # `{.}`: the object itself
                    steps.append(Field(name))
            elif self.peek() == "*":
                self.i += 1
                steps.append(Wildcard())
            elif self.peek() == "[":
                steps.append(self.bracket())
            else:
                break
        if required and not steps and not marked and self.i < len(self.text):
            found = self.peek()
            if found.isalpha():
                word = self.name()
                raise self.error(f"unknown word {word!r} (a field is .{word})", at=begin)
            raise self.error(f"expected an expression such as .name, found {found!r}",
                             at=begin)
        return tuple(steps)

    def name(self) -> str:
        """A field name: up to a terminator; a backslash takes the next character as it
        is (``.labels.app\\.kubernetes\\.io/name``)."""
        chars: list[str] = []
        while self.i < len(self.text) and self.peek() not in _ENDS_NAME:
            if self.peek() == "\\" and self.i + 1 < len(self.text):
                self.i += 1
            chars.append(self.peek())
            self.i += 1
        return "".join(chars)

    def bracket(self) -> Step:
        self.open("[")
        self.skip_spaces()
        step: Step
        if self.peek() == "*":
            self.i += 1
            step = Wildcard()
        elif self.peek() == "?":
            self.i += 1
            self.open("(")
            step = self.filter()
            self.skip_spaces()
            self.expect(")")
        elif self.peek() in ("'", '"'):
            names = [self.quoted()]
            while self.comma():
                if self.peek() not in ("'", '"'):
                    raise self.error("expected a quoted field name")
                names.append(self.quoted())
            step = Field(names[0]) if len(names) == 1 else Union(
                tuple(Field(n) for n in names))
        else:
            subscripts = [self.subscript()]
            while self.comma():
                subscripts.append(self.subscript())
            step = subscripts[0] if len(subscripts) == 1 else Union(tuple(subscripts))
        self.skip_spaces()
        self.expect("]")
        return step

    def comma(self) -> bool:
        self.skip_spaces()
        if self.peek() != ",":
            return False
        self.i += 1
        self.skip_spaces()
        return True

    def subscript(self) -> Index | Slice:
        """``n``, or a slice ``start:stop:step`` with any part left out."""
        start = self.integer()
        if self.peek() != ":":
            if start is None:
                raise self.error("expected an index, a slice, '*', a quoted name or '?('")
            return Index(start)
        self.i += 1
        stop = self.integer()
        step = None
        if self.peek() == ":":
            self.i += 1
            at = self.i
            step = self.integer()
            if step is not None and step <= 0:
                raise self.error("a slice's step must be > 0", at=at)
        return Slice(start, stop, step)

    def integer(self) -> int | None:
        self.skip_spaces()
        begin = self.i
        if self.peek() in ("-", "+"):
            self.i += 1
        while self.peek().isdigit():
            self.i += 1
        digits = self.text[begin:self.i]
        if digits in ("-", "+"):
            raise self.error("expected digits", at=self.i)
        self.skip_spaces()
        return int(digits) if digits else None

    def filter(self) -> Filter:
        """``@.a == 'x'``, ``@.n > 2``, or ``@.a`` alone (the field is there)."""
        self.skip_spaces()
        at = self.i
        left = self.operand()
        self.skip_spaces()
        op = next((o for o in _OPERATORS if self.text.startswith(o, self.i)), None)
        if op is None:
            if isinstance(left, Literal):
                raise self.error("a filter needs a path, or a comparison", at=at)
            return Filter(left, None, None)
        self.i += len(op)
        self.skip_spaces()
        return Filter(left, op, self.operand())

    def operand(self) -> Path | Literal:
        ch = self.peek()
        if ch in ("@", "$", "."):
            return self.path()
        if ch in ("'", '"'):
            return Literal(self.quoted())
        if ch.isdigit() or (ch in ("-", "+") and self.peek(1)[:1].isdigit()):
            return Literal(self.number())
        for word, value in (("true", True), ("false", False)):
            if self.text.startswith(word, self.i) and self.peek(len(word)) in _ENDS_NAME | {""}:
                self.i += len(word)
                return Literal(value)
        raise self.error("expected @.field, a quoted string, a number, true or false" +
                         (f", found {ch!r}" if ch else ""))

    def number(self) -> int | float:
        begin = self.i
        if self.peek() in ("-", "+"):
            self.i += 1
        while self.peek().isdigit() or self.peek() in (".", "e", "E") or (
                self.peek() in ("-", "+") and self.text[self.i - 1] in "eE"):
            self.i += 1
        text = self.text[begin:self.i]
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            raise self.error(f"not a number: {text!r}", at=begin) from None

    def quoted(self) -> str:
        """A string in ``'`` or ``"``, with Go's escapes (``\\t``, ``\\n``, ``\\u00e9``)."""
        quote, start = self.peek(), self.i
        self.i += 1
        chars: list[str] = []
        while True:
            ch = self.peek()
            if ch in ("", "\n"):
                raise self.error("unclosed quote", at=start)
            self.i += 1
            if ch == quote:
                return "".join(chars)
            if ch != "\\":
                chars.append(ch)
                continue
            chars.append(self.escape())

    def escape(self) -> str:
        """The character a backslash (just read) and what follows stand for."""
        at = self.i - 1
        ch = self.peek()
        if not ch:
            raise self.error("unfinished escape", at=at)
        self.i += 1
        if ch in _ESCAPES:
            return _ESCAPES[ch]
        if ch in _HEX_ESCAPES:
            size, base, begin = _HEX_ESCAPES[ch], 16, self.i
        elif ch in _OCTAL:  # \ooo: three octal digits
            size, base, begin = 3, 8, self.i - 1
        else:
            raise self.error(f"unknown escape \\{ch}", at=at)
        digits = self.text[begin:begin + size]
        allowed = _OCTAL if base == 8 else _HEX
        try:
            if len(digits) != size or not set(digits) <= allowed:
                raise ValueError(digits)
            value = chr(int(digits, base))
        except ValueError:
            what = "octal" if base == 8 else "hex"
            raise self.error(f"\\{ch} takes {size} {what} digits", at=at) from None
        self.i = begin + size
        return value


# -- applying a template -----------------------------------------------------------------------


def render(template: Template, document: Any) -> str:
    """The text ``template`` makes of ``document`` (parsed JSON)."""
    out: list[str] = []
    _render(template, document, out)
    return "".join(out)


def _render(template: Template, current: Any, out: list[str]) -> None:
    for node in template:
        if isinstance(node, Text):
            out.append(node.text)
        elif isinstance(node, Expr):
            out.append(" ".join(_text(v) for v in find(node.path, current)))
        else:
            for item in find(node.path, current):
                _render(node.body, item, out)


def find(path: Path, current: Any) -> list[Any]:
    """Every value ``path`` reaches from ``current``, in order."""
    values = [current]
    for step in path:
        values = [found for v in values for found in _step(step, v)]
    return values


def _step(step: Step, value: Any) -> list[Any]:
    if isinstance(step, Field):
        return [value[step.name]] if isinstance(value, dict) and step.name in value else []
    if isinstance(step, Wildcard):
        return list(value.values() if isinstance(value, dict) else
                    value if isinstance(value, list) else [])
    if isinstance(step, Recursive):
        return list(_descend(value))
    if isinstance(step, Union):
        return [found for choice in step.choices for found in _step(choice, value)]
    if value is None:  # kubectl skips a null as it does a missing field
        return []
    if not isinstance(value, list):
        raise EvalError(f"{_kind(value)} is not a list: {_shown(step)} needs one")
    if isinstance(step, Index):
        at = step.index + len(value) if step.index < 0 else step.index
        if not 0 <= at < len(value):
            raise EvalError(f"index {step.index} out of range (length {len(value)})")
        return [value[at]]
    if isinstance(step, Slice):
        return value[step.start:step.stop:step.step]
    return [item for item in value if _keeps(step, item)]


def _descend(value: Any) -> Iterator[Any]:
    """``value`` and everything under it that holds more: what ``..`` looks in."""
    if isinstance(value, dict | list):
        yield value
        for child in value.values() if isinstance(value, dict) else value:
            yield from _descend(child)


def _keeps(f: Filter, item: Any) -> bool:
    lefts = _operand(f.left, item)
    if f.op is None or f.right is None:
        return bool(lefts)
    rights = _operand(f.right, item)
    if not lefts or not rights:
        return False
    if len(lefts) > 1 or len(rights) > 1:
        raise EvalError("a filter compares one value at a time, not a list of them")
    return _compare(lefts[0], f.op, rights[0])


def _operand(operand: Path | Literal, item: Any) -> list[Any]:
    return [operand.value] if isinstance(operand, Literal) else find(operand, item)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _compare(a: Any, op: str, b: Any) -> bool:
    comparable = (_number(a) and _number(b)) or type(a) is type(b)
    if op in ("==", "!="):
        return (comparable and a == b) is (op == "==")
    if not ((_number(a) and _number(b)) or (isinstance(a, str) and isinstance(b, str))):
        return False
    return bool({"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op])


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(v)


def _kind(v: Any) -> str:
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, str):
        return f"the string {v!r}"
    return f"the {'boolean' if isinstance(v, bool) else 'number'} {_text(v)}"


def _shown(step: Step) -> str:
    if isinstance(step, Index):
        return f"[{step.index}]"
    if isinstance(step, Slice):
        parts = ["" if p is None else str(p) for p in (step.start, step.stop, step.step)]
        return f"[{':'.join(parts if step.step is not None else parts[:2])}]"
    return "a filter"
