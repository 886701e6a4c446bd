"""Kubernetes label selectors: parsed from text, matched against labels.

Where it sits: the manifest layer, pure (text in, a ``Selector`` out; labels in, a bool
out), so it is tested on a table of cases. Used by ``get -l`` (``cli/daemon.py``) and by
a fleet object's node selector (``sources/etcd.py``, ``cli/fleet.py``).

The syntax is kubectl's (``k8s.io/apimachinery/pkg/labels``), a comma meaning AND:

    app=web   app==web   tier!=db           equality; != also matches a missing key
    env in (prod,staging)   env notin (dev) a set; notin also matches a missing key
    app       !app                          the key is there / is not there

Keys are qualified names (an optional DNS-subdomain prefix and ``/``), values at most 63
characters of ``[A-Za-z0-9-_.]``, starting and ending alphanumeric, or empty. A selector
that does not parse raises ``SelectorError`` naming the 1-based position of the fault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_SPECIAL = " \t\n!=(),<>"  # what ends a key or a value, as the Kubernetes lexer has it
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")


class SelectorError(ValueError):
    """A selector that does not parse; the message names the position (1-based)."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = labels.get(self.key)
        if self.op == "exists":
            return have is not None
        if self.op == "!":
            return have is None
        if self.op in ("=", "in"):
            return have is not None and have in self.values
        return have is None or have not in self.values  # != and notin: Kubernetes' rule


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Every requirement holds (an empty selector matches everything)."""
        return all(r.matches(labels or {}) for r in self.requirements)


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "op" (= == != !), "(", ")", ",", "end"
    text: str
    pos: int  # 0-based offset into the selector


def _tokens(text: str) -> list[_Token]:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif text.startswith(("==", "!="), i):
            out.append(_Token("op", text[i:i + 2], i))
            i += 2
        elif ch in "=!":
            out.append(_Token("op", ch, i))
            i += 1
        elif ch in "(),":
            out.append(_Token(ch, ch, i))
            i += 1
        elif ch in "<>":  # Kubernetes' gt/lt are for node affinity, not label selectors
            raise SelectorError(f"unexpected {ch!r} at position {i + 1}")
        else:
            start = i
            while i < len(text) and text[i] not in _SPECIAL:
                i += 1
            out.append(_Token("word", text[start:i], start))
    out.append(_Token("end", "", len(text)))
    return out


def parse(text: str) -> Selector:
    """``text`` as a ``Selector``; raises ``SelectorError`` with the position of a fault."""
    if not text.strip():
        return Selector()
    parser = _Parser(_tokens(text))
    found = [parser.requirement()]
    while parser.peek().kind == ",":
        parser.take()
        found.append(parser.requirement())
    parser.expect("end", "',' or the end")
    return Selector(tuple(found))


class _Parser:
    """Recursive descent over the tokens; every fault names the token where it is."""

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._at = 0

    def peek(self) -> _Token:
        return self._tokens[self._at]

    def take(self) -> _Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def expect(self, kind: str, wanted: str) -> _Token:
        token = self.take()
        if token.kind != kind:
            raise _unexpected(token, wanted)
        return token

    def requirement(self) -> Requirement:
        if self.peek().kind == "op" and self.peek().text == "!":
            self.take()
            return Requirement(_key(self.expect("word", "a label key")), "!")
        key = _key(self.expect("word", "a label key"))
        token = self.peek()
        if token.kind in (",", "end"):
            return Requirement(key, "exists")
        if token.kind == "op" and token.text != "!":
            self.take()
            return Requirement(key, "!=" if token.text == "!=" else "=",
                               frozenset({self._value()}))
        if token.kind == "word" and token.text in ("in", "notin"):
            self.take()
            return Requirement(key, token.text, self._set())
        raise _unexpected(token, "'=', '==', '!=', 'in', 'notin', ',' or the end")

    def _value(self) -> str:
        token = self.peek()
        if token.kind in (",", "end"):
            return ""  # ``app=`` selects an empty value, as in Kubernetes
        return _value(self.expect("word", "a label value"))

    def _set(self) -> frozenset[str]:
        self.expect("(", "'('")
        values = {_value(self.expect("word", "a label value"))}
        while self.peek().kind == ",":
            self.take()
            values.add(_value(self.expect("word", "a label value")))
        self.expect(")", "',' or ')'")
        return frozenset(values)


def _unexpected(token: _Token, wanted: str) -> SelectorError:
    found = "the end" if token.kind == "end" else repr(token.text)
    return SelectorError(f"expected {wanted} at position {token.pos + 1}, found {found}")


def _key(token: _Token) -> str:
    prefix, slash, name = token.text.rpartition("/")
    bad = (len(name) > 63 or not _NAME.match(name) or
           (slash and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix))))
    if bad:
        raise SelectorError(f"invalid label key {token.text!r} at position {token.pos + 1}:"
                            " use [prefix/]name, a name of up to 63 of [A-Za-z0-9-_.],"
                            " starting and ending alphanumeric")
    return token.text


def _value(token: _Token) -> str:
    if len(token.text) > 63 or not _NAME.match(token.text):
        raise SelectorError(f"invalid label value {token.text!r} at position {token.pos + 1}:"
                            " up to 63 of [A-Za-z0-9-_.], starting and ending alphanumeric")
    return token.text
