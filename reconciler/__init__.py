"""reconciler: a declarative reconciler for real runc containers.

Layers, top to bottom (each imports only those below it):

    cli        command line: run, validate, get, describe, events, diff, schema
    daemon     watcher → desired state → planner → executor, with status and events
    planner    pure: (desired, observed, history, now) -> actions
    runtime    the one layer that touches the host: OCI bundles, overlay, conmon, runc
    manifest   the manifest format (pydantic models) and the file loader
    errors     the one error tree
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
