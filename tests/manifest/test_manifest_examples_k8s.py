"""The demo manifests (``manifests/*.yaml``, what ``make run`` runs) are valid for us and,
for their Kubernetes ``v1`` documents, for a real cluster: each is checked against the
Kubernetes OpenAPI schema by ``kubernetes-validate`` (strict: no unknown field), as the
fixtures in ``kube/`` are by ``test_manifest_kube.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from reconciler.core import pods
from reconciler.manifest import kube, loader

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests"
K8S_VERSION: str = kubernetes_validate.latest_version()


def examples() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml"))


def v1_documents(path: Path) -> list[Any]:
    docs = yaml.safe_load_all(path.read_text(encoding="utf-8"))
    return [d for d in docs if isinstance(d, dict) and d.get("apiVersion") == "v1"]


def test_examples_include_a_pod() -> None:
    kinds = {d["kind"] for p in examples() for d in v1_documents(p)}
    assert {"Pod", "ConfigMap"} <= kinds


@pytest.mark.parametrize("path", examples(), ids=lambda p: p.name)
def test_example_loads(path: Path) -> None:
    result = loader.load_file(str(path))
    assert result.findings == ()
    assert result.documents


@pytest.mark.parametrize("path", examples(), ids=lambda p: p.name)
def test_example_valid_for_kubernetes(path: Path) -> None:
    for doc in v1_documents(path):
        version = kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert version == K8S_VERSION.rsplit(".", 1)[0]


@pytest.mark.parametrize("path", examples(), ids=lambda p: p.name)
def test_example_pods_expand(path: Path) -> None:
    """As the daemon (and ``reconciler validate``) do: every ConfigMap and
    Secret a pod uses is in the same file, and the pod becomes its units."""
    documents = [d.document for d in loader.load_file(str(path)).documents]
    config: dict[tuple[str, str], kube.ConfigMap | kube.Secret] = {
        (d.kind, d.key): d for d in documents if isinstance(d, kube.ConfigMap | kube.Secret)}
    for pod in (d for d in documents if isinstance(d, kube.Pod)):
        units = pods.expand(pod, config=config, pods_dir="/var/lib/reconciler/pods")
        names = [c.name for c in (*pod.spec.init_containers, *pod.spec.containers)]
        assert [u.name for u in units] == [pods.unit_name(pod.key)] + [
            pods.unit_name(pod.key, n) for n in names]
