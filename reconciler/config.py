"""Settings every command shares, found as kubectl finds its own: flags win, then the
environment, then a config file, then the built-in default.

    flag (--state-dir)  >  RECONCILER_STATE_DIR  >  config file  >  paths.DEFAULT_STATE_DIR

Config files, later ones winning: ``/etc/reconciler/config.yaml``, then
``~/.config/reconciler/config.yaml`` (``$XDG_CONFIG_HOME``), or only the file named by
``RECONCILER_CONFIG``. A file is a YAML mapping of the same settings in camelCase
(``stateDir: /srv/reconciler``); a relative path in it is relative to the file. Light
on purpose: the CLI imports it before anything else, and yaml only when a file exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from reconciler import errors, paths

# setting -> (environment variable, config file key, built-in default)
SETTINGS: dict[str, tuple[str, str, str]] = {
    "state_dir": ("RECONCILER_STATE_DIR", "stateDir", paths.DEFAULT_STATE_DIR),
    "runc_root": ("RECONCILER_RUNC_ROOT", "runcRoot", paths.DEFAULT_RUNC_ROOT),
    "manifests": ("RECONCILER_MANIFESTS", "manifests", paths.DEFAULT_MANIFESTS),
    "networks": ("RECONCILER_NETWORKS", "networks", "auto"),  # run: on, off, auto
    # run and validate: a policy file, or a built-in level (privileged, baseline, restricted)
    "policy": ("RECONCILER_POLICY", "policy", "baseline"),
}
SYSTEM_FILE = "/etc/reconciler/config.yaml"
# values that are words, not paths: every networks value, and a policy that names a
# built-in level (manifest/policy.py's LEVELS; not imported: this module stays light)
NETWORKS = ("auto", "on", "off")
LEVELS = ("privileged", "baseline", "restricted")


@dataclass(frozen=True)
class Setting:
    value: str
    origin: str  # "default", "RECONCILER_STATE_DIR", or a config file's path


def files() -> list[Path]:
    """The config files read, in order (a later one wins)."""
    named = os.environ.get("RECONCILER_CONFIG")
    if named:
        return [Path(named)]
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return [Path(SYSTEM_FILE), Path(home) / "reconciler" / "config.yaml"]


def settings() -> dict[str, Setting]:
    """Every setting with where its value came from (``reconciler config view``)."""
    out = {name: Setting(default, "default") for name, (_, _, default) in SETTINGS.items()}
    for path in files():
        for name, value in _read(path).items():
            out[name] = Setting(value, str(path))
    for name, (env, _, _) in SETTINGS.items():
        if os.environ.get(env):
            out[name] = Setting(os.environ[env], env)
    return out


def default(name: str) -> str:
    """The value a flag falls back to."""
    return settings()[name].value


def _read(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise errors.UsageError(f"config file {path}: {exc.strerror or exc}") from exc
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise errors.UsageError(f"config file {path}: not YAML: {exc}") from exc
    if data is None:
        return {}
    keys = {key: name for name, (_, key, _) in SETTINGS.items()}
    if not isinstance(data, dict):
        raise errors.UsageError(f"config file {path}: must be a mapping of "
                                f"{', '.join(sorted(keys))}")
    out = {}
    for key, value in data.items():
        if key not in keys:
            raise errors.UsageError(f"config file {path}: unknown setting {key!r} (known: "
                                    f"{', '.join(sorted(keys))})")
        if not isinstance(value, str) or not value:
            raise errors.UsageError(f"config file {path}: {key} must be a string")
        name = keys[key]
        if name == "networks" and value not in NETWORKS:
            raise errors.UsageError(f"config file {path}: networks must be one of"
                                    f" {', '.join(NETWORKS)}, not {value!r}")
        if name == "networks" or (name == "policy" and value in LEVELS):
            out[name] = value  # a word, not a path
        else:
            out[name] = os.path.normpath(os.path.join(path.parent, value))
    return out
