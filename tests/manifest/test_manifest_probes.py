"""Probes and dependsOn in the manifests: ``manifest.probes`` (the models both kinds share),
``kind: Container``'s own rules for them (``model.Spec``), ``model.Dependency``, the live
paths that keep them out of the spec hash, and what ``core.pods`` copies from a Pod's
containers onto its units (named ports resolved to numbers).

Pure: documents go through ``loader.load_bytes`` (findings with their paths) or
``desired.build``; nothing runs.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pydantic
import pytest
import yaml

from reconciler.core import changes, desired
from reconciler.manifest import kube, loader, model, probes

ROOTFS = "/nonexistent/rootfs"
EXEC: dict[str, Any] = {"exec": {"command": ["/bin/check"]}}


def container(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": "web"},
            "spec": {"rootfs": ROOTFS, "command": ["/bin/serve"], **spec}}


def findings(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, message) of each finding on ``doc`` as a file."""
    result = loader.load_bytes(yaml.safe_dump(doc).encode(), file="/m/web.yaml", base_dir="/m")
    return [(f.path, f.message) for f in result.findings]


def parse(doc: dict[str, Any]) -> model.Container:
    result = loader.load_bytes(yaml.safe_dump(doc).encode(), file="/m/web.yaml", base_dir="/m")
    assert result.ok, result.findings
    (loaded,) = result.documents
    return loaded.container


# -- manifest.probes: the shared models -------------------------------------------------------


def test_probe_defaults_are_kubernetes() -> None:
    p = probes.Probe.model_validate(EXEC)
    assert (p.initial_delay_seconds, p.period_seconds, p.timeout_seconds) == (0, 10, 1)
    assert (p.success_threshold, p.failure_threshold) == (1, 3)
    assert p.termination_grace_period_seconds is None
    assert p.port is None  # an exec probe has none
    got = probes.HTTPGetAction.model_validate({"port": 8080})
    assert (got.path, got.scheme, got.host, got.http_headers) == ("/", "HTTP", None, [])


@pytest.mark.parametrize(("handler", "port"), [
    ({"httpGet": {"port": 8080}}, 8080),
    ({"httpGet": {"port": "http"}}, "http"),
    ({"tcpSocket": {"port": 5432}}, 5432),
    ({"grpc": {"port": 9090}}, 9090),
])
def test_probe_port_is_its_handlers(handler: dict[str, Any], port: int | str) -> None:
    assert probes.Probe.model_validate(handler).port == port


BAD_PROBES: list[tuple[str, dict[str, Any], str, str]] = [
    ("no handler", {}, "spec.readinessProbe",
     "needs exactly one of exec, httpGet, tcpSocket, grpc; got none"),
    ("two handlers", {**EXEC, "tcpSocket": {"port": 1}}, "spec.readinessProbe",
     "got exec and tcpSocket"),
    ("empty command", {"exec": {"command": []}}, "spec.readinessProbe.exec.command",
     "must name a program"),
    ("empty program", {"exec": {"command": ["", "x"]}}, "spec.readinessProbe.exec.command",
     "must name a program"),
    ("port 0", {"tcpSocket": {"port": 0}}, "spec.readinessProbe.tcpSocket.port",
     "from 1 to 65535, got 0"),
    ("port 65536", {"httpGet": {"port": 65536}}, "spec.readinessProbe.httpGet.port",
     "from 1 to 65535, got 65536"),
    ("grpc port is a number", {"grpc": {"port": "grpc"}}, "spec.readinessProbe.grpc.port",
     "must be an integer"),
    ("header name", {"httpGet": {"port": 80, "httpHeaders": [{"name": "a b", "value": "x"}]}},
     "spec.readinessProbe.httpGet.httpHeaders[0].name", "is not an HTTP header name"),
    ("scheme", {"httpGet": {"port": 80, "scheme": "FTP"}}, "spec.readinessProbe.httpGet.scheme",
     "'HTTP' or 'HTTPS'"),
    ("periodSeconds 0", {**EXEC, "periodSeconds": 0}, "spec.readinessProbe.periodSeconds",
     "greater than or equal to 1"),
    ("timeoutSeconds 0", {**EXEC, "timeoutSeconds": 0}, "spec.readinessProbe.timeoutSeconds",
     "greater than or equal to 1"),
    ("failureThreshold 0", {**EXEC, "failureThreshold": 0},
     "spec.readinessProbe.failureThreshold", "greater than or equal to 1"),
    ("negative initial delay", {**EXEC, "initialDelaySeconds": -1},
     "spec.readinessProbe.initialDelaySeconds", "greater than or equal to 0"),
    ("httpGet.protocol is Kubernetes' but not ours", {"httpGet": {"port": 80, "protocol": "TCP"}},
     "spec.readinessProbe.httpGet.protocol", "not supported by reconciler"),
    ("grpc.mode likewise", {"grpc": {"port": 80, "mode": "x"}}, "spec.readinessProbe.grpc.mode",
     "not supported by reconciler"),
    ("unknown field", {**EXEC, "period": 5}, "spec.readinessProbe.period", "unknown field"),
]


@pytest.mark.parametrize(("probe", "path", "message"),
                         [pytest.param(p, at, m, id=i) for i, p, at, m in BAD_PROBES])
def test_bad_probes_are_findings_at_their_field(probe: dict[str, Any], path: str,
                                                message: str) -> None:
    (got,) = findings(container(readinessProbe=probe))
    assert got[0] == path
    assert message in got[1]


@pytest.mark.parametrize("name", ["http", "metrics-2", "a1", "x" * 15])
def test_port_names_kubernetes_allows(name: str) -> None:
    assert probes.TCPSocketAction.model_validate({"port": name}).port == name


@pytest.mark.parametrize("name", ["HTTP", "123", "-http", "http-", "my--port", "x" * 16,
                                  "a_b", ""])
def test_port_names_kubernetes_refuses(name: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="is not a port name"):
        probes.TCPSocketAction.model_validate({"port": name})


def test_one_of_names_the_aliases() -> None:
    p = probes.Probe.model_construct(exec=None, http_get=None, tcp_socket=None, grpc=None)
    with pytest.raises(ValueError, match="got none"):
        probes.one_of(p, ("exec", "http_get", "tcp_socket", "grpc"), "a probe")
    ok = probes.Probe.model_validate({"httpGet": {"port": 1}})
    assert probes.one_of(ok, ("exec", "http_get", "tcp_socket", "grpc"), "a probe") == "httpGet"


def test_kube_re_exports_the_same_models() -> None:
    assert kube.Probe is probes.Probe
    assert kube.HTTPGetAction is probes.HTTPGetAction
    assert kube.GRPCAction is probes.GRPCAction


# -- kind: Container's own rules ------------------------------------------------------------


def test_three_probes_on_a_container() -> None:
    c = parse(container(
        livenessProbe={"httpGet": {"port": 8080, "path": "/live",
                                   "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                       "terminationGracePeriodSeconds": 3},
        readinessProbe={"tcpSocket": {"port": 8080}, "successThreshold": 2},
        startupProbe={"grpc": {"port": 9090, "service": "web"}, "failureThreshold": 30}))
    sp = c.spec
    assert sp.liveness_probe is not None and sp.liveness_probe.http_get is not None
    assert sp.liveness_probe.http_get.http_headers[0].name == "X-Probe"
    assert sp.liveness_probe.termination_grace_period_seconds == 3
    assert sp.readiness_probe is not None and sp.readiness_probe.success_threshold == 2
    assert sp.startup_probe is not None and sp.startup_probe.grpc is not None
    assert sp.startup_probe.grpc.service == "web"


@pytest.mark.parametrize(("field", "probe", "message"), [
    ("livenessProbe", {"tcpSocket": {"port": "http"}},
     "livenessProbe: port 'http' must be a number (a Container has no named ports)"),
    ("readinessProbe", {"httpGet": {"port": "http"}},
     "readinessProbe: port 'http' must be a number"),
    ("livenessProbe", {**EXEC, "successThreshold": 2},
     "livenessProbe: successThreshold must be 1"),
    ("startupProbe", {**EXEC, "successThreshold": 3}, "startupProbe: successThreshold must be 1"),
    ("readinessProbe", {**EXEC, "terminationGracePeriodSeconds": 5},
     "readinessProbe: terminationGracePeriodSeconds is not allowed"),
])
def test_container_probe_rules(field: str, probe: dict[str, Any], message: str) -> None:
    (got,) = findings(container(**{field: probe}))
    assert got[0].startswith("spec")
    assert message in got[1]


@pytest.mark.parametrize(("field", "probe"), [
    ("readinessProbe", {**EXEC, "successThreshold": 3}),  # readiness alone may ask for more
    ("livenessProbe", {**EXEC, "terminationGracePeriodSeconds": 5}),
    ("startupProbe", {**EXEC, "terminationGracePeriodSeconds": 5}),
])
def test_container_probe_rules_allow(field: str, probe: dict[str, Any]) -> None:
    assert findings(container(**{field: probe})) == []


# -- dependsOn ------------------------------------------------------------------------------


def test_dependency_defaults() -> None:
    dep = model.Dependency.model_validate({"name": "db"})
    assert (dep.name, dep.condition, dep.restart) == ("db", "Started", False)


@pytest.mark.parametrize("name", ["db", "pod/cache", "pod/kube-system/dns", "a" * 63,
                                  "pod"])  # "pod" alone is a Container's name
def test_dependency_names(name: str) -> None:
    c = parse(container(dependsOn=[{"name": name, "condition": "Ready", "restart": True}]))
    assert [(d.name, d.condition, d.restart) for d in c.spec.depends_on] == [
        (name, "Ready", True)]


@pytest.mark.parametrize("name", ["a/b", "Web", "pod/", "pod/ns/", "pod//x", "db_1",
                                  "a" * 64, "pod/" + "a" * 64, "", "-db"])
def test_dependency_names_refused(name: str) -> None:
    (got,) = findings(container(dependsOn=[{"name": name}]))
    assert got[0] == "spec.dependsOn[0].name"
    assert "is not a Container's name, pod/NAME or pod/NAMESPACE/NAME" in got[1]


def test_dependency_name_with_too_many_parts_is_refused() -> None:
    (got,) = findings(container(dependsOn=[{"name": "pod/a/b/c"}]))
    assert got[0] == "spec.dependsOn[0].name"


@pytest.mark.parametrize(("dep", "path", "message"), [
    ({"name": "db", "condition": "Healthy"}, "spec.dependsOn[0].condition",
     "'Started', 'Ready' or 'Completed'"),
    ({"name": "db", "restart": "yes"}, "spec.dependsOn[0].restart", "true or false"),
    ({"condition": "Ready"}, "spec.dependsOn[0].name", "required field missing"),
    ({"name": "db", "when": "now"}, "spec.dependsOn[0].when", "unknown field"),
])
def test_dependency_fields_refused(dep: dict[str, Any], path: str, message: str) -> None:
    (got,) = findings(container(dependsOn=[dep]))
    assert got[0] == path
    assert message in got[1]


# -- live paths: probes and dependsOn change on the running container -------------------------


LIVE_FIELDS = [
    ("livenessProbe", EXEC),
    ("readinessProbe", {"tcpSocket": {"port": 80}}),
    ("startupProbe", {"httpGet": {"port": 80}}),
    ("dependsOn", [{"name": "db", "condition": "Ready"}]),
]


def test_live_paths_name_them() -> None:
    for field in ("livenessProbe", "readinessProbe", "startupProbe", "dependsOn"):
        assert f"/spec/{field}" in model.LIVE_PATHS
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in field)
        assert snake in model.LIVE_SPEC_FIELDS  # field names: what model_dump excludes


@pytest.mark.parametrize(("field", "value"), LIVE_FIELDS)
def test_a_change_to_them_is_classified_live(field: str, value: Any) -> None:
    before = parse(container())
    after = parse(container(**{field: value}))
    got = changes.classify(model.canonical_json(before),
                           json.loads(model.canonical_json(after)))
    assert got.recreate == ()
    assert [op["path"] for op in got.live] == [f"/spec/{field}"]
    assert changes.live_parts(got) == {field}


@pytest.mark.parametrize(("field", "value"), LIVE_FIELDS)
def test_they_leave_the_spec_hash_alone(field: str, value: Any) -> None:
    assert model.spec_hash(parse(container(**{field: value}))) == \
        model.spec_hash(parse(container()))


def test_single_word_live_fields_leave_the_hash_alone() -> None:
    """The control for the xfail above: the one-word live fields are excluded."""
    base = model.spec_hash(parse(container()))
    assert model.spec_hash(parse(container(resources={"memory": "64Mi"}))) == base
    published = [{"containerPort": 80, "hostPort": 8080}]
    assert model.spec_hash(parse(container(ports=published))) == base


# -- a Pod's container probes on its unit ---------------------------------------------------


POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
    "spec": {"containers": [{
        "name": "server", "image": "busybox:1.36",
        "ports": [{"name": "http", "containerPort": 8080}, {"name": "admin",
                                                            "containerPort": 9000}],
        "livenessProbe": {"tcpSocket": {"port": "admin"}, "periodSeconds": 5},
        "readinessProbe": {"httpGet": {"port": "http", "path": "/ready"},
                           "successThreshold": 2},
        "startupProbe": {"grpc": {"port": 9090}, "failureThreshold": 30},
    }, {"name": "plain", "image": "busybox:1.36"}]},
}


def build_pod(pod: dict[str, Any]) -> desired.DesiredState:
    result = loader.load_bytes(yaml.safe_dump(pod).encode(), file="/m/web.yaml", base_dir="/m")
    assert result.ok, result.findings
    snap = desired.SourceSnapshot("directory", True, None, {"/m/web.yaml": result})
    return desired.build(snap, None, pods_dir="/var/lib/r/pods")


def test_pod_probes_are_copied_with_named_ports_resolved() -> None:
    got = build_pod(POD)
    assert got.problems == ()
    sp = got.specs["default_web_server"].container.spec
    assert sp.liveness_probe is not None and sp.liveness_probe.tcp_socket is not None
    assert sp.liveness_probe.tcp_socket.port == 9000
    assert sp.liveness_probe.period_seconds == 5
    assert sp.readiness_probe is not None and sp.readiness_probe.http_get is not None
    assert (sp.readiness_probe.http_get.port, sp.readiness_probe.http_get.path) == (8080,
                                                                                     "/ready")
    assert sp.readiness_probe.success_threshold == 2
    assert sp.startup_probe is not None and sp.startup_probe.grpc is not None
    assert sp.startup_probe.grpc.port == 9090
    plain = got.specs["default_web_plain"].container.spec
    assert (plain.liveness_probe, plain.readiness_probe, plain.startup_probe) == (None,) * 3
    box = got.specs["default_web"].container.spec  # the sandbox probes nothing
    assert (box.liveness_probe, box.readiness_probe, box.startup_probe) == (None,) * 3


def test_pod_numeric_probe_ports_stay() -> None:
    pod = copy.deepcopy(POD)
    pod["spec"]["containers"][0]["livenessProbe"] = {"tcpSocket": {"port": 7000}}
    sp = build_pod(pod).specs["default_web_server"].container.spec
    assert sp.liveness_probe is not None and sp.liveness_probe.tcp_socket is not None
    assert sp.liveness_probe.tcp_socket.port == 7000


def test_pod_probe_naming_an_undeclared_port_is_a_finding() -> None:
    pod = copy.deepcopy(POD)
    pod["spec"]["containers"][0]["livenessProbe"] = {"tcpSocket": {"port": "nope"}}
    result = loader.load_bytes(yaml.safe_dump(pod).encode(), file="/m/web.yaml", base_dir="/m")
    assert not result.ok
    assert any("livenessProbe uses port 'nope'" in f.message for f in result.findings)
