"""The default seccomp profile refuses 32-bit system calls; ``seccompProfile`` opts out.

Real runc and conmon. The probe is a 64-bit static program of 41 bytes, written here: it
makes the i386 ``getpid`` through ``int 0x80`` and exits (through the 64-bit ``exit``)
with 0 if that returned a PID, 1 if it returned an error. Under the default profile
(native architecture only) the call must fail; with ``Unconfined``, or a ``Localhost``
profile whose ``archMap`` lists the 32-bit sub-architecture, it must work.
"""

from __future__ import annotations

import platform
import shutil
import struct
from pathlib import Path
from typing import Any

import anyio
import pytest

from reconciler.runtime import seccomp
from reconciler.runtime.runc import RuncRuntime

from .support import manifest, up

pytestmark = [
    pytest.mark.runc,
    pytest.mark.anyio,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="an x86-64 probe"),
    pytest.mark.skipif(not Path(seccomp.DEFAULT_PATH).exists(),
                       reason=f"{seccomp.DEFAULT_PATH} missing"),
]

CODE = bytes.fromhex(
    "b814000000"  # mov eax, 20       i386 getpid
    "cd80"        # int 0x80
    "85c0"        # test eax, eax
    "7f07"        # jg ok             a PID (> 0): success
    "bf01000000"  # mov edi, 1        an error (-ENOSYS, -EPERM): exit 1
    "eb02"        # jmp out
    "31ff"        # ok: xor edi, edi  exit 0
    "b83c000000"  # out: mov eax, 60  x86-64 exit
    "0f05"        # syscall
)


def int80_probe(path: Path) -> Path:
    """A static ELF64 executable: one header, one loadable segment, CODE."""
    base, ehsize, phsize = 0x400000, 64, 56
    entry = base + ehsize + phsize
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack(
        "<HHIQQQIHHHHHH", 2, 0x3E, 1, entry, ehsize, 0, 0, ehsize, phsize, 1, 0, 0, 0)
    size = ehsize + phsize + len(CODE)
    segment = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    path.write_bytes(header + segment + CODE)
    path.chmod(0o755)
    return path


@pytest.fixture
def rt(sandbox: Any, tmp_path: Path) -> RuncRuntime:
    root = tmp_path / "profiles"
    root.mkdir()
    shutil.copy(seccomp.DEFAULT_PATH, root / "with-32bit.json")
    return RuncRuntime(state_dir=sandbox.state_dir, runc_root=sandbox.runc_root,
                       cgroup_parent=sandbox.cgroup_parent, timeout=10,
                       seccomp_root=str(root))


async def run_probe(rt: RuncRuntime, rootfs: Path, probe_dir: Path, name: str,
                    profile: dict[str, str] | None) -> tuple[int | None, int | None]:
    extra: dict[str, Any] = {} if profile is None else {"seccompProfile": profile}
    mounts = [{"type": "bind", "source": str(probe_dir), "destination": "/probe",
               "readOnly": True}]
    # `sleep` first, so that the container is running when start returns
    await up(rt, manifest(name, rootfs, "/bin/sh", "-c", "sleep 0.1; exec /probe/int80",
                          mounts=mounts, **extra))
    with anyio.fail_after(10):
        status = await rt.wait_exit(f"{name}.1")
    return status.code, status.signal


async def test_32bit_syscalls_fail_by_default_and_work_when_asked(
    rt: RuncRuntime, busybox_rootfs: Path, tmp_path: Path
) -> None:
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    int80_probe(probe_dir / "int80")
    default = await run_probe(rt, busybox_rootfs, probe_dir, "dflt", None)
    named = await run_probe(rt, busybox_rootfs, probe_dir, "named",
                            {"type": "RuntimeDefault"})
    unconfined = await run_probe(rt, busybox_rootfs, probe_dir, "open",
                                 {"type": "Unconfined"})
    localhost = await run_probe(rt, busybox_rootfs, probe_dir, "local",
                                {"type": "Localhost", "localhostProfile": "with-32bit.json"})
    # Refused: an error returned (exit 1) or the process killed (SIGSYS); never a PID.
    assert default != (0, None) and default in ((1, None), (None, 31)), default
    assert named == default
    assert unconfined == (0, None)
    assert localhost == (0, None)
