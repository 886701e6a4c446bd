"""kubectl's JSONPath templates (``reconciler/cli/jsonpath.py``), on tables of cases: what
a template prints for a document like ``get``'s List, and where a bad one is faulted.
``get -o jsonpath`` itself is tried in test_ops_cli_select.py, on its hand-made state dir.
"""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.cli import jsonpath

DOC: dict[str, Any] = {"kind": "List", "items": [
    {"name": "web", "phase": "Running", "pid": 100, "restarts": 0, "ok": True, "cpu": 0.5,
     "labels": {"app": "web", "app.kubernetes.io/name": "site"},
     "pod": None, "lastExit": {"code": 0, "finishedAt": "2026-12-01T08:59:59.123Z"}},
    {"name": "db", "phase": "BackOff", "pid": None, "restarts": 3, "ok": False, "cpu": 2.0,
     "labels": {}, "pod": {"pod": "default/site", "role": "app"}, "lastExit": None},
]}

GOOD = [  # (template, what it prints for DOC)
    ("", ""),
    ("plain text", "plain text"),
    ("{.kind}", "List"),
    ("{@.kind} {$.kind}", "List List"),
    ("{.items[*].name}", "web db"),
    ("{.items[0].phase}", "Running"),
    ("{.items[-1].name}", "db"),
    ("{.items[1:].name}", "db"),
    ("{.items[:1].name}", "web"),
    ("{.items[::2].name}", "web"),
    ("{.items[0:10].name}", "web db"),  # clamped to the list
    ("{.items[0,1].restarts}", "0 3"),
    ("{.items[0]['name','phase']}", "web Running"),
    ("{.items[0]['name']}", "web"),
    ('{.items[0]["phase"]}', "Running"),
    ("{['kind']}", "List"),
    ("names: {.items[*].name}.", "names: web db."),
    ('{range .items[*]}{.name}{"\\t"}{.phase}{"\\n"}{end}', "web\tRunning\ndb\tBackOff\n"),
    ("{range .items[*]}[{.name}]{end} done", "[web][db] done"),
    ("{range .items[*]}{.name};", "web;db;"),  # an {end} left out: to the end, as kubectl
    ("{range .items[*]}{range .labels.*}{@},{end}{end}", "web,site,"),
    ("{range .items[?(@.lastExit.code)]}{.name}{end}", "web"),
    ("{.items[*].pid}", "100 "),  # null prints nothing, and keeps its place
    ("{.items[0].ok} {.items[1].ok}", "true false"),
    ("{.items[*].cpu}", "0.5 2"),
    ("{.items[0].labels}", '{"app":"web","app.kubernetes.io/name":"site"}'),
    ("{.items[1].labels}", "{}"),
    ("{.items[0].labels.app\\.kubernetes\\.io/name}", "site"),
    ("{.items[0].labels['app.kubernetes.io/name']}", "site"),
    ("{.items[0].labels.*}", "web site"),
    ("{.items[0].lastExit.finishedAt}", "2026-12-01T08:59:59.123Z"),
    ("{.items[*].lastExit.code}", "0"),  # db's lastExit is null: nothing under it
    ("{.items[*].missing}", ""),  # a missing field prints nothing (kubectl's default)
    ("{.items[5:].name}", ""),
    ("{..role}", "app"),
    ("{.items[?(@.phase=='Running')].name}", "web"),
    ('{.items[?(@.phase != "Running")].name}', "db"),
    ("{.items[?(@.restarts>1)].name}", "db"),
    ("{.items[?(@.restarts<=0)].name}", "web"),
    ("{.items[?(@.restarts >= 0)].name}", "web db"),
    ("{.items[?(@.cpu < 1)].name}", "web"),
    ("{.items[?(@.ok==true)].name}", "web"),
    ("{.items[?(@.ok==false)].name}", "db"),
    ("{.items[?(@.pid)].name}", "web db"),  # a null field is there
    ("{.items[?(@.pod.role)].name}", "db"),
    ("{.items[?(@.pod.role=='app')].labels}", "{}"),
    ("{.items[?(@.phase==3)].name}", ""),  # a string and a number are never equal
    ("{.items[?(@.phase>3)].name}", ""),  # ... nor ordered
    ("{.items[?(@.restarts==3.0)].name}", "db"),
    ("{.items[?(@.pid!=100)].name}", "db"),
    ("{'\\u00e9\\x41\\101\\''}", "éAA'"),
]


@pytest.mark.parametrize(("template", "expected"), GOOD)
def test_a_template_prints(template: str, expected: str) -> None:
    assert jsonpath.render(jsonpath.parse(template), DOC) == expected


def test_the_object_itself() -> None:
    for template in ("{.}", "{@}", "{$}"):
        printed = jsonpath.render(jsonpath.parse(template), {"b": 1, "a": [True, None]})
        assert printed == '{"a":[true,null],"b":1}'  # compact, keys sorted
    assert jsonpath.render(jsonpath.parse("{.}"), "text") == "text"


BAD = [  # (template, the position named in the error)
    ("{", 1),
    ("{.items", 1),
    ("a {.items[0].name", 3),
    ("{.items[", 8),
    ("{.items[0}", 10),
    ("{.items[x]}", 9),
    ("{.items[0:1:0]}", 13),
    ("{.items[1,'a']}", 11),
    ("{items}", 2),
    ("{}", 2),
    ("{ }", 3),
    ("{end}", 1),
    ("{range .items[*]}{end}{end}", 23),
    ("{range}", 7),
    ("{..}", 4),
    ("{.a b}", 5),
    ("{.a}}{", 6),
    ("{'abc}", 2),
    ("{'a\\qb'}", 4),
    ("{'\\u12'}", 3),
    ("{.items[?(@.x==)]}", 16),
    ("{.items[?(@.x=='a']}", 19),
    ("{.items[?('a')]}", 11),
    ("{.items[?(@.x)}", 15),
    ("{.items[-]}", 10),
]


@pytest.mark.parametrize(("template", "position"), BAD)
def test_a_bad_template_names_its_position(template: str, position: int) -> None:
    with pytest.raises(jsonpath.JSONPathError) as err:
        jsonpath.parse(template)
    assert str(err.value).endswith(f"at position {position}")


NOT_APPLICABLE = [  # (template, the error) for DOC
    ("{.items[2].name}", "index 2 out of range (length 2)"),
    ("{.items[-3].name}", "index -3 out of range (length 2)"),
    ("{.kind[0]}", "the string 'List' is not a list: [0] needs one"),
    ("{.items[0].labels[0]}", "an object is not a list: [0] needs one"),
    ("{.items[0].restarts[1:]}", "the number 0 is not a list: [1:] needs one"),
    ("{.items[0][?(@.x)]}", "an object is not a list: a filter needs one"),
    ("{.items[?(@.labels.*=='web')].name}",
     "a filter compares one value at a time, not a list of them"),
]


@pytest.mark.parametrize(("template", "message"), NOT_APPLICABLE)
def test_a_template_that_does_not_apply_is_an_error(template: str, message: str) -> None:
    with pytest.raises(jsonpath.EvalError) as err:
        jsonpath.render(jsonpath.parse(template), DOC)
    assert str(err.value) == message


def test_a_parsed_template_is_a_frozen_value() -> None:
    parsed = jsonpath.parse("{range .items[?(@.a=='x')]}{.b[0]}{end}")
    assert parsed == jsonpath.parse("{range .items[?(@.a=='x')]}{.b[0]}{end}")
    assert hash(parsed) == hash(jsonpath.parse("{range .items[?(@.a=='x')]}{.b[0]}{end}"))
    (whole,) = parsed
    assert isinstance(whole, jsonpath.Range)
    assert whole.body == (jsonpath.Expr((jsonpath.Field("b"), jsonpath.Index(0))),)
