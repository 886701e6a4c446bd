"""``images.apply``: an image config as a manifest's defaults, by Kubernetes' and Docker's rules.

Pure tables, no tools: each case is a manifest spec, an image config, and what must come
out; the argv cases also go through ``oci.build_config``, the path the runtime takes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from reconciler import errors
from reconciler.images import apply
from reconciler.images.apply import ImageConfig
from reconciler.manifest import model
from reconciler.runtime import oci


def container(**spec: Any) -> model.Container:
    return model.Container.model_validate({
        "apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": "app"},
        "spec": {"image": "app:1", **spec},
    })


def final_argv(c: model.Container, cfg: ImageConfig) -> list[str]:
    effective, entrypoint = apply.apply_image_config(c, cfg)
    config = oci.build_config(effective, rootfs="/r", annotations={}, cgroups_path="/x",
                              seccomp_profile=None, host_rlimits={}, entrypoint=entrypoint)
    args: list[str] = config["process"]["args"]
    assert args == apply.argv(effective, entrypoint)  # the helper agrees with the runtime
    return args


EP = ("/entry", "-e")
CMD = ("serve", "--port=80")


@pytest.mark.parametrize(
    ("spec", "image", "expected"),
    [
        # Kubernetes: neither → Entrypoint + Cmd
        ({}, ImageConfig(entrypoint=EP, cmd=CMD), [*EP, *CMD]),
        # only args → Entrypoint + args
        ({"args": ["a", "b"]}, ImageConfig(entrypoint=EP, cmd=CMD), [*EP, "a", "b"]),
        # only command → command alone: the image's Cmd is NOT used
        ({"command": ["/bin/x"]}, ImageConfig(entrypoint=EP, cmd=CMD), ["/bin/x"]),
        # both → both
        ({"command": ["/bin/x"], "args": ["y"]}, ImageConfig(entrypoint=EP, cmd=CMD),
         ["/bin/x", "y"]),
        # no Entrypoint: Cmd alone, or args alone
        ({}, ImageConfig(cmd=("sh",)), ["sh"]),
        ({"args": ["echo", "hi"]}, ImageConfig(cmd=("sh",)), ["echo", "hi"]),
        # no Cmd: Entrypoint alone
        ({}, ImageConfig(entrypoint=EP), [*EP]),
        # args: [] counts as unset (containerd), so Cmd is used
        ({"args": []}, ImageConfig(entrypoint=EP, cmd=CMD), [*EP, *CMD]),
        # Docker's Entrypoint [""] is "no entrypoint"
        ({}, ImageConfig(entrypoint=("",), cmd=("sh",)), ["sh"]),
    ],
    ids=["neither", "args-only", "command-only", "both", "cmd-only-image", "args-no-ep",
         "ep-only-image", "empty-args", "empty-string-ep"],
)
def test_argv_follows_kubernetes(spec: dict[str, Any], image: ImageConfig,
                                 expected: list[str]) -> None:
    assert final_argv(container(**spec), image) == expected


def test_command_only_keeps_the_manifest_split() -> None:
    effective, entrypoint = apply.apply_image_config(
        container(command=["/bin/x"]), ImageConfig(entrypoint=EP, cmd=CMD))
    assert effective.spec.command == ["/bin/x"] and effective.spec.args is None
    assert entrypoint == list(EP)


def test_no_argv_at_all_is_a_clear_error() -> None:
    with pytest.raises(errors.ImageError, match="no Entrypoint or Cmd") as caught:
        apply.apply_image_config(container(), ImageConfig(env=("A=1",)))
    assert caught.value.container == "app"


def test_env_merges_with_the_manifest_winning_in_place() -> None:
    cfg = ImageConfig(cmd=("sh",), env=("PATH=/img/bin", "A=image", "B=image", "BROKEN"))
    effective, _ = apply.apply_image_config(
        container(env=[{"name": "B", "value": "manifest"}, {"name": "C", "value": "new"}]), cfg)
    assert [(e.name, e.value) for e in effective.spec.env] == [
        ("PATH", "/img/bin"), ("A", "image"), ("B", "manifest"), ("C", "new")]
    config = oci.build_config(effective, rootfs="/r", annotations={}, cgroups_path="/x",
                              seccomp_profile=None, host_rlimits={})
    env = config["process"]["env"]
    assert "PATH=/img/bin" in env and "B=manifest" in env and "B=image" not in env


@pytest.mark.parametrize(
    ("spec", "image_dir", "expected"),
    [({}, "/srv", "/srv"), ({"workingDir": "/mine"}, "/srv", "/mine"), ({}, "", None)],
)
def test_working_dir(spec: dict[str, Any], image_dir: str, expected: str | None) -> None:
    effective, _ = apply.apply_image_config(container(**spec),
                                            ImageConfig(cmd=("sh",), working_dir=image_dir))
    assert effective.spec.working_dir == expected


def test_relative_image_working_dir_is_refused() -> None:
    with pytest.raises(errors.ImageError, match="not an absolute path"):
        apply.apply_image_config(container(), ImageConfig(cmd=("sh",), working_dir="srv"))


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n# a comment\nwww-data:x:33:33::/var/www:/bin/false\n"
        "app:x:1000:1000::/home/app:/bin/sh\nbroken-line\n")
    (root / "etc" / "group").write_text(
        "root:x:0:\nwww-data:x:33:\napp:x:1000:\nusers:x:100:app,www-data\nwheel:x:10:app\n")
    return root


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("1000", (1000, 1000, [100, 10])),  # a uid in passwd: its gid and groups
        ("4242", (4242, 0, [])),  # a uid not in passwd: gid 0, as Docker
        ("4242:7", (4242, 7, [])),
        ("www-data", (33, 33, [100])),
        ("app:users", (1000, 100, [10])),  # the primary group is not repeated
        ("app:55", (1000, 55, [100, 10])),
        ("0", (0, 0, [])),
    ],
)
def test_image_user(rootfs: Path, user: str, expected: tuple[int, int, list[int]]) -> None:
    effective, _ = apply.apply_image_config(container(), ImageConfig(cmd=("sh",), user=user),
                                            rootfs=rootfs)
    assert effective.spec.user is not None
    got = (effective.spec.user.uid, effective.spec.user.gid, effective.spec.user.additional_gids)
    assert got == expected


def test_numeric_user_needs_no_rootfs() -> None:
    effective, _ = apply.apply_image_config(container(), ImageConfig(cmd=("sh",), user="5:6"))
    assert effective.spec.user is not None
    assert (effective.spec.user.uid, effective.spec.user.gid) == (5, 6)


@pytest.mark.parametrize(
    ("user", "rootfs_given", "message"),
    [
        ("nosuch", True, "user 'nosuch' is not in the image's /etc/passwd"),
        ("app:nosuch", True, "group 'nosuch' is not in the image's /etc/group"),
        ("app", False, "needs the unpacked rootfs"),
        ("1000:users", False, "needs the unpacked rootfs"),
    ],
)
def test_user_errors(rootfs: Path, user: str, rootfs_given: bool, message: str) -> None:
    with pytest.raises(errors.ImageError, match=message):
        apply.apply_image_config(container(), ImageConfig(cmd=("sh",), user=user),
                                 rootfs=rootfs if rootfs_given else None)


def test_manifest_user_wins_and_needs_no_lookup() -> None:
    effective, _ = apply.apply_image_config(
        container(user={"uid": 7, "gid": 8}), ImageConfig(cmd=("sh",), user="nosuch"))
    assert effective.spec.user is not None
    assert (effective.spec.user.uid, effective.spec.user.gid) == (7, 8)


def test_passwd_symlink_stays_inside_the_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "pw").write_text("inside:x:77:77::/:/bin/sh\n")
    # absolute and climbing links resolve against the rootfs, never the host's /etc
    os.symlink("/../../../data/pw", root / "etc" / "passwd")
    effective, _ = apply.apply_image_config(container(), ImageConfig(cmd=("sh",), user="inside"),
                                            rootfs=root)
    assert effective.spec.user is not None and effective.spec.user.uid == 77
    os.unlink(root / "etc" / "passwd")
    os.symlink("/etc/passwd", root / "etc" / "passwd")  # the host has root; the rootfs not
    with pytest.raises(errors.ImageError, match="not in the image's /etc/passwd"):
        apply.apply_image_config(container(), ImageConfig(cmd=("sh",), user="root"),
                                 rootfs=root)


def test_symlink_loop_is_a_missing_file(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc/passwd", root / "etc" / "passwd")
    with pytest.raises(errors.ImageError, match="not in the image's /etc/passwd"):
        apply.apply_image_config(container(), ImageConfig(cmd=("sh",), user="root"),
                                 rootfs=root)


@pytest.mark.parametrize(
    ("spec", "image_signal", "expected"),
    [
        ({}, "SIGQUIT", "SIGQUIT"),
        ({}, "quit", "SIGQUIT"),
        ({}, "3", "SIGQUIT"),
        ({}, "", "SIGTERM"),
        ({"stopSignal": "SIGINT"}, "SIGQUIT", "SIGINT"),
        # written in the manifest counts even when it equals the default
        ({"stopSignal": "SIGTERM"}, "SIGQUIT", "SIGTERM"),
    ],
)
def test_stop_signal(spec: dict[str, Any], image_signal: str, expected: str) -> None:
    effective, _ = apply.apply_image_config(
        container(**spec), ImageConfig(cmd=("sh",), stop_signal=image_signal))
    assert effective.spec.stop_signal == expected


@pytest.mark.parametrize("bad", ["SIGNOPE", "999"])
def test_bad_stop_signal(bad: str) -> None:
    with pytest.raises(errors.ImageError, match="is not a signal"):
        apply.apply_image_config(container(), ImageConfig(cmd=("sh",), stop_signal=bad))


def test_spec_hash_of_the_manifest_is_unchanged_by_applying() -> None:
    c = container(args=["x"])
    effective, _ = apply.apply_image_config(c, ImageConfig(cmd=("sh",), env=("A=1",)))
    assert model.spec_hash(c) != model.spec_hash(effective)  # so hash the manifest, not this
    assert model.spec_hash(c, extra={"image": "sha256:1"}) != model.spec_hash(
        c, extra={"image": "sha256:2"})
    assert c.spec.env == []  # the input is a frozen value, untouched


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"config": {"Entrypoint": ["/e"], "Cmd": None, "Env": ["A=1"], "WorkingDir": "/w",
                     "User": "1", "StopSignal": "SIGINT"}},
         ImageConfig(entrypoint=("/e",), env=("A=1",), working_dir="/w", user="1",
                     stop_signal="SIGINT")),
        ({}, ImageConfig()),
        ({"config": None}, ImageConfig()),
    ],
)
def test_config_from_json(doc: dict[str, Any], expected: ImageConfig) -> None:
    assert ImageConfig.from_json(doc) == expected


@pytest.mark.parametrize("doc", [{"config": []}, {"config": {"Cmd": "sh"}},
                                 {"config": {"User": 0}}, {"config": {"Env": [1]}}])
def test_config_from_json_rejects_wrong_types(doc: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ImageConfig.from_json(doc)
