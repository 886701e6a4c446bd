"""The Kubernetes v1 models (``manifest.kube``): defaults, aliases, Kubernetes' own
validation rules, the fields we refuse, and the fixtures in ``kube/`` proven against the
Kubernetes OpenAPI schema by ``kubernetes-validate``."""

from __future__ import annotations

import copy
import functools
import inspect
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pydantic
import pytest
import yaml
from pydantic_core import ErrorDetails

from reconciler.manifest import kube, loader, model

FIXTURES = Path(__file__).parent / "kube"
KINDS: dict[str, type[pydantic.BaseModel]] = {
    "Pod": kube.Pod, "ConfigMap": kube.ConfigMap, "Secret": kube.Secret}

BASE = """
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    image: busybox:1.36
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - {name: data, emptyDir: {}}
"""


def load(text: str) -> Any:
    return yaml.safe_load(text)


def validate(data: Any) -> Any:
    return KINDS[data["kind"]].model_validate(data, context={"base_dir": "/tmp"})


def pod_of(doc: Any) -> kube.Pod:
    result = validate(doc)
    assert isinstance(result, kube.Pod)
    return result


def pod(text: str = BASE) -> kube.Pod:
    return pod_of(load(text))


def put(doc: Any, path: str, value: Any) -> Any:
    """``doc`` with ``value`` at a dotted path (``spec.containers.0.ports``); missing
    mappings are made, and a list index one past the end appends."""
    node = doc
    parts = path.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            if int(part) == len(node):
                node.append({})
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    if isinstance(node, list):
        node.insert(int(parts[-1]), value)
    else:
        node[parts[-1]] = value
    return doc


def errors(data: Any) -> list[ErrorDetails]:
    with pytest.raises(pydantic.ValidationError) as info:
        validate(data)
    return info.value.errors(include_url=False)


def problems(data: Any) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors(data))


# --- defaults -------------------------------------------------------------------------


@pytest.mark.parametrize(("image", "policy"), [
    ("busybox", "Always"),
    ("busybox:latest", "Always"),
    ("busybox:1.36", "IfNotPresent"),
    ("localhost:5000/busybox", "Always"),
    ("localhost:5000/busybox:1.36", "IfNotPresent"),
    ("busybox@sha256:" + "a" * 64, "IfNotPresent"),
    ("busybox:latest@sha256:" + "a" * 64, "Always"),
])
def test_pull_policy_default(image: str, policy: str) -> None:
    doc = put(load(BASE), "spec.containers.0.image", image)
    container = pod_of(doc).spec.containers[0]
    assert container.image_pull_policy is None
    assert container.pull_policy is model.PullPolicy(policy)


def test_pull_policy_given_wins() -> None:
    doc = put(load(BASE), "spec.containers.0.imagePullPolicy", "Never")
    assert pod_of(doc).spec.containers[0].pull_policy is model.PullPolicy.NEVER


def test_defaults() -> None:
    p = pod()
    spec, c = p.spec, p.spec.containers[0]
    assert (p.name, p.key, p.metadata.namespace) == ("web", "default/web", "default")
    assert spec.restart_policy is model.RestartPolicy.ALWAYS
    assert spec.termination_grace_period_seconds == 30
    assert (spec.dns_policy, spec.host_network, spec.host_pid, spec.host_ipc) == (
        "ClusterFirst", False, False, False)
    assert spec.share_process_namespace is False
    assert spec.init_containers == [] and spec.security_context == kube.PodSecurityContext()
    assert (c.termination_message_path, c.termination_message_policy) == (
        "/dev/termination-log", "File")
    assert (c.stdin, c.tty, c.restart_policy, c.command, c.args) == (
        False, False, None, None, None)
    assert c.volume_mounts[0].read_only is False
    assert spec.volumes[0].empty_dir == kube.EmptyDirVolumeSource()
    assert (spec.volumes[0].empty_dir.medium, spec.volumes[0].empty_dir.size_limit) == ("", None)


def test_probe_and_volume_defaults() -> None:
    doc = load(BASE)
    put(doc, "spec.containers.0.livenessProbe", {"httpGet": {"port": 80}})
    put(doc, "spec.volumes.1", {"name": "cm", "configMap": {"name": "conf"}})
    p = pod_of(doc)
    probe = p.spec.containers[0].liveness_probe
    assert probe is not None and probe.http_get is not None
    assert (probe.http_get.path, probe.http_get.scheme) == ("/", "HTTP")
    assert (probe.initial_delay_seconds, probe.period_seconds, probe.timeout_seconds,
            probe.success_threshold, probe.failure_threshold) == (0, 10, 1, 1, 3)
    cm = p.spec.volumes[1].config_map
    assert cm is not None and (cm.default_mode, cm.optional, cm.items) == (0o644, False, [])


def test_configmap_name_may_have_dots_a_pod_name_not() -> None:
    cm = validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a.b"}})
    assert cm.key == "default/a.b"
    text = problems(put(load(BASE), "metadata.name", "web.v1"))
    assert "reconciler needs pod names without dots" in text


# --- aliases --------------------------------------------------------------------------

RICH = """
apiVersion: v1
kind: Pod
metadata:
  name: rich
  namespace: prod
  labels: {app.kubernetes.io/name: rich, tier: ""}
  annotations: {example.com/note: "anything: goes, even spaces"}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 5
  hostNetwork: true
  hostIPC: true
  shareProcessNamespace: true
  hostname: rich-host
  subdomain: internal
  dnsPolicy: ClusterFirstWithHostNet
  runtimeClassName: runc.v2
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    runAsNonRoot: true
    fsGroup: 2000
    supplementalGroups: [4000, 5000]
    sysctls: [{name: kernel.domainname, value: example.com}]
    seccompProfile: {type: RuntimeDefault}
  initContainers:
  - name: shipper
    image: busybox:1.36
    restartPolicy: Always
    readinessProbe: {exec: {command: ["true"]}}
  containers:
  - name: app
    image: registry.example.com/team/app:2.1
    imagePullPolicy: IfNotPresent
    command: [/bin/app]
    args: [--serve, $(PORT)]
    env:
    - {name: PORT, value: "8443"}
    - name: LEVEL
      valueFrom: {configMapKeyRef: {name: conf, key: level, optional: true}}
    - name: TOKEN
      valueFrom: {secretKeyRef: {name: creds, key: token}}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    envFrom:
    - {prefix: CONF_, configMapRef: {name: conf, optional: true}}
    - {secretRef: {name: creds}}
    workingDir: /srv
    ports:
    - {containerPort: 8443, hostPort: 8443, hostIP: 127.0.0.1, name: https}
    - {containerPort: 5353, protocol: UDP}
    resources:
      limits: {cpu: "2", memory: 1Gi, ephemeral-storage: 2Gi, hugepages-2Mi: 64Mi}
      requests: {cpu: 500m, memory: 512Mi}
    volumeMounts:
    - {name: cache, mountPath: /cache}
    - {name: logs, mountPath: /logs, readOnly: true}
    - {name: conf, mountPath: /etc/app/app.conf, subPath: app.conf}
    - {name: creds, mountPath: /creds}
    - {name: all, mountPath: /all}
    - {name: info, mountPath: /info}
    securityContext:
      runAsUser: 1001
      runAsGroup: 1001
      runAsNonRoot: true
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: true
      privileged: false
      capabilities: {add: [NET_ADMIN], drop: [ALL]}
      seccompProfile: {type: Localhost, localhostProfile: profiles/app.json}
    stdin: true
    tty: true
    lifecycle:
      preStop: {exec: {command: [/bin/app, drain]}}
    terminationMessagePath: /tmp/termination
    terminationMessagePolicy: FallbackToLogsOnError
    livenessProbe:
      httpGet:
        path: /healthz
        port: https
        host: 127.0.0.1
        scheme: HTTPS
        httpHeaders: [{name: X-Probe, value: live}]
      initialDelaySeconds: 3
      periodSeconds: 7
      timeoutSeconds: 2
      failureThreshold: 5
      terminationGracePeriodSeconds: 9
    readinessProbe:
      tcpSocket: {port: 8443, host: 127.0.0.1}
      successThreshold: 2
    startupProbe:
      grpc: {port: 9090, service: health}
  volumes:
  - name: cache
    emptyDir: {medium: Memory, sizeLimit: 1Gi}
  - name: logs
    hostPath: {path: /var/log/app, type: DirectoryOrCreate}
  - name: conf
    configMap:
      name: conf
      items: [{key: app.conf, path: app.conf, mode: 0600}]
      defaultMode: 0640
      optional: true
  - name: creds
    secret: {secretName: creds, items: [{key: token, path: token}], defaultMode: 0400,
             optional: true}
  - name: all
    projected:
      defaultMode: 0440
      sources:
      - configMap: {name: conf, items: [{key: a, path: conf/a}], optional: true}
      - secret: {name: creds, items: [{key: token, path: creds/token}], optional: true}
      - downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}
  - name: info
    downwardAPI:
      defaultMode: 0444
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}, mode: 0400}
      - {path: zone, fieldRef: {fieldPath: "metadata.labels['topology.kubernetes.io/zone']"}}
"""


def test_rich_pod_round_trips() -> None:
    data = load(RICH)
    dumped = pod(RICH).model_dump(by_alias=True, exclude_defaults=True, mode="json")
    assert dumped == data


def test_small_round_trips() -> None:
    docs = [
        put(put(load(BASE), "spec.hostPID", True), "spec.containers.0.env",
            [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace",
                                                      "apiVersion": "v1"}}}]),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
         "data": {"a": "1"}, "binaryData": {"b": "AAE="}, "immutable": False},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
         "data": {"a": "MQ=="}, "stringData": {"b": "2"}, "type": "kubernetes.io/basic-auth"},
    ]
    for doc in docs:
        assert validate(doc).model_dump(by_alias=True, mode="json", exclude_unset=True) == doc


ALIASES = [
    (kube.PodSpec, "host_pid", "hostPID"), (kube.PodSpec, "host_ipc", "hostIPC"),
    (kube.Volume, "downward_api", "downwardAPI"),
    (kube.VolumeProjection, "downward_api", "downwardAPI"),
    (kube.ContainerPort, "host_ip", "hostIP"), (kube.Probe, "grpc", "grpc"),
    (kube.Probe, "http_get", "httpGet"), (kube.Probe, "tcp_socket", "tcpSocket"),
    (kube.VolumeMount, "read_only", "readOnly"), (kube.VolumeMount, "sub_path", "subPath"),
    (kube.VolumeMount, "mount_path", "mountPath"),
    (kube.SecretVolumeSource, "default_mode", "defaultMode"),
    (kube.SecretVolumeSource, "secret_name", "secretName"),
    (kube.EnvVarSource, "config_map_key_ref", "configMapKeyRef"),
    (kube.EnvVarSource, "secret_key_ref", "secretKeyRef"),
    (kube.EnvVarSource, "field_ref", "fieldRef"),
    (kube.ObjectFieldSelector, "field_path", "fieldPath"),
    (kube.ObjectFieldSelector, "api_version", "apiVersion"),
    (kube.Pod, "api_version", "apiVersion"), (kube.KubeContainer, "env_from", "envFrom"),
    (kube.EnvFromSource, "config_map_ref", "configMapRef"),
    (kube.EnvFromSource, "secret_ref", "secretRef"),
    (kube.ConfigMap, "binary_data", "binaryData"), (kube.Secret, "string_data", "stringData"),
    (kube.EmptyDirVolumeSource, "size_limit", "sizeLimit"),
    (kube.Volume, "empty_dir", "emptyDir"), (kube.Volume, "host_path", "hostPath"),
    (kube.Volume, "config_map", "configMap"), (kube.Lifecycle, "pre_stop", "preStop"),
    (kube.SecurityContext, "run_as_non_root", "runAsNonRoot"),
    (kube.PodSpec, "runtime_class_name", "runtimeClassName"),
    (kube.PodSpec, "share_process_namespace", "shareProcessNamespace"),
    (kube.PodSpec, "termination_grace_period_seconds", "terminationGracePeriodSeconds"),
    (kube.SecurityContext, "allow_privilege_escalation", "allowPrivilegeEscalation"),
    (kube.SecurityContext, "read_only_root_filesystem", "readOnlyRootFilesystem"),
    (kube.SecurityContext, "seccomp_profile", "seccompProfile"),
    (model.SeccompProfile, "localhost_profile", "localhostProfile"),
    (kube.PodSecurityContext, "supplemental_groups", "supplementalGroups"),
    (kube.PodSecurityContext, "fs_group", "fsGroup"),
    (kube.Probe, "initial_delay_seconds", "initialDelaySeconds"),
    (kube.Probe, "success_threshold", "successThreshold"),
    (kube.Probe, "failure_threshold", "failureThreshold"),
    (kube.Probe, "timeout_seconds", "timeoutSeconds"),
    (kube.Probe, "period_seconds", "periodSeconds"),
    (kube.ContainerPort, "container_port", "containerPort"),
    (kube.ContainerPort, "host_port", "hostPort"),
    (kube.KubeContainer, "image_pull_policy", "imagePullPolicy"),
    (kube.KubeContainer, "working_dir", "workingDir"),
    (kube.KubeContainer, "volume_mounts", "volumeMounts"),
    (kube.PodSpec, "init_containers", "initContainers"),
    (kube.PodSpec, "restart_policy", "restartPolicy"),
    (kube.KubeContainer, "termination_message_path", "terminationMessagePath"),
    (kube.KubeContainer, "termination_message_policy", "terminationMessagePolicy"),
    (kube.PodSpec, "dns_policy", "dnsPolicy"),
    (kube.PodSpec, "security_context", "securityContext"),
    (kube.KubeContainer, "liveness_probe", "livenessProbe"),
    (kube.KubeContainer, "readiness_probe", "readinessProbe"),
    (kube.KubeContainer, "startup_probe", "startupProbe"),
]


@pytest.mark.parametrize(("cls", "attr", "alias"), ALIASES,
                         ids=[f"{c.__name__}.{a}" for c, _, a in ALIASES])
def test_alias(cls: type[pydantic.BaseModel], attr: str, alias: str) -> None:
    assert cls.model_fields[attr].alias == alias


def test_every_alias_is_in_the_rich_pod() -> None:
    """The round trip above covers every field of a Pod: each alias appears in RICH."""
    keys: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            keys.update(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(load(RICH))
    # in test_small_round_trips (apiVersion: of a fieldRef) and test_creation_timestamp_null
    # hostUsers: false cannot go with RICH's hostNetwork (test_host_users_alone)
    pod_only = {"hostPID", "apiVersion", "creationTimestamp", "hostUsers"}
    for cls in pod_models():
        missing = {f.alias for f in cls.model_fields.values()} - keys - pod_only
        assert not missing, f"{cls.__name__}: {missing} not in RICH"


def pod_models() -> list[type[model._Model]]:
    skip = {kube.ConfigMap, kube.Secret, kube.KeySelector}
    return [c for _, c in inspect.getmembers(kube, inspect.isclass)
            if issubclass(c, model._Model) and c.__module__ == kube.__name__
            and not c.__name__.startswith("_") and c not in skip]


# --- Kubernetes' validation rules -----------------------------------------------------

C0 = "spec.containers.0"
RULES: list[tuple[str, dict[str, Any], str]] = [
    ("no containers", {"spec.containers": []}, "at least one container"),
    ("dup container", {"spec.initContainers": [{"name": "app", "image": "busybox"}]},
     "containers[0]: container name 'app' is already used by initContainers[0]"),
    ("dup volume", {"spec.volumes.1": {"name": "data", "emptyDir": {}}},
     "two volumes named 'data'"),
    ("mount no volume", {f"{C0}.volumeMounts.1": {"name": "nope", "mountPath": "/x"}},
     "volumeMounts[1]: no volume named 'nope'"),
    ("mountPath twice", {f"{C0}.volumeMounts.1": {"name": "data", "mountPath": "/data/"}},
     "two volumeMounts at mountPath '/data'"),
    ("hostPID+share", {"spec.hostPID": True, "spec.shareProcessNamespace": True},
     "hostPID and shareProcessNamespace cannot both be true"),
    ("restartPolicy on app", {f"{C0}.restartPolicy": "Always"},
     "containers[0]: restartPolicy is only for initContainers"),
    ("init restartPolicy", {"spec.initContainers": [
        {"name": "i", "image": "busybox", "restartPolicy": "OnFailure"}]}, "'Always'"),
    ("probe on init", {"spec.initContainers": [
        {"name": "i", "image": "busybox", "livenessProbe": {"exec": {"command": ["true"]}}}]},
     "initContainers[0]: livenessProbe is not allowed on an init container"),
    ("lifecycle on init", {"spec.initContainers": [
        {"name": "i", "image": "busybox",
         "lifecycle": {"preStop": {"exec": {"command": ["true"]}}}}]},
     "initContainers[0]: lifecycle is not allowed"),
    ("liveness success", {f"{C0}.livenessProbe": {"exec": {"command": ["true"]},
                                                   "successThreshold": 2}},
     "livenessProbe.successThreshold must be 1"),
    ("startup success", {f"{C0}.startupProbe": {"exec": {"command": ["true"]},
                                                 "successThreshold": 3}},
     "startupProbe.successThreshold must be 1"),
    ("readiness grace", {f"{C0}.readinessProbe": {"exec": {"command": ["true"]},
                                                   "terminationGracePeriodSeconds": 3}},
     "readinessProbe cannot set terminationGracePeriodSeconds"),
    ("two handlers", {f"{C0}.livenessProbe": {"exec": {"command": ["true"]},
                                               "tcpSocket": {"port": 80}}},
     "a probe needs exactly one of exec, httpGet, tcpSocket, grpc; got exec and tcpSocket"),
    ("no handler", {f"{C0}.livenessProbe": {"periodSeconds": 3}},
     "a probe needs exactly one of exec, httpGet, tcpSocket, grpc; got none"),
    ("empty exec", {f"{C0}.livenessProbe": {"exec": {"command": []}}}, "must name a program"),
    ("named port undeclared", {f"{C0}.readinessProbe": {"httpGet": {"port": "web"}}},
     "readinessProbe uses port 'web', which is not the name of one of its ports"),
    ("string number port", {f"{C0}.readinessProbe": {"tcpSocket": {"port": "8080"}}},
     "'8080' is not a port name"),
    ("port 0", {f"{C0}.ports": [{"containerPort": 0}]}, "port number from 1 to 65535"),
    ("port too big", {f"{C0}.ports": [{"containerPort": 80, "hostPort": 70000}]},
     "port number from 1 to 65535, got 70000"),
    ("port name upper", {f"{C0}.ports": [{"containerPort": 80, "name": "HTTP"}]},
     "'HTTP' is not a port name"),
    ("port name long", {f"{C0}.ports": [{"containerPort": 80, "name": "a" * 16}]},
     "is not a port name"),
    ("dup port names", {f"{C0}.ports": [{"containerPort": 80, "name": "web"},
                                        {"containerPort": 81, "name": "web"}]},
     "two ports named 'web'"),
    ("protocol", {f"{C0}.ports": [{"containerPort": 80, "protocol": "ICMP"}]}, "'SCTP'"),
    ("hostIP", {f"{C0}.ports": [{"containerPort": 80, "hostIP": "localhost"}]},
     "'localhost' is not an IP address"),
    ("hostNetwork hostPort", {"spec.hostNetwork": True,
                              f"{C0}.ports": [{"containerPort": 80, "hostPort": 8080}]},
     "with hostNetwork, hostPort must equal containerPort 80"),
    ("host port twice", {f"{C0}.ports": [{"containerPort": 80, "hostPort": 8080}],
                         "spec.containers.1": {"name": "b", "image": "busybox",
                                               "ports": [{"containerPort": 81,
                                                          "hostPort": 8080}]}},
     "containers[1].ports[0]: host port 8080/TCP is already used by containers[0].ports[0]"),
    ("dnsPolicy None", {"spec.dnsPolicy": "None"}, "dnsPolicy None needs dnsConfig"),
    ("hostname", {"spec.hostname": "Web_1"}, "'Web_1' is not a DNS-1123 label"),
    ("subdomain", {"spec.subdomain": "a.b"}, "'a.b' is not a DNS-1123 label"),
    ("runtimeClassName", {"spec.runtimeClassName": "Runc"}, "is not a DNS-1123 subdomain"),
    ("grace negative", {"spec.terminationGracePeriodSeconds": -1}, "greater than or equal"),
    ("privileged, no escalation", {f"{C0}.securityContext": {
        "privileged": True, "allowPrivilegeEscalation": False}},
     "allowPrivilegeEscalation cannot be false when privileged is true"),
    ("privileged, hostUsers false", {f"{C0}.securityContext": {"privileged": True},
                                     "spec.hostUsers": False},
     "containers[0].securityContext.privileged: a privileged container cannot run with"
     " hostUsers: false"),
    ("escalation+SYS_ADMIN", {f"{C0}.securityContext": {
        "allowPrivilegeEscalation": False, "capabilities": {"add": ["CAP_SYS_ADMIN"]}}},
     "allowPrivilegeEscalation: false cannot be set when adding CAP_SYS_ADMIN"),
    ("runAsUser negative", {"spec.securityContext.runAsUser": -1}, "greater than or equal"),
    ("requests > limits", {f"{C0}.resources": {"limits": {"memory": "64Mi"},
                                               "requests": {"memory": "1Gi"}}},
     "requests.memory 1Gi is more than limits.memory 64Mi"),
    ("gpu", {f"{C0}.resources": {"limits": {"nvidia.com/gpu": "1"}}},
     "resource 'nvidia.com/gpu' is not supported by reconciler"),
    ("bad quantity", {f"{C0}.resources": {"limits": {"memory": "1Q"}}}, "unknown suffix"),
    ("image", {f"{C0}.image": "Busybox"}, "'Busybox' is not an image reference"),
    ("pull policy", {f"{C0}.imagePullPolicy": "Sometimes"}, "'IfNotPresent'"),
    ("workingDir", {f"{C0}.workingDir": "srv"}, "must be an absolute path"),
    ("termination path", {f"{C0}.terminationMessagePath": "log"}, "must be an absolute"),
    ("env both", {f"{C0}.env": [{"name": "A", "value": "x", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.name"}}}]}, "env 'A': give value or valueFrom"),
    ("env name", {f"{C0}.env": [{"name": "A=B", "value": "x"}]},
     "'A=B' is not a variable name"),
    ("valueFrom two", {f"{C0}.env": [{"name": "A", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.name"},
        "secretKeyRef": {"name": "s", "key": "k"}}}]},
     "valueFrom needs exactly one of configMapKeyRef, secretKeyRef, fieldRef;"
     " got secretKeyRef and fieldRef"),
    ("valueFrom none", {f"{C0}.env": [{"name": "A", "valueFrom": {}}]}, "got none"),
    ("fieldPath nodeName", {f"{C0}.env": [{"name": "A", "valueFrom": {
        "fieldRef": {"fieldPath": "spec.nodeName"}}}]},
     "fieldPath 'spec.nodeName' is not supported by reconciler; supported: metadata.name"),
    ("fieldPath junk", {f"{C0}.env": [{"name": "A", "valueFrom": {
        "fieldRef": {"fieldPath": "spec.junk"}}}]},
     "fieldPath 'spec.junk' is not a field reconciler knows; supported:"),
    ("fieldPath all labels in env", {f"{C0}.env": [{"name": "A", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.labels"}}}]}, "is not a field reconciler knows"),
    ("fieldRef apiVersion", {f"{C0}.env": [{"name": "A", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v2"}}}]}, "'v1'"),
    ("keyRef key", {f"{C0}.env": [{"name": "A", "valueFrom": {
        "configMapKeyRef": {"name": "c", "key": "a/b"}}}]}, "key 'a/b' is not valid"),
    ("envFrom none", {f"{C0}.envFrom": [{"prefix": "X_"}]},
     "envFrom needs exactly one of configMapRef, secretRef; got none"),
    ("no volume source", {"spec.volumes.1": {"name": "v"}},
     "volume 'v': one volume source is required: emptyDir, hostPath, configMap, secret,"
     " projected or downwardAPI"),
    ("two volume sources", {"spec.volumes.1": {"name": "v", "emptyDir": {},
                                               "hostPath": {"path": "/tmp"}}},
     "give one volume source, not emptyDir and hostPath"),
    ("volume name", {"spec.volumes.1": {"name": "V", "emptyDir": {}}}, "DNS-1123 label"),
    ("subPath up", {f"{C0}.volumeMounts.0.subPath": "../etc"}, "must not contain '..'"),
    ("subPath absolute", {f"{C0}.volumeMounts.0.subPath": "/etc"}, "must be a relative path"),
    ("item path up", {"spec.volumes.1": {"name": "c", "configMap": {
        "name": "c", "items": [{"key": "a", "path": "x/../../a"}]}}}, "must not contain '..'"),
    ("item path dotdot", {"spec.volumes.1": {"name": "c", "configMap": {
        "name": "c", "items": [{"key": "a", "path": "..data"}]}}}, "must not start with '..'"),
    ("mode", {"spec.volumes.1": {"name": "s", "secret": {"secretName": "s",
                                                          "defaultMode": 0o1000}}},
     "must be a file mode from 0 to 0777"),
    ("hostPath relative", {"spec.volumes.1": {"name": "h", "hostPath": {"path": "var/log"}}},
     "must be an absolute path"),
    ("hostPath type", {"spec.volumes.1": {"name": "h", "hostPath": {
        "path": "/var", "type": "Dir"}}}, "'DirectoryOrCreate'"),
    ("emptyDir medium", {"spec.volumes.0.emptyDir.medium": "HugePages"}, "'Memory'"),
    ("projected same path", {"spec.volumes.1": {"name": "p", "projected": {"sources": [
        {"configMap": {"name": "c", "items": [{"key": "a", "path": "x"}]}},
        {"secret": {"name": "s", "items": [{"key": "b", "path": "x"}]}}]}}},
     "sources: two files at path 'x'"),
    ("projection two", {"spec.volumes.1": {"name": "p", "projected": {"sources": [
        {"configMap": {"name": "c"}, "secret": {"name": "s"}}]}}},
     "a projection needs exactly one of configMap, secret, downwardAPI"),
    ("downward status", {"spec.volumes.1": {"name": "d", "downwardAPI": {"items": [
        {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]}}},
     "fieldPath 'status.podIP' is not a field reconciler knows"),
    ("preStop without exec", {f"{C0}.lifecycle": {"preStop": {}}}, "Field required"),
    ("sysctl net with hostNetwork", {"spec.hostNetwork": True, "spec.securityContext.sysctls": [
        {"name": "net.core.somaxconn", "value": "1024"}]},
     "net.core.somaxconn cannot be set with hostNetwork"),
    ("sysctl shm with hostIPC", {"spec.hostIPC": True, "spec.securityContext.sysctls": [
        {"name": "kernel.shmmax", "value": "1"}]}, "cannot be set with hostIPC"),
    ("sysctl twice", {"spec.securityContext.sysctls": [
        {"name": "kernel.msgmax", "value": "1"}, {"name": "kernel/msgmax", "value": "2"}]},
     "sysctl 'kernel.msgmax' is set twice"),
    ("sysctl name", {"spec.securityContext.sysctls": [{"name": "Kernel", "value": "1"}]},
     "is not a sysctl name"),
    ("header name", {f"{C0}.livenessProbe": {"httpGet": {
        "port": 80, "httpHeaders": [{"name": "X Bad", "value": "1"}]}}},
     "is not an HTTP header name"),
    ("seccomp", {f"{C0}.securityContext": {"seccompProfile": {"type": "Localhost"}}},
     "type Localhost needs localhostProfile"),
    ("capability", {f"{C0}.securityContext": {"capabilities": {"add": ["FLY"]}}},
     "'FLY' is not a Linux capability"),
    ("pod name long", {"metadata.name": "a" * 64}, "reconciler needs pod names without dots"),
    ("namespace", {"metadata.namespace": "Prod"}, "'Prod' is not a DNS-1123 label"),
    ("label key", {"metadata.labels": {"-bad": "x"}}, "key '-bad': the name must be"),
    ("label prefix", {"metadata.labels": {"Example.com/a": "x"}}, "the prefix before '/'"),
    ("label value", {"metadata.labels": {"a": "x y"}}, "label 'a': value 'x y' must be"),
    ("label value long", {"metadata.labels": {"a": "x" * 64}}, "label 'a': value"),
    ("annotation key", {"metadata.annotations": {"a b": "x"}}, "key 'a b'"),
    ("creationTimestamp", {"metadata.creationTimestamp": "2024-01-01T00:00:00Z"},
     "only creationTimestamp: null"),
    ("apiVersion", {"apiVersion": "v2"}, "'v1'"),
    ("string port number", {f"{C0}.ports": [{"containerPort": "80"}]}, "valid integer"),
]


@pytest.mark.parametrize(("edits", "expected"), [r[1:] for r in RULES],
                         ids=[r[0] for r in RULES])
def test_rule(edits: dict[str, Any], expected: str) -> None:
    doc = load(BASE)
    for path, value in edits.items():
        put(doc, path, copy.deepcopy(value))
    assert expected in problems(doc)


def test_sidecar_may_have_probes_and_lifecycle() -> None:
    side = {"name": "s", "image": "busybox", "restartPolicy": "Always",
            "startupProbe": {"exec": {"command": ["true"]}},
            "lifecycle": {"preStop": {"exec": {"command": ["true"]}}}}
    p = pod_of(put(load(BASE), "spec.initContainers", [side]))
    assert p.spec.init_containers[0].restart_policy == "Always"


def test_creation_timestamp_null_accepted() -> None:
    p = pod_of(put(load(BASE), "metadata.creationTimestamp", None))
    assert p.metadata.creation_timestamp is None


def test_env_without_value_is_empty() -> None:
    """Kubernetes accepts a bare name (an empty value), and "" next to valueFrom."""
    env = [{"name": "EMPTY"}, {"name": "B", "value": "", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.annotations['example.com/x']"}}}]
    p = pod_of(put(load(BASE), f"{C0}.env", env))
    assert [e.value for e in p.spec.containers[0].env] == [None, ""]


# --- ConfigMap and Secret -------------------------------------------------------------


def config(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"}, **fields}


def secret(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, **fields}


def test_configmap_items() -> None:
    cm = validate(config(data={"a.conf": "x=1\n"}, binaryData={"logo": "AAEC\n/w=="}))
    assert cm.items() == {"a.conf": b"x=1\n", "logo": b"\x00\x01\x02\xff"}
    assert (cm.immutable, cm.key) == (None, "default/conf")


@pytest.mark.parametrize(("fields", "expected"), [
    ({"data": {"a": "1"}, "binaryData": {"a": "MQ=="}}, "'a' is in both data and binaryData"),
    ({"binaryData": {"b": "not base64!"}}, "key 'b': not valid base64"),
    ({"data": {"a/b": "1"}}, "key 'a/b' is not valid"),
    ({"data": {"..": "1"}}, "key '..' is not valid"),
    ({"data": {"a": 1}}, "valid string"),
    ({"data": {"a": "x" * (1024 * 1024 + 1)}}, "Kubernetes allows 1MiB"),
])
def test_configmap_rules(fields: dict[str, Any], expected: str) -> None:
    assert expected in problems(config(**fields))


def test_secret_items_string_data_wins() -> None:
    s = validate(secret(data={"user": "YWRtaW4=", "pass": "b2xk"},
                        stringData={"pass": "new"}))
    assert s.items() == {"user": b"admin", "pass": b"new"}
    assert s.type == "Opaque"


def test_secret_values_hidden() -> None:
    s = validate(secret(data={"pass": "aHVudGVyMg=="}, stringData={"token": "s3cr3t-t0ken"}))
    for text in (repr(s), str(s)):
        assert "aHVudGVyMg==" not in text and "s3cr3t-t0ken" not in text
        assert "pass" in text and "token" in text
    with pytest.raises(pydantic.ValidationError) as info:
        validate(secret(data={"pass": "s3cr3t-t0ken"}, stringData={"x": "pl41n-v4lue"}))
    assert "s3cr3t-t0ken" not in str(info.value) and "pl41n-v4lue" not in str(info.value)
    assert "key 'pass': not valid base64" in str(info.value)


@pytest.mark.parametrize(("fields", "expected"), [
    ({"type": "kubernetes.io/tls", "stringData": {"tls.crt": "c"}}, "needs the key 'tls.key'"),
    ({"type": "kubernetes.io/dockerconfigjson"}, "needs the key '.dockerconfigjson'"),
    ({"type": "kubernetes.io/service-account-token"}, "not supported by reconciler"),
    ({"type": ""}, "at least 1 character"),
    ({"data": {"a": "YQ"}}, "not valid base64"),
])
def test_secret_rules(fields: dict[str, Any], expected: str) -> None:
    assert expected in problems(secret(**fields))


# --- the Kubernetes fields we refuse --------------------------------------------------

UNSUPPORTED_BASE = """
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    image: busybox:1.36
    env: [{name: A, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
    volumeMounts: [{name: data, mountPath: /data}]
    ports: [{containerPort: 80}]
    livenessProbe: {httpGet: {port: 80}}
    readinessProbe: {grpc: {port: 80}}
    lifecycle: {preStop: {exec: {command: [sleep, "1"]}}}
  volumes:
  - {name: data, emptyDir: {}}
  - name: proj
    projected:
      sources: [{downwardAPI: {items: [{path: n, fieldRef: {fieldPath: metadata.name}}]}}]
  - {name: cm, configMap: {name: c, items: [{key: a, path: a}]}}
"""
S, C, V = "spec", "spec.containers.0", "spec.volumes"
UNSUPPORTED: list[tuple[str, Any, type[pydantic.BaseModel]]] = [
    ("status", {"phase": "Running"}, kube.Pod),
    *[(f"metadata.{f}", v, kube.ObjectMeta) for f, v in [
        ("generateName", "web-"), ("uid", "3f1c"), ("resourceVersion", "12"),
        ("ownerReferences", []), ("finalizers", ["x/y"]), ("managedFields", []),
        ("generation", 2), ("deletionTimestamp", "2024-01-01T00:00:00Z"), ("selfLink", "/x"),
        ("deletionGracePeriodSeconds", 30)]],
    *[(f"{S}.{f}", v, kube.PodSpec) for f, v in [
        ("affinity", {}), ("nodeSelector", {"disktype": "ssd"}), ("nodeName", "node-1"),
        ("tolerations", []), ("serviceAccountName", "sa"), ("serviceAccount", "sa"),
        ("automountServiceAccountToken", False), ("imagePullSecrets", [{"name": "reg"}]),
        ("priorityClassName", "high"), ("priority", 1000), ("schedulerName", "custom"),
        ("topologySpreadConstraints", []), ("overhead", {"cpu": "1"}),
        ("preemptionPolicy", "Never"), ("readinessGates", []), ("resourceClaims", []),
        ("schedulingGates", []), ("setHostnameAsFQDN", True), ("hostAliases", []),
        ("dnsConfig", {"nameservers": ["1.1.1.1"]}), ("enableServiceLinks", False),
        ("ephemeralContainers", []), ("os", {"name": "linux"}),
        ("activeDeadlineSeconds", 60), ("resources", {"limits": {"cpu": "1"}})]],
    *[(f"{S}.securityContext.{f}", v, kube.PodSecurityContext) for f, v in [
        ("fsGroupChangePolicy", "OnRootMismatch"), ("seLinuxChangePolicy", "Recursive"),
        ("supplementalGroupsPolicy", "Strict"), ("seLinuxOptions", {"level": "s0"}),
        ("windowsOptions", {}), ("appArmorProfile", {"type": "RuntimeDefault"})]],
    *[(f"{C}.{f}", v, kube.KubeContainer) for f, v in [
        ("resizePolicy", []), ("restartPolicyRules", []), ("stdinOnce", True),
        ("volumeDevices", [])]],
    *[(f"{C}.securityContext.{f}", v, kube.SecurityContext) for f, v in [
        ("seLinuxOptions", {}), ("windowsOptions", {}), ("procMount", "Unmasked"),
        ("appArmorProfile", {"type": "Unconfined"})]],
    (f"{C}.lifecycle.postStart", {"exec": {"command": ["true"]}}, kube.Lifecycle),
    (f"{C}.lifecycle.stopSignal", "SIGUSR1", kube.Lifecycle),
    (f"{C}.lifecycle.preStop.httpGet", {"port": 80}, kube.LifecycleHandler),
    (f"{C}.lifecycle.preStop.tcpSocket", {"port": 80}, kube.LifecycleHandler),
    (f"{C}.lifecycle.preStop.sleep", {"seconds": 5}, kube.LifecycleHandler),
    (f"{C}.livenessProbe.httpGet.protocol", "h2", kube.HTTPGetAction),
    (f"{C}.readinessProbe.grpc.mode", "x", kube.GRPCAction),
    (f"{C}.env.0.valueFrom.resourceFieldRef", {"resource": "limits.cpu"}, kube.EnvVarSource),
    (f"{C}.env.0.valueFrom.fileKeyRef", {"path": "a", "key": "b"}, kube.EnvVarSource),
    (f"{C}.resources.claims", [{"name": "gpu"}], kube.ResourceRequirements),
    *[(f"{C}.volumeMounts.0.{f}", v, kube.VolumeMount) for f, v in [
        ("subPathExpr", "$(POD)"), ("mountPropagation", "HostToContainer"),
        ("recursiveReadOnly", "Enabled")]],
    *[(f"{V}.0.{f}", v, kube.Volume) for f, v in [
        ("persistentVolumeClaim", {"claimName": "c"}), ("nfs", {"server": "s", "path": "/"}),
        ("csi", {"driver": "d"}), ("ephemeral", {}), ("image", {"reference": "busybox"}),
        ("iscsi", {}), ("gitRepo", {"repository": "r"}), ("cephfs", {}),
        ("awsElasticBlockStore", {})]],
    (f"{V}.0.emptyDir.mode", "0755", kube.EmptyDirVolumeSource),
    *[(f"{V}.1.projected.sources.0.{f}", v, kube.VolumeProjection) for f, v in [
        ("serviceAccountToken", {"path": "token"}), ("clusterTrustBundle", {"path": "ca"}),
        ("podCertificate", {})]],
    (f"{V}.1.projected.defaultUser", 1000, kube.ProjectedVolumeSource),
    (f"{V}.1.projected.sources.0.downwardAPI.items.0.resourceFieldRef",
     {"resource": "limits.cpu"}, kube.DownwardAPIVolumeFile),
    (f"{V}.2.configMap.items.0.user", 1000, kube.KeyToPath),
]


@pytest.mark.parametrize(("path", "value", "owner"), UNSUPPORTED,
                         ids=[u[0].replace("spec.", "") for u in UNSUPPORTED])
def test_unsupported_field(path: str, value: Any, owner: Any) -> None:
    pod(UNSUPPORTED_BASE)  # the base is valid
    found = errors(put(load(UNSUPPORTED_BASE), path, value))
    field = path.rsplit(".", 1)[-1]
    assert [(e["type"], e["loc"][-1]) for e in found] == [("extra_forbidden", field)]
    assert field in owner.UNSUPPORTED


def test_unsupported_table_is_large() -> None:
    assert len(UNSUPPORTED) >= 40


def test_unknown_field_is_not_unsupported() -> None:
    found = errors(put(load(BASE), f"{C}.imagePullPolcy", "Always"))
    assert [e["type"] for e in found] == ["extra_forbidden"]
    assert "imagePullPolcy" not in kube.KubeContainer.UNSUPPORTED


# --- against the Kubernetes API schema -------------------------------------------------

K8S_VERSION: str = kubernetes_validate.latest_version()
K8S_TYPES: dict[type[pydantic.BaseModel], str] = {
    kube.Pod: "Pod", kube.ConfigMap: "ConfigMap", kube.Secret: "Secret",
    kube.ObjectMeta: "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    kube.KubeContainer: "Container", kube.KubeEnvVar: "EnvVar",
    model.Capabilities: "Capabilities", model.SeccompProfile: "SeccompProfile",
}


@functools.cache
def k8s_definitions() -> dict[str, Any]:
    schema_dir = f"kubernetes-json-schema/v{K8S_VERSION}-local-strict"
    defs: dict[str, Any] = kubernetes_validate.utils.schema_contents(
        f"{schema_dir}/_definitions.json", K8S_VERSION)["$defs"]
    return defs


def k8s_fields(cls: type[pydantic.BaseModel]) -> set[str]:
    name = K8S_TYPES.get(cls, cls.__name__)
    if "." not in name:
        name = f"io.k8s.api.core.v1.{name}"
    return set(k8s_definitions()[name]["properties"])


@pytest.mark.parametrize("cls", [*pod_models(), kube.ConfigMap, kube.Secret,
                                 model.Capabilities, model.SeccompProfile],
                         ids=lambda c: c.__name__)
def test_fields_match_kubernetes(cls: type[pydantic.BaseModel]) -> None:
    """Each field is either ours or listed as unsupported: none is forgotten, none made up."""
    ours = {f.alias or n for n, f in cls.model_fields.items()}
    unsupported: frozenset[str] = getattr(cls, "UNSUPPORTED", frozenset())
    assert not ours & unsupported
    assert ours | unsupported == k8s_fields(cls), K8S_VERSION


def fixtures() -> list[Path]:
    return sorted(FIXTURES.glob("*.yaml"))


def documents(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def test_fixture_set() -> None:
    docs = [(p, d) for p in fixtures() for d in documents(p)]
    assert sum(d["kind"] == "Pod" for _, d in docs) >= 6
    assert len([p for p in fixtures() if is_flow(p)]) >= 2
    mixed = [p for p in fixtures() if {d["kind"] for d in documents(p)} >= {"ConfigMap", "Pod"}]
    assert mixed


def is_flow(path: Path) -> bool:
    """The document itself is a flow mapping: its first non-comment line opens one."""
    lines = [x for x in path.read_text().splitlines() if x.strip() and not x.startswith("#")]
    return lines[0].startswith("{")


@pytest.mark.parametrize("path", fixtures(), ids=lambda p: p.name)
def test_fixture_valid(path: Path) -> None:
    for doc in documents(path):
        result = validate(doc)
        assert result.model_dump(by_alias=True, exclude_unset=True, mode="json") == doc


@pytest.mark.parametrize("path", fixtures(), ids=lambda p: p.name)
def test_fixture_valid_for_kubernetes(path: Path) -> None:
    for doc in documents(path):
        version = kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert version == K8S_VERSION.rsplit(".", 1)[0]


@pytest.mark.parametrize("path", fixtures(), ids=lambda p: p.name)
def test_fixture_valid_for_json_schema(path: Path) -> None:
    validator = jsonschema.Draft202012Validator(kube.json_schema())
    for doc in documents(path):
        validator.validate(doc)


def test_json_schema() -> None:
    schema = kube.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert len(schema["anyOf"]) == 3
    container = schema["$defs"]["KubeContainer"]["properties"]
    assert "busybox" in container["image"]["description"]
    assert "Always" in container["imagePullPolicy"]["description"]
    assert container["livenessProbe"]
    validator = jsonschema.Draft202012Validator(schema)
    assert not validator.is_valid(put(load(BASE), "spec.nodeName", "n1"))
    assert validator.is_valid(load(RICH))


@pytest.mark.parametrize("text", [BASE, RICH, UNSUPPORTED_BASE], ids=["base", "rich", "unsup"])
def test_test_pods_valid_for_kubernetes(text: str) -> None:
    kubernetes_validate.validate(load(text), K8S_VERSION, strict=True)


@pytest.mark.parametrize("style", ["block", "flow"])
@pytest.mark.parametrize(("path", "value", "owner"), UNSUPPORTED,
                         ids=[u[0].replace("spec.", "") for u in UNSUPPORTED])
def test_unsupported_field_is_a_finding_on_its_line(path: str, value: Any, owner: Any,
                                                     style: str) -> None:
    """What a user sees: the loader's ``FILE:LINE: PATH: not supported by reconciler``,
    the line being the one the field is written on, in either YAML style."""
    doc = put(load(UNSUPPORTED_BASE), path, value)
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=style == "flow",
                          width=60 if style == "flow" else 1000)
    result = loader.load_bytes(text.encode(), file="pod.yaml", base_dir="/tmp")
    field = path.rsplit(".", 1)[-1]
    (finding,) = result.findings
    assert finding.path.endswith(field) and finding.line is not None
    assert finding.message.startswith("not supported by reconciler")
    assert f"{field}:" in text.splitlines()[finding.line - 1]


def test_host_users_alone() -> None:
    """hostUsers: false is a user namespace of the pod's own; not with a host namespace."""
    spec: dict[str, Any] = {"hostUsers": False,
                            "containers": [{"name": "c", "image": "busybox"}]}
    base = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}
    assert kube.Pod.model_validate(base).spec.host_users is False
    for shared in ("hostNetwork", "hostPID", "hostIPC"):
        doc = {**base, "spec": {**spec, shared: True}}
        with pytest.raises(pydantic.ValidationError, match=f"cannot be used with {shared}"):
            kube.Pod.model_validate(doc)
