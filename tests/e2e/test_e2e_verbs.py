"""``apply``, ``restart`` and ``delete`` with a real daemon and real runc: the verbs only
edit the manifests directory, and the daemon converges to what they wrote."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .harness import E2E, generation, wait_until

pytestmark = pytest.mark.runc


def verb(e2e: E2E, *argv: str, stdin: str | None = None) -> str:
    res = subprocess.run([sys.executable, "-m", "reconciler", *argv,
                          "--manifests", str(e2e.manifests)],
                         input=stdin, capture_output=True, text=True, check=False, cwd=e2e.tmp)
    assert res.returncode == 0, f"reconciler {' '.join(argv)}: {res.stderr}"
    return res.stdout


def current_generation(e2e: E2E, name: str) -> int:
    entry = e2e.runc(name)
    assert entry is not None, f"runc has no instance of {name}"
    return generation(entry)


def test_apply_restart_delete(e2e: E2E) -> None:
    e2e.start("--allow-empty")  # delete leaves the directory empty
    assert verb(e2e, "apply", "-f", "-", stdin=e2e.manifest("web")) == "container/web created\n"
    pid = e2e.wait_running("web")
    first = current_generation(e2e, "web")

    changed = e2e.manifest("web", "trap 'exit 0' TERM; echo v2; sleep 1000 & wait")
    assert verb(e2e, "apply", "-f", "-", stdin=changed) == "container/web configured\n"
    pid2 = e2e.wait_running("web", not_pid=pid)
    second = current_generation(e2e, "web")
    assert second > first
    assert verb(e2e, "apply", "-f", "-", stdin=changed) == "container/web unchanged\n"

    assert verb(e2e, "restart", "web") == "container/web restarted\n"
    pid3 = e2e.wait_running("web", not_pid=pid2)
    wait_until(lambda: current_generation(e2e, "web") == second + 1, 10,
               what="generation + 1 after restart")
    assert pid3 != pid2
    # the restart is in the manifest (an annotation in the hash): a daemon restart does
    # not repeat it
    e2e.daemons[0].stop()
    e2e.start("--allow-empty")
    e2e.keeps({"web": pid3}, 1.5, why="across a daemon restart after a restart verb")
    assert current_generation(e2e, "web") == second + 1

    assert verb(e2e, "delete", "web") == "container/web deleted\n"
    e2e.wait_gone("web")
    assert list(e2e.manifests.iterdir()) == []
