"""reconciler: a declarative reconciler for real runc containers.

Layers, top to bottom (each imports only those below it; ``make lint`` checks this with
the import-linter contract in pyproject.toml, and docs/architecture.md draws it):

    cli        command line: run, validate, get, describe, events, diff, logs, exec, image
    daemon     loop (plan, dispatch) → one worker per object → runtime; status, metrics
    sources    where desired state comes from (the manifests directory)      ┐
    resolve    desired object → fully-resolved InstanceSpec (images, defaults) ├ siblings
    runtime    the one layer that touches the host: bundles, overlay, conmon, runc ┘
    images     the local OCI image store (skopeo in, umoci out)
    core       pure: desired, observed, history, changes, backoff, planner
    manifest   the manifest format (pydantic models) and the file loader
    errors, proc, atomic, paths, logs   small shared helpers and the one error tree
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
