"""Helpers of the image tests: the offline image build, tool checks, a counting umoci."""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MKIMAGE = REPO / "deploy" / "mkimage-busybox.sh"

# What ``conf:1`` says; the tests check each of these from inside a container.
REPORT = ('echo "argv=$0 $*"; echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)";'
          ' echo "cwd=$(pwd)"; echo "greeting=$GREETING mode=$MODE"; echo "path=$PATH"')
CONF = {
    "entrypoint": ["/bin/sh", "-c"],
    "cmd": [REPORT, "from-cmd"],
    "env": ["GREETING=hello", "MODE=image", "PATH=/bin:/usr/bin"],
    "workingdir": "/var/www",
    "user": "www-data",
    "stopsignal": "SIGQUIT",
}


def need_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install -y {' '.join(missing)})")


def run(*argv: str | Path) -> str:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{argv}: {result.stderr}"
    return result.stdout


@dataclass(frozen=True)
class Built:
    """The session's images: an OCI layout holding busybox:latest, conf:1 and other:1."""

    layout: Path
    scratch: Path

    def source(self, ref: str = "busybox:latest") -> str:
        return f"oci:{self.layout}:{ref}"

    def digest(self, ref: str = "busybox:latest") -> str:
        return run("skopeo", "inspect", "--format", "{{.Digest}}", self.source(ref)).strip()


@dataclass(frozen=True)
class CountingUmoci:
    """A umoci wrapper that counts its ``unpack`` runs."""

    path: Path
    log: Path

    def unpacks(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0


def push(built: Built, ref: str, dest: str) -> str:
    """Push a session image to the registry; the digest the registry now serves."""
    run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", built.source(ref),
        f"docker://{dest}")
    return run("skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
               f"docker://{dest}").strip()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
