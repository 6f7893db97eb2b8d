"""Build, save, load and test container images through the Docker Engine API.

This is the only module that imports the Docker SDK. It works with Docker
Engine and with Podman's Docker-compatible API service. Long transfers (build
contexts, ``docker save`` archives) stream in chunks with no client timeout,
so images and weights of any size pass through bounded memory.
"""

from __future__ import annotations

import json
import os
import re
import secrets as secrets_module
import shlex
import tarfile
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from goldmaster.dockerfile import (
    VENV_PYTHON,
    WEIGHTS_PATH,
    copied_sources,
    render_dockerfile,
)
from goldmaster.errors import EngineError
from goldmaster.lazy import LazyModule
from goldmaster.ociref import is_loopback, parse_reference
from goldmaster.parts import Part

if TYPE_CHECKING:
    import docker
    import requests
else:
    # Imported on first use: capture and restore without an image never
    # reach the engine.
    docker = LazyModule("docker")
    requests = LazyModule("requests")


def json_stream(chunks: Iterator[bytes]) -> Iterator[Any]:
    """Decode the JSON messages of an engine's streamed response."""
    return docker.utils.json_stream.json_stream(chunks)  # type: ignore[no-any-return]

__all__ = [
    "HistoryStep",
    "ImageBuildError",
    "ImageInfo",
    "archive_image_id",
    "build_image",
    "connect",
    "context_parts",
    "context_tar_stream",
    "docker_host",
    "docker_run_command",
    "engine_address",
    "engine_info",
    "image_exists",
    "image_history",
    "image_info",
    "load_image",
    "pull_image",
    "push_image_archive",
    "remove_image",
    "remove_untagged_images",
    "render_dockerfile",
    "run_container",
    "run_in_image",
    "save_image",
    "smoke_test",
    "tag_image",
]

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
CHUNK_SIZE = 1 << 20
"""Bytes read or written per step when streaming contexts and archives."""

OUTPUT_TAIL_LINES = 20
_STEP_LINE = re.compile(r"^(STEP \d+/\d+: |Step \d+/\d+ : )")
_ENGINE_HINT = (
    "start Docker or Podman's API service (podman system service), "
    "set DOCKER_HOST to its socket, or run the command without --image"
)
_ENGINE_LOST_HINT = (
    "check that the engine is still running and restart it if it stopped "
    "(Docker's daemon, or podman system service), then run the command again, "
    "or run it without --image"
)


class ImageBuildError(EngineError):
    """An image build stopped at a Dockerfile step.

    ``step`` is the step line as the engine printed it (``STEP 3/5: RUN ...``
    for Podman, ``Step 3/5 : RUN ...`` for Docker) and ``output_tail`` the
    last lines of build output before the error.
    """

    def __init__(self, message: str, step: str | None, output_tail: list[str]) -> None:
        super().__init__(message, hint="fix the failing step, or pass --no-image")
        self.step = step
        self.output_tail = output_tail


@dataclass(frozen=True)
class ImageInfo:
    """An image as the engine reports it."""

    id: str
    tags: tuple[str, ...]
    size: int
    repo_digests: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    """The image config's ``Config`` object: Env, Labels, Cmd, Entrypoint and more."""

    @property
    def digest(self) -> str | None:
        """The manifest digest from the first repository digest, if any."""
        for repo_digest in self.repo_digests:
            if "@" in repo_digest:
                return repo_digest.split("@", 1)[1]
        return None


@dataclass(frozen=True)
class HistoryStep:
    """One entry of an image's history, as ``docker history`` shows it."""

    created_by: str
    """The instruction or command that made the entry, such as ``/bin/sh -c
    #(nop) ENV A=1`` as Podman 4.3 records an ENV instruction."""
    comment: str


# --- engine ---------------------------------------------------------------------


def docker_host() -> str:
    """Return the engine address that connect() uses: DOCKER_HOST or the default."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def connect(host: str | None = None, timeout: float | None = 60) -> docker.DockerClient:
    """Connect to the engine at ``host``, else DOCKER_HOST or the default socket.

    The API version is negotiated with the engine. ``timeout`` applies to
    short requests, while builds, saves, loads and container waits run
    without one. Raises EngineError when the engine is unreachable.
    """
    host = host or docker_host()
    environment = dict(os.environ, DOCKER_HOST=host)
    try:
        client = docker.from_env(
            version="auto", timeout=timeout, environment=environment
        )
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineError(
            f"container engine not reachable at {host}: {_reason(exc)}",
            hint=_ENGINE_HINT,
        ) from exc
    return client


def engine_address(client: docker.DockerClient) -> str:
    """Return the address of the engine that ``client`` connects to, as DOCKER_HOST
    would name it."""
    # The SDK keeps a Unix socket's path only on its connection adapter.
    adapter = getattr(client.api, "_custom_adapter", None)
    socket_path = getattr(adapter, "socket_path", None)
    if isinstance(socket_path, str) and socket_path:
        return f"unix://{socket_path}"
    return str(client.api.base_url)


def engine_info(client: docker.DockerClient | None = None) -> dict[str, Any]:
    """Describe the engine for the manifest: name, version, API version, platform."""
    client = client or connect()
    try:
        version = client.version()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineError(f"reading the engine version failed: {_reason(exc)}") from exc
    return {
        "name": _engine_name(version),
        "version": str(version.get("Version", "")),
        "api_version": str(version.get("ApiVersion", "")),
        "os": str(version.get("Os", "")),
        "arch": str(version.get("Arch", "")),
    }


def _engine_name(version: Mapping[str, Any]) -> str:
    for component in version.get("Components") or []:
        if "podman" in str(component.get("Name", "")).lower():
            return "podman"
    return "docker"


# --- build context ------------------------------------------------------------------


def context_parts(root: Path, sources: Iterable[str]) -> list[Part]:
    """List the files under ``root`` that the build context needs.

    Only the given sources are walked (``code``, ``env/wheels``, ...), so
    trees that the Dockerfile does not copy are never read. Links to files
    inside ``root`` are followed. A link out of ``root`` or to a folder
    raises EngineError, because its content would be missing from the image.
    """
    root = root.resolve()
    parts: list[Part] = []
    for source in sorted(set(sources)):
        path = root / source
        if not path.exists():
            raise EngineError(
                f"build context is missing {source!r} under {root}",
                hint="restore or capture it first, or render the Dockerfile without it",
            )
        if path.is_dir():
            parts.extend(_walk_parts(root, path))
        else:
            parts.append(_file_part(root, path))
    return parts


def _walk_parts(root: Path, folder: Path) -> Iterator[Part]:
    for current, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for dirname in dirnames:
            if (Path(current) / dirname).is_symlink():
                raise EngineError(
                    f"build context folder {Path(current) / dirname} is a symbolic link",
                    hint="replace the link with the folder it points to",
                )
        for filename in sorted(filenames):
            yield _file_part(root, Path(current) / filename)


def _file_part(root: Path, path: Path) -> Part:
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise EngineError(f"build context file {path} links outside {root}")
    mode = 0o755 if os.access(resolved, os.X_OK) else 0o644
    return Part(path.relative_to(root).as_posix(), source=resolved, mode=mode)


def _select_parts(parts: Sequence[Part], sources: Iterable[str]) -> list[Part]:
    wanted = sorted(set(sources))
    selected = [
        part
        for part in parts
        if any(
            part.arcname == src or part.arcname.startswith(src + "/") for src in wanted
        )
    ]
    for src in wanted:
        if not any(
            p.arcname == src or p.arcname.startswith(src + "/") for p in selected
        ):
            raise EngineError(
                f"build context is missing {src!r}",
                hint="capture it too, or render the Dockerfile without it",
            )
    return selected


def context_tar_stream(
    parts: Sequence[Part], extra: Mapping[str, bytes]
) -> Iterator[bytes]:
    """Yield a tar archive of ``parts`` and the ``extra`` in-memory files.

    File contents are read in CHUNK_SIZE pieces while the engine receives
    them. Owners, times and directory entries are fixed, so the same inputs
    give the same context. A file whose size changes while it is read raises
    EngineError.
    """
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    members = {part.arcname: part for part in parts}
    for name in extra:
        members[name] = Part(name, data=extra[name], mode=0o600)

    for directory in sorted(_parent_folders(members)):
        yield _header(directory, tarfile.DIRTYPE, 0, 0o755, mtime)
    for name in sorted(members):
        yield from _member_blocks(members[name], mtime)
    yield b"\0" * (tarfile.BLOCKSIZE * 2)


def _parent_folders(names: Iterable[str]) -> set[str]:
    folders: set[str] = set()
    for name in names:
        parts = name.split("/")[:-1]
        for index in range(1, len(parts) + 1):
            folders.add("/".join(parts[:index]))
    return folders


def _header(name: str, kind: bytes, size: int, mode: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = mode
    info.mtime = mtime
    return info.tobuf(tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")


def _member_blocks(part: Part, mtime: int) -> Iterator[bytes]:
    if part.data is not None:
        yield _header(part.arcname, tarfile.REGTYPE, len(part.data), part.mode, mtime)
        yield part.data
        yield _padding(len(part.data))
        return

    assert part.source is not None
    with open(part.source, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        yield _header(part.arcname, tarfile.REGTYPE, size, part.mode, mtime)
        remaining = size
        while remaining:
            chunk = handle.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                raise EngineError(
                    f"{part.source} shrank while the build context was sent"
                )
            remaining -= len(chunk)
            yield chunk
        if handle.read(1):
            raise EngineError(f"{part.source} grew while the build context was sent")
    yield _padding(size)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


# --- build ----------------------------------------------------------------------


def build_image(
    context: Path | Sequence[Part],
    dockerfile: str,
    *,
    tags: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    buildargs: Mapping[str, str] | None = None,
    secrets: Mapping[str, bytes] | None = None,
    network_mode: str | None = None,
    client: docker.DockerClient | None = None,
) -> ImageInfo:
    """Build an image from ``dockerfile`` and return it as the engine reports it.

    ``context`` is a folder in the bundle layout or the capture's parts;
    only the paths that the Dockerfile's COPY and ADD read are sent.
    ``secrets`` maps build-secret ids to contents for ``RUN
    --mount=type=secret``; Podman mounts them for one step and keeps them out
    of every layer. Raises ImageBuildError with the failing step and the last
    output lines, or EngineError when the engine rejects the request.
    """
    client = client or connect()
    sources = copied_sources(dockerfile)
    if isinstance(context, Path):
        parts = context_parts(context, sources)
    else:
        parts = _select_parts(context, sources)

    extra = {"Dockerfile": dockerfile.encode()}
    params: dict[str, Any] = {
        "t": list(tags),
        "dockerfile": "Dockerfile",
        "rm": True,
        "forcerm": True,
    }
    if labels:
        params["labels"] = json.dumps(dict(labels))
    if buildargs:
        params["buildargs"] = json.dumps(dict(buildargs))
    if network_mode:
        params["networkmode"] = network_mode
    if secrets:
        _require_secret_support(client)
        params["secrets"] = json.dumps(_add_secret_files(secrets, extra))

    image_id = _run_build(client, context_tar_stream(parts, extra), params)
    return image_info(image_id, client=client)


def _require_secret_support(client: docker.DockerClient) -> None:
    if engine_info(client)["name"] != "podman":
        raise EngineError(
            "this build needs index credentials as build secrets, which Docker "
            "Engine accepts only through BuildKit sessions that the Docker SDK "
            "does not support",
            hint="vendor the wheels (no credentials needed) or build with Podman",
        )


def _add_secret_files(
    secrets: Mapping[str, bytes], extra: dict[str, bytes]
) -> list[str]:
    """Add each secret to the context under a random name and return the options.

    Podman moves these files out of the build context before the first
    step, so COPY cannot pick them up, and mounts them only into the RUN
    steps that request them.
    """
    options = []
    for secret_id, content in sorted(secrets.items()):
        name = f".goldmaster-secret-{secrets_module.token_hex(8)}"
        extra[name] = content
        options.append(f"id={secret_id},src={name}")
    return options


def _run_build(
    client: docker.DockerClient, context: Iterator[bytes], params: dict[str, Any]
) -> str:
    api = client.api
    try:
        response = api.post(
            api._url("/build"),
            params=params,
            data=context,
            headers={"Content-Type": "application/x-tar"},
            stream=True,
            timeout=None,
        )
        if response.status_code >= 400:
            detail = response.text.strip() or "no details in the response"
            raise EngineError(
                f"the engine rejected the build (HTTP {response.status_code}): {detail}",
                hint="check that every tag is a valid image reference",
            )
        return _follow_build_output(response, params["t"])
    except requests.RequestException as exc:
        # The engine stopped, or closed the connection, while it received
        # the context or streamed the build output.
        raise EngineError(
            f"image build failed: lost the connection to the container engine at "
            f"{engine_address(client)} ({_reason(exc)})",
            hint=_ENGINE_LOST_HINT,
        ) from exc


def _follow_build_output(response: requests.Response, tags: list[str]) -> str:
    """Read the build's JSON messages and return the image id.

    The id comes from the engine's ``aux`` message, or else from inspecting
    the first tag; the text output is kept only to explain a failure.
    """
    step: str | None = None
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    image_id: str | None = None
    for message in json_stream(response.iter_content(chunk_size=None)):
        if not isinstance(message, dict):
            continue
        for line in str(message.get("stream", "")).splitlines():
            if _STEP_LINE.match(line):
                step = line.strip()
            if line.strip():
                tail.append(line.rstrip())
        aux = message.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            image_id = str(aux["ID"])
        if message.get("error") or message.get("errorDetail"):
            _raise_build_error(message, step, list(tail))

    if image_id is None and tags:
        image_id = tags[0]
    if image_id is None:
        raise EngineError(
            "the engine reported no image id for the build",
            hint="pass a tag so that the image can be found by name",
        )
    return image_id


def _raise_build_error(
    message: dict[str, Any], step: str | None, tail: list[str]
) -> None:
    detail = message.get("errorDetail") or {}
    error = str(
        message.get("error") or detail.get("message") or "unknown error"
    ).strip()
    where = f"at {step}" if step else "before the first step"
    text = f"image build failed {where}: {error}"
    if tail:
        text += "\nlast output lines:\n" + "\n".join("  " + line for line in tail)
    raise ImageBuildError(text, step, tail)


# --- inspect, tag, remove --------------------------------------------------------


def image_info(image: str, *, client: docker.DockerClient | None = None) -> ImageInfo:
    """Inspect an image by id or reference. Raises EngineError when it is missing."""
    client = client or connect()
    try:
        attrs = client.api.inspect_image(image)
    except docker.errors.NotFound as exc:
        raise EngineError(f"image {image} not found in the engine") from exc
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineError(f"inspecting image {image} failed: {_reason(exc)}") from exc
    config = attrs.get("Config") or {}
    return ImageInfo(
        id=str(attrs["Id"]),
        tags=tuple(sorted(attrs.get("RepoTags") or ())),
        size=int(attrs.get("Size") or 0),
        repo_digests=tuple(sorted(attrs.get("RepoDigests") or ())),
        labels=dict(config.get("Labels") or {}),
        config=dict(config),
    )


def image_history(
    image: str, *, client: docker.DockerClient | None = None
) -> list[HistoryStep]:
    """Return the entries of an image's history, oldest first.

    The engine lists them newest first, as ``docker history`` prints them.
    Raises EngineError when the image is missing.
    """
    client = client or connect()
    try:
        entries = client.api.history(image)
    except docker.errors.NotFound as exc:
        raise EngineError(f"image {image} not found in the engine") from exc
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineError(
            f"reading the history of image {image} failed: {_reason(exc)}"
        ) from exc
    return [
        HistoryStep(
            created_by=str(entry.get("CreatedBy") or ""),
            comment=str(entry.get("Comment") or ""),
        )
        for entry in reversed(entries or [])
    ]


def image_exists(image: str, *, client: docker.DockerClient | None = None) -> bool:
    """Tell whether the engine has an image by this id or reference."""
    try:
        image_info(image, client=client)
    except EngineError:
        return False
    return True


def tag_image(
    image: str, tags: Iterable[str], *, client: docker.DockerClient | None = None
) -> None:
    """Add each ``REPOSITORY:TAG`` reference in ``tags`` to an image."""
    client = client or connect()
    for reference in tags:
        repository, tag = _split_reference(reference)
        try:
            client.api.tag(image, repository, tag)
        except docker.errors.DockerException as exc:
            raise EngineError(
                f"tagging {image} as {reference} failed: {_reason(exc)}"
            ) from exc


def remove_image(
    image: str, *, force: bool = True, client: docker.DockerClient | None = None
) -> None:
    """Remove an image and its tags from the engine; a missing image is no error."""
    client = client or connect()
    try:
        client.api.remove_image(image, force=force)
    except docker.errors.NotFound:
        return
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineError(f"removing image {image} failed: {_reason(exc)}") from exc


def remove_untagged_images(
    labels: Mapping[str, str], *, client: docker.DockerClient | None = None
) -> int:
    """Remove the untagged images that carry all of ``labels``; return how many.

    Images still in use by a container or another image are left in place.
    """
    client = client or connect()
    # Podman 4.3 returns nothing for a filter with two labels, so the engine
    # filters by one and the rest is checked here.
    first = next(iter(sorted(labels.items())))
    try:
        images = client.api.images(filters={"label": f"{first[0]}={first[1]}"})
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineError(f"listing images failed: {_reason(exc)}") from exc

    removed = 0
    for image in images:
        image_labels = image.get("Labels") or {}
        tagged = [tag for tag in image.get("RepoTags") or [] if tag != "<none>:<none>"]
        if tagged or any(image_labels.get(k) != v for k, v in labels.items()):
            continue
        try:
            client.api.remove_image(image["Id"])
        except docker.errors.APIError:
            # In use by a container, or by a build that runs now.
            continue
        except requests.RequestException as exc:
            raise EngineError(
                f"removing image {image['Id']} failed: {_reason(exc)}"
            ) from exc
        removed += 1
    return removed


def _split_reference(reference: str) -> tuple[str, str]:
    """Split ``host:port/name:tag`` into repository and tag; the tag defaults to latest."""
    name, _, tag = reference.rpartition(":")
    if name and "/" not in tag:
        return name, tag
    return reference, "latest"


# --- save and load --------------------------------------------------------------


def save_image(
    image: str, dest: Path, *, client: docker.DockerClient | None = None
) -> int:
    """Write an image in ``docker save`` format to ``dest`` and return its size.

    The archive streams to disk in CHUNK_SIZE pieces with no client timeout,
    through a temporary file beside ``dest`` that replaces it only when
    complete. Save by tag to keep the tag in the archive.
    """
    client = client or connect()
    api = client.api
    partial = dest.with_name(dest.name + ".partial")
    try:
        response = api.get(
            api._url("/images/{0}/get", image), stream=True, timeout=None
        )
        if response.status_code >= 400:
            raise EngineError(
                f"saving image {image} failed (HTTP {response.status_code}): "
                f"{response.text.strip()}"
            )
        size = _write_stream(response, partial)
        os.replace(partial, dest)
    except requests.RequestException as exc:
        partial.unlink(missing_ok=True)
        raise EngineError(f"saving image {image} failed: {_reason(exc)}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return size


def _write_stream(response: requests.Response, path: Path) -> int:
    size = 0
    with open(path, "wb") as handle:
        for chunk in response.iter_content(chunk_size=CHUNK_SIZE):
            handle.write(chunk)
            size += len(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    return size


def load_image(
    path: Path, *, tags: Sequence[str] = (), client: docker.DockerClient | None = None
) -> str:
    """Load a ``docker save`` archive into the engine, tag it and return the image id.

    The id is the config digest named in the archive's manifest.json, and
    the engine is asked to confirm it after the load. The archive streams
    from disk with no client timeout.
    """
    client = client or connect()
    image_id = archive_image_id(path)
    api = client.api
    try:
        with open(path, "rb") as handle:
            response = api.post(
                api._url("/images/load"),
                data=_read_chunks(handle),
                headers={"Content-Type": "application/x-tar"},
                params={"quiet": True},
                stream=True,
                timeout=None,
            )
            _check_load_output(response, path)
    except requests.RequestException as exc:
        raise EngineError(f"loading {path} failed: {_reason(exc)}") from exc

    image_info(image_id, client=client)
    tag_image(image_id, tags, client=client)
    return image_id


def _read_chunks(handle: Any) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK_SIZE):
        yield chunk


def _check_load_output(response: requests.Response, path: Path) -> None:
    if response.status_code >= 400:
        raise EngineError(
            f"loading {path} failed (HTTP {response.status_code}): {response.text.strip()}"
        )
    for message in json_stream(response.iter_content(chunk_size=None)):
        if isinstance(message, dict) and message.get("error"):
            raise EngineError(f"loading {path} failed: {str(message['error']).strip()}")


def archive_image_id(path: Path) -> str:
    """Return the id of the image in a ``docker save`` archive.

    The id is the sha256 of the image config, which manifest.json names as
    ``<hex>.json`` (Podman, Docker before 25) or ``blobs/sha256/<hex>``.
    """
    try:
        with tarfile.open(path, "r:") as archive:
            member = archive.extractfile("manifest.json")
            if member is None:
                raise KeyError("manifest.json")
            manifest = json.load(member)
    except (OSError, KeyError, tarfile.TarError, json.JSONDecodeError) as exc:
        raise EngineError(
            f"{path} is not a docker save archive: {_reason(exc)}",
            hint="check the bundle with goldmaster verify",
        ) from exc
    config = str(manifest[0]["Config"])
    digest = Path(config).name.removesuffix(".json")
    return f"sha256:{digest}"


# --- push and pull ----------------------------------------------------------------


_PUSHED_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
_PLAIN_HTTP_MARKER = "server gave HTTP response to HTTPS client"
_AUTH_MARKERS = ("unauthorized", "authentication required", "denied")


def push_image_archive(
    archive: Path,
    reference: str,
    *,
    insecure: bool = False,
    credentials: Mapping[str, str] | None = None,
    client: docker.DockerClient | None = None,
) -> str | None:
    """Push the image of a ``docker save`` archive to ``reference`` and return
    the manifest digest that the engine reports, or None when it reports none.

    The archive is loaded only when the engine lacks its image, and the image
    keeps the tag ``reference`` afterwards. ``credentials`` (``username`` and
    ``password``) go to the engine with the request. Without them the Docker
    config file's entry for the registry is sent when there is one. TLS
    verification is turned off only with ``insecure`` for a loopback registry.
    Other registries follow the engine's own configuration.
    """
    client = client or connect()
    image_id = archive_image_id(archive)
    if not image_exists(image_id, client=client):
        load_image(archive, client=client)
    tag_image(image_id, [reference], client=client)

    parsed = parse_reference(reference)
    params = {"tag": parsed.tag or "latest"}
    if insecure and is_loopback(parsed.registry):
        # Podman reads tlsVerify; Docker Engine ignores it and reaches
        # loopback registries over plain HTTP by default.
        params["tlsVerify"] = "false"
    api = client.api
    try:
        response = api.post(
            api._url("/images/{0}/push", parsed.repository_name),
            params=params,
            headers=_auth_header(client, parsed.registry, credentials),
            stream=True,
            timeout=None,
        )
        return _follow_push_output(response, reference)
    except requests.RequestException as exc:
        raise EngineError(f"pushing {reference} failed: {_reason(exc)}") from exc


def pull_image(
    reference: str,
    *,
    insecure: bool = False,
    credentials: Mapping[str, str] | None = None,
    client: docker.DockerClient | None = None,
) -> ImageInfo:
    """Pull ``reference`` through the engine and return the image it stored.

    Credentials and TLS verification are handled as in push_image_archive.
    """
    client = client or connect()
    parsed = parse_reference(reference)
    tls_off = insecure and is_loopback(parsed.registry)
    headers = _auth_header(client, parsed.registry, credentials)
    podman_api = _podman_api_version(client)
    api = client.api
    try:
        if podman_api is not None:
            # Podman 4.3's Docker-compatible pull ignores tlsVerify, so the
            # request goes to its own API on the same socket.
            url = f"{api.base_url}/v{podman_api}/libpod/images/pull"
            params = {"reference": reference}
        else:
            url = api._url("/images/create")
            params = {
                "fromImage": parsed.repository_name,
                "tag": parsed.digest or parsed.tag or "latest",
            }
        if tls_off:
            params["tlsVerify"] = "false"
        response = api.post(
            url, params=params, headers=headers, stream=True, timeout=None
        )
        _follow_pull_output(response, reference)
    except requests.RequestException as exc:
        raise EngineError(f"pulling {reference} failed: {_reason(exc)}") from exc
    return image_info(reference, client=client)


def _podman_api_version(client: docker.DockerClient) -> str | None:
    """Return the version of Podman's own API, or None for Docker Engine."""
    try:
        version = client.version()
    except docker.errors.DockerException as exc:
        raise EngineError(f"reading the engine version failed: {_reason(exc)}") from exc
    for component in version.get("Components") or []:
        if "podman" in str(component.get("Name", "")).lower():
            details = component.get("Details") or {}
            return str(details.get("APIVersion") or component.get("Version"))
    return None


def _auth_header(
    client: docker.DockerClient,
    registry: str,
    credentials: Mapping[str, str] | None,
) -> dict[str, str]:
    """Return the X-Registry-Auth header for ``registry``, or none when no
    credentials are given or configured."""
    if credentials:
        config = {
            "username": credentials["username"],
            "password": credentials["password"],
            "serveraddress": registry,
        }
        return {"X-Registry-Auth": docker.auth.encode_header(config).decode()}
    try:
        header = docker.auth.get_config_header(client.api, registry)
    except docker.errors.DockerException as exc:
        raise EngineError(
            f"reading the Docker credentials for {registry} failed: {_reason(exc)}",
            hint="fix the Docker config file or its credential helper",
        ) from exc
    return {"X-Registry-Auth": header.decode()} if header else {}


def _follow_push_output(response: requests.Response, reference: str) -> str | None:
    """Read the push's JSON messages and return the pushed manifest digest.

    Docker Engine reports the digest in an ``aux`` message, Podman only in
    the status line ``TAG: digest: sha256:... size: N``.
    """
    if response.status_code >= 400:
        _raise_transfer_error("pushing", reference, _response_detail(response))
    digest: str | None = None
    for message in json_stream(response.iter_content(chunk_size=None)):
        if not isinstance(message, dict):
            continue
        if message.get("error") or message.get("errorDetail"):
            _raise_transfer_error("pushing", reference, _message_error(message))
        aux = message.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = str(aux["Digest"])
        found = _PUSHED_DIGEST.search(str(message.get("status", "")))
        if found:
            digest = found.group(1)
    return digest


def _follow_pull_output(response: requests.Response, reference: str) -> None:
    if response.status_code >= 400:
        _raise_transfer_error("pulling", reference, _response_detail(response))
    for message in json_stream(response.iter_content(chunk_size=None)):
        if isinstance(message, dict) and (
            message.get("error") or message.get("errorDetail")
        ):
            _raise_transfer_error("pulling", reference, _message_error(message))


def _response_detail(response: requests.Response) -> str:
    text = response.text.strip() or "no details in the response"
    return f"HTTP {response.status_code}: {text}"


def _message_error(message: dict[str, Any]) -> str:
    detail = message.get("errorDetail") or {}
    return str(message.get("error") or detail.get("message") or "unknown error").strip()


def _raise_transfer_error(action: str, reference: str, detail: str) -> NoReturn:
    registry = reference.split("/", 1)[0]
    if _PLAIN_HTTP_MARKER in detail:
        hint = (
            "pass --insecure for a loopback registry on plain HTTP, or list "
            f"{registry} as an insecure registry in the engine's configuration"
        )
    elif any(marker in detail.lower() for marker in _AUTH_MARKERS):
        hint = f"check the credentials for {registry}"
    else:
        hint = f"check that {registry} is reachable from the engine"
    raise EngineError(f"{action} {reference} failed: {detail}", hint=hint)


# --- run ------------------------------------------------------------------------


SMOKE_TEST_SCRIPT = """\
import importlib, importlib.metadata as metadata, json, sys
modules = list(json.loads(sys.argv[1]))
packages = metadata.packages_distributions()
for dist in json.loads(sys.argv[2]):
    wanted = dist.lower().replace("_", "-")
    for module, dists in sorted(packages.items()):
        if module.isidentifier() and any(d.lower().replace("_", "-") == wanted for d in dists):
            modules.append(module)
for module in modules:
    importlib.import_module(module)
print(json.dumps({"python": sys.version.split()[0], "imported": sorted(set(modules))}))
"""
"""Imports each module, plus the top-level modules of each distribution."""


def smoke_test(
    image: str,
    python_imports: Sequence[str],
    *,
    distributions: Sequence[str] = (),
    python: str = VENV_PYTHON,
    client: docker.DockerClient | None = None,
) -> dict[str, Any]:
    """Import the main packages with the image's Python and return what ran.

    ``python_imports`` are module names; each name in ``distributions`` adds
    that distribution's top-level modules as the image's metadata lists them.
    Returns ``{"python": VERSION, "imported": [MODULE, ...]}``. Raises
    EngineError with the container's output when an import fails.
    """
    command = [
        python,
        "-c",
        SMOKE_TEST_SCRIPT,
        json.dumps(list(python_imports)),
        json.dumps(list(distributions)),
    ]
    exit_code, output = run_container(image, command, client=client)
    if exit_code != 0:
        raise EngineError(
            f"smoke test failed in image {image} (exit status {exit_code}): "
            f"{_last_lines(output)}",
            hint="the image lacks a package or the Python it was built for",
        )
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def run_container(
    image: str,
    command: Sequence[str],
    *,
    volumes: Mapping[str, str] | None = None,
    environment: Mapping[str, str] | None = None,
    client: docker.DockerClient | None = None,
) -> tuple[int, str]:
    """Run ``command`` in a new container and return its exit status and output.

    ``volumes`` maps host paths to container paths, mounted read-only. The
    container is removed afterwards, also when it fails.
    """
    client = client or connect()
    binds = [f"{host}:{target}:ro" for host, target in (volumes or {}).items()]
    try:
        container = client.containers.create(
            image, list(command), environment=dict(environment or {}), volumes=binds
        )
    except docker.errors.DockerException as exc:
        raise EngineError(
            f"creating a container from {image} failed: {_reason(exc)}"
        ) from exc
    try:
        container.start()
        status = client.api.wait(container.id, timeout=None)
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineError(f"running {image} failed: {_reason(exc)}") from exc
    finally:
        _remove_container(container)
    return int(status.get("StatusCode", 1)), output


KILL_WAIT_SECONDS = 30
"""Time the engine gets to stop a killed container before its output is read."""
BIND_MODES = frozenset({"ro", "rw"})


def run_in_image(
    image: str,
    command: Sequence[str],
    *,
    workdir: str | None = None,
    env: Mapping[str, str] | None = None,
    mounts: Sequence[str] = (),
    timeout: float | None = None,
    client: docker.DockerClient | None = None,
) -> tuple[int | None, bytes, bytes]:
    """Run ``command`` in a new container of ``image`` and collect its output.

    ``mounts`` are Docker bind strings, ``HOST:TARGET:MODE`` with MODE ``ro``
    or ``rw``. After ``timeout`` seconds the container is killed. Returns the
    exit status, or None when the command timed out, with stdout and stderr
    as written until then. The container is removed afterwards in every case.
    """
    client = client or connect()
    binds = [_check_bind(mount) for mount in mounts]
    try:
        container = client.containers.create(
            image,
            list(command),
            working_dir=workdir,
            environment=dict(env or {}),
            volumes=binds,
        )
    except docker.errors.ImageNotFound as exc:
        raise EngineError(
            f"image {image} not found in the engine",
            hint="restore the bundle with --image to load it",
        ) from exc
    except docker.errors.DockerException as exc:
        raise EngineError(
            f"creating a container from {image} failed: {_reason(exc)}"
        ) from exc
    try:
        container.start()
        status = _wait_for_exit(client, container.id, timeout)
        stdout = container.logs(stdout=True, stderr=False)
        stderr = container.logs(stdout=False, stderr=True)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineError(f"running {image} failed: {_reason(exc)}") from exc
    finally:
        _remove_container(container)
    return status, stdout, stderr


def _check_bind(mount: str) -> str:
    """Return ``mount`` when it is HOST:TARGET:MODE with an existing host path."""
    parts = mount.split(":")
    if (
        len(parts) != 3
        or not parts[0].startswith("/")
        or not parts[1].startswith("/")
        or parts[2] not in BIND_MODES
    ):
        raise EngineError(
            f"invalid bind mount {mount!r}",
            hint="use HOST:TARGET:MODE with absolute paths without ':' and MODE ro or rw",
        )
    if not Path(parts[0]).exists():
        # Docker would create a missing host path as an empty folder owned by root.
        raise EngineError(f"bind mount source {parts[0]} not found")
    return mount


def _wait_for_exit(
    client: docker.DockerClient, container_id: str, timeout: float | None
) -> int | None:
    """Wait for the container to exit and return its status, or kill it after
    ``timeout`` seconds and return None.

    The engine responds to the wait request only when the container exits,
    so a read timeout on it marks the time limit. On a Unix socket the SDK
    raises that timeout as a ConnectionError, so the clock tells it apart
    from a broken connection.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        result = client.api.wait(container_id, timeout=timeout)
        return int(result.get("StatusCode", 1))
    except requests.RequestException:
        if deadline is None or time.monotonic() < deadline:
            raise
    state = client.api.inspect_container(container_id).get("State") or {}
    if not state.get("Running"):
        # The command exited just as the time ran out.
        return int(state.get("ExitCode", 1))
    try:
        client.api.kill(container_id)
    except docker.errors.APIError:
        # The container exited between the inspect and the kill.
        pass
    client.api.wait(container_id, timeout=KILL_WAIT_SECONDS)
    return None


def _remove_container(container: Any) -> None:
    try:
        container.remove(force=True)
    except docker.errors.DockerException:
        # A container that is already gone needs no cleanup.
        return


def docker_run_command(image: str, weights_dir: Path | None, command: str = "") -> str:
    """Return a ``docker run`` line that mounts ``weights_dir`` where the image expects it."""
    words = ["docker", "run", "--rm"]
    if weights_dir is not None:
        words += ["-v", f"{weights_dir.resolve()}:{WEIGHTS_PATH}:ro"]
    words.append(image)
    line = shlex.join(words)
    return f"{line} {command}".rstrip()


# --- helpers ----------------------------------------------------------------------


# Connection failures as the SDK words them, mapped to short reasons; the
# first marker found wins.
_CONNECTION_REASONS = (
    ("No such file or directory", "socket not found"),
    ("Permission denied", "permission denied on the socket"),
    ("Connection refused", "connection refused"),
    ("Connection aborted", "connection aborted"),
    ("Connection broken", "connection broken"),
    ("Response ended prematurely", "the response ended early"),
    ("timed out", "timed out"),
)


def _reason(exc: BaseException) -> str:
    """Return a one-line description of an SDK or HTTP error."""
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        return str(exc.explanation).strip()
    text = str(exc).strip() or type(exc).__name__
    for marker, reason in _CONNECTION_REASONS:
        if marker in text:
            return reason
    return text.splitlines()[0]


def _last_lines(text: str, count: int = 10) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-count:])
