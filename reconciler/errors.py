"""The one error tree of reconciler.

Every layer raises only these; foreign errors (runc's exit status, OSError from the
host, pydantic's ValidationError) are translated where they enter, with ``raise ... from``.

    ReconcilerError
    ├── UsageError              bad command line or options (CLI exit 2)
    ├── StateDirLocked          another daemon owns this state dir
    ├── ImageInUse              ``image rm`` refused: containers use the image (not --force)
    └── RuntimeFailure          something on the host went wrong for one container
        ├── RuncError           runc (or conmon) said no; carries runc's own words
        │   └── ContainerNotFound
        ├── RuntimeTimeout      an external command did not finish in time (killed)
        ├── RootfsError         the root source is missing or unusable
        │   └── ImageError      an image cannot be used (bad reference, config or unpack)
        │       ├── ImageNotFound     not in the store (pull policy Never) or the source
        │       ├── ImagePullFailed   skopeo could not copy it (network, auth, registry)
        │       └── ImageCorrupt      the store's index, a manifest, a config or a blob is bad
        └── MountError          an overlay or live mount could not be made or removed
            └── LiveUpdateImpossible   only a recreate can make this change

Every ``RuntimeFailure`` is retried by the planner with backoff until the manifest
changes (a rootfs may be filled in later); ``LiveUpdateImpossible`` alone changes the plan
(a new instance instead of a change in place). Manifest problems are not exceptions:
the loader returns them as findings with file and line.
"""

from __future__ import annotations

import copy


class ReconcilerError(Exception):
    """Base of every error reconciler raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ReconcilerError):
    """The command line or an option is wrong."""


class StateDirLocked(ReconcilerError):
    """Another reconciler daemon holds the lock of this state dir."""


class RuntimeFailure(ReconcilerError):
    """An operation on one container failed on the host."""

    def __init__(self, message: str, *, container: str | None = None) -> None:
        if container is not None and not message.startswith(f'container "{container}"'):
            message = f'container "{container}": {message}'
        super().__init__(message)
        self.container = container

    def for_container(self, name: str, *, instead: bool = False) -> RuntimeFailure:
        """The same error (type and fields kept) naming ``name``, if it named none (or,
        ``instead``, in place of the instance id it named: what the user typed)."""
        if self.container == name or (self.container is not None and not instead):
            return self
        text = self.message
        prefix = f'container "{self.container}": '
        if self.container is not None and text.startswith(prefix):
            text = text[len(prefix):]
        named = copy.copy(self)
        named.container = name
        named.message = f'container "{name}": {text}'
        named.args = (named.message,)
        return named


class RuncError(RuntimeFailure):
    """runc or conmon exited non-zero; ``detail`` is runc's own message."""

    def __init__(
        self,
        detail: str,
        *,
        container: str | None = None,
        command: tuple[str, ...] = (),
        returncode: int | None = None,
    ) -> None:
        super().__init__(detail, container=container)
        self.detail = detail
        self.command = command
        self.returncode = returncode


class ContainerNotFound(RuncError):
    """runc does not know the container (in our runc root). Said as one fact, one
    wording, wherever it comes from: ``container "web" not found``."""

    GONE = "container does not exist"

    def __init__(self, detail: str, *, container: str | None = None,
                 command: tuple[str, ...] = (), returncode: int | None = None) -> None:
        super().__init__(detail, container=container, command=command,
                         returncode=returncode)
        self._say_not_found()

    def for_container(self, name: str, *, instead: bool = False) -> RuntimeFailure:
        named = super().for_container(name, instead=instead)
        if isinstance(named, ContainerNotFound) and named is not self:
            named._say_not_found()
        return named

    def _say_not_found(self) -> None:
        if self.detail == self.GONE and self.container is not None:
            self.message = f'container "{self.container}" not found'
            self.args = (self.message,)


class NetworkError(RuntimeFailure):
    """A network step failed: a CNI plugin's own words, a port taken, a subnet that
    collides with a route. Only the object that asked is affected."""


class RuntimeTimeout(RuntimeFailure):
    """An external command ran past its deadline and was killed."""


class RootfsError(RuntimeFailure):
    """The container's root source (rootfs dir, bundle, image) is missing or unusable."""


class MountError(RuntimeFailure):
    """An overlay root or a live mount could not be made or removed."""


class LiveUpdateImpossible(MountError):
    """A live change cannot be made here (old kernel, mountpoint under another mount...)."""


class ImageError(RootfsError):
    """An image cannot be used: a bad reference, an unusable config, a failed unpack."""


class ImageNotFound(ImageError):
    """The image is not in the local store (and may not be pulled), or not at its source."""


class ImagePullFailed(ImageError):
    """skopeo could not copy the image in: network, TLS, auth, or the source said no."""


class ImageCorrupt(ImageError):
    """The store's index.json, a manifest, a config or a layer blob is missing or wrong."""


class ImageInUse(ReconcilerError):
    """``image rm`` without ``--force`` on an image that containers (any state) still use."""

    def __init__(self, message: str, *, ref: str, containers: tuple[str, ...]) -> None:
        super().__init__(message)
        self.ref = ref
        self.containers = containers
