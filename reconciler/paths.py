"""Default locations, in one light module the CLI can import without the runtime."""

from __future__ import annotations

DEFAULT_MANIFESTS = "/etc/reconciler/manifests"
DEFAULT_STATE_DIR = "/var/lib/reconciler"
DEFAULT_RUNC_ROOT = "/run/reconciler/runc"
DEFAULT_CGROUP_PARENT = "/reconciler"
