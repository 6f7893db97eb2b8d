"""The container image stage of capture and restore.

Capture renders a Dockerfile from the manifest, builds it, and saves the image
under ``image/`` in the bundle beside the Dockerfile. Restore loads the saved
image (or rebuilds it from the Dockerfile), tags it and runs a smoke test.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goldmaster import container
from goldmaster.dockerfile import (
    MANIFEST_DIGEST_LABEL,
    PIP_SECRET_ID,
    STAGE_LABEL,
    WEIGHTS_PATH,
    manifest_digest,
    render_dockerfile,
)
from goldmaster.errors import EngineError, SecretFoundError
from goldmaster.parts import Part, Section
from goldmaster.secrets import Finding, raise_for_findings, scan_text, scan_value

SECTION = "image"
DOCKERFILE_ARCNAME = "image/Dockerfile"
ARCHIVE_ARCNAME = "image/image.tar"
REPRODUCIBILITY_NOTE = (
    "image ids differ between builds because the engine records build times "
    "in the image config and in files that RUN steps write"
)


@dataclass(frozen=True)
class RestoredImage:
    """An image that restore put into the engine, and how to run it."""

    id: str
    tags: tuple[str, ...]
    origin: str
    """``loaded`` from the bundle's archive, or ``built`` from its Dockerfile."""
    smoke_test: dict[str, Any]
    run_command: str
    """A ``docker run`` line that mounts the restored weights when the image lacks them."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tags": list(self.tags),
            "origin": self.origin,
            "smoke_test": self.smoke_test,
            "run_command": self.run_command,
        }


def image_section(
    manifest: dict[str, Any],
    context: Path | Sequence[Part],
    workdir: Path,
    *,
    base_image: str | None = None,
    weights: bool = True,
    vendored: bool | None = None,
    tags: Sequence[str] = (),
    build: bool = True,
    required: bool = False,
    save: bool = True,
    network_mode: str | None = None,
) -> Section:
    """Build the model's image and return the manifest's image section.

    ``manifest`` contains the sections captured so far, and ``context`` the
    capture's parts or a folder in the bundle layout. ``vendored`` defaults
    to whether the environment section vendored its wheels. The saved
    archive is written to ``workdir``, which the caller removes after the
    bundle is written.

    The Dockerfile is always kept. With ``build`` off, or when the engine is
    unreachable or the build fails, the section records why and carries a
    notice, unless ``required`` is set: then the EngineError is raised.
    Without a captured Python environment nothing can be installed in an
    image, and the section carries no files.
    """
    if not manifest.get("environment"):
        reason = "the capture recorded no Python environment to install in an image"
        if required:
            raise EngineError(
                reason, hint="capture the environment, or pass --no-image"
            )
        skipped = {"built": False, "saved": False, "reason": reason}
        notices = [f"no container image built: {reason}"] if build else []
        return Section(SECTION, skipped, [], notices)
    if vendored is None:
        vendored = bool((manifest["environment"].get("wheels") or {}).get("vendored"))

    dockerfile = render_dockerfile(
        manifest, base_image=base_image, weights=weights, vendored=vendored
    )
    parts = [Part(DOCKERFILE_ARCNAME, data=dockerfile.encode())]
    data: dict[str, Any] = {
        "dockerfile": DOCKERFILE_ARCNAME,
        "base_image": {"ref": base_reference(dockerfile), "id": None, "digest": None},
        "weights": "included" if weights else "mounted",
        "weights_path": WEIGHTS_PATH,
        "vendored": vendored,
        "built": False,
        "saved": False,
    }
    if not build:
        data["reason"] = "the image build was turned off"
        return Section(SECTION, data, parts, [])

    try:
        built, archive = _build_and_save(
            manifest, context, dockerfile, workdir, tags, save, network_mode
        )
    except EngineError as exc:
        if required:
            raise
        reason = exc.message.splitlines()[0]
        data["reason"] = reason
        if isinstance(exc, container.ImageBuildError):
            data["build_output_tail"] = exc.output_tail
        notice = f"no container image built: {reason}; the bundle keeps the Dockerfile"
        return Section(SECTION, data, parts, [notice])

    data.update(built)
    if archive is not None:
        parts.append(Part(ARCHIVE_ARCNAME, source=archive))
    return Section(SECTION, data, parts, [])


def _build_and_save(
    manifest: dict[str, Any],
    context: Path | Sequence[Part],
    dockerfile: str,
    workdir: Path,
    tags: Sequence[str],
    save: bool,
    network_mode: str | None,
) -> tuple[dict[str, Any], Path | None]:
    """Build and optionally save the image; return its manifest data and archive."""
    client = container.connect()
    tags = list(tags) or [default_tag(manifest)]
    base = base_reference(dockerfile)
    if container.image_exists(base, client=client):
        # A base image that carries a credential fails before the build.
        check_image_credentials(base, client=client)
    info = container.build_image(
        context,
        dockerfile,
        tags=tags,
        secrets=_build_secrets(dockerfile),
        network_mode=network_mode,
        client=client,
    )
    data = _built_data(info, tags, client)
    data["base_image"] = _base_data(base, client)
    _remove_environment_stage(dockerfile, client)
    try:
        check_image_credentials(tags[0], client=client)
    except SecretFoundError:
        # Remove the built image, so that a later push cannot publish the credential.
        _untag(tags, client)
        raise

    archive = None
    if save:
        archive = workdir / "image.tar"
        container.save_image(tags[0], archive, client=client)
        data["saved"] = True
        data["archive"] = ARCHIVE_ARCNAME
    return data, archive


def _remove_environment_stage(dockerfile: str, client: Any) -> None:
    """Remove the first stage's image, which contains the wheels and stays untagged.

    Only this build's stage goes: the label carries the manifest digest.
    """
    match = re.search(
        rf'{re.escape(MANIFEST_DIGEST_LABEL)}="(sha256:[0-9a-f]+)"', dockerfile
    )
    if match is None:
        return
    labels = {STAGE_LABEL: "environment", MANIFEST_DIGEST_LABEL: match.group(1)}
    container.remove_untagged_images(labels, client=client)


def _built_data(
    info: container.ImageInfo, tags: Sequence[str], client: Any
) -> dict[str, Any]:
    return {
        "built": True,
        "id": info.id,
        "digest": info.digest,
        "tags": sorted(tags),
        "size": info.size,
        "labels": dict(sorted(info.labels.items())),
        "engine": container.engine_info(client),
        "reproducible": False,
        "reproducible_note": REPRODUCIBILITY_NOTE,
    }


def _base_data(base: str, client: Any) -> dict[str, Any]:
    try:
        info = container.image_info(base, client=client)
    except EngineError:
        return {"ref": base, "id": None, "digest": None}
    return {"ref": base, "id": info.id, "digest": info.digest}


def default_tag(manifest: Mapping[str, Any]) -> str:
    """Return ``localhost/NAME:VERSION`` with both parts made valid for a reference."""
    name = re.sub(r"[^a-z0-9._-]+", "-", str(manifest.get("name") or "model").lower())
    name = name.strip("._-") or "model"
    version = re.sub(r"[^A-Za-z0-9._-]+", "-", str(manifest.get("version") or "latest"))
    version = version.lstrip(".-")[:128] or "latest"
    return f"localhost/{name}:{version}"


def base_reference(dockerfile: str) -> str:
    """Return the image reference of the Dockerfile's first FROM line."""
    for line in dockerfile.splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            args = [word for word in words[1:] if not word.startswith("--")]
            if args:
                return args[0]
    raise EngineError("the Dockerfile has no FROM line")


# --- credentials -----------------------------------------------------------------

IMAGE_SECRET_HINT = (
    "rebuild the base image without it or pass another --base-image and "
    "capture again, or capture with --no-image"
)
_NOP_INSTRUCTION = re.compile(r"#\(nop\)\s+([A-Z]+)\b")


def check_image_credentials(image: str, *, client: Any = None) -> None:
    """Raise SecretFoundError when the image's history or config contains a token."""
    raise_for_findings(
        image_credential_findings(image, client=client), IMAGE_SECRET_HINT
    )


def image_credential_findings(image: str, *, client: Any = None) -> list[Finding]:
    """Return the token-like values in an image's history and config.

    The history entries, numbered from the oldest, have their command and
    comment scanned. Then every field of the config is scanned, such as Env,
    Labels, Cmd and Entrypoint.
    """
    # NOTE: layer contents are not scanned, so a credential file that the
    # base image contains, such as /root/.netrc, is not found.
    client = client or container.connect()
    history = container.image_history(image, client=client)
    found: list[Finding] = []
    for number, step in enumerate(history, start=1):
        where = (
            f"image {image} history, step {number} of {len(history)} from the oldest"
        )
        instruction = _history_instruction(step.created_by)
        found += scan_text(step.created_by, f"{where} ({instruction})")
        found += scan_text(step.comment, f"{where} (comment)")
    config = container.image_info(image, client=client).config
    found += scan_value(config, f"image {image} config")
    return found


def _history_instruction(created_by: str) -> str:
    """Return the Dockerfile instruction of a history entry, such as RUN or ENV.

    Podman 4.3 records ``/bin/sh -c #(nop) ENV ...`` for an instruction that
    runs nothing and the bare shell command for RUN. An entry that starts
    with an upper-case word, as BuildKit writes ``ENV A=1``, is taken to name
    its instruction.
    """
    nop = _NOP_INSTRUCTION.search(created_by)
    if nop is not None:
        return nop.group(1)
    words = created_by.split(maxsplit=1)
    if not words:
        return "no command"
    if words[0].isalpha() and words[0].isupper():
        return words[0]
    return "RUN"


def _untag(tags: Sequence[str], client: Any) -> None:
    """Remove each tag. The engine deletes the image with its last tag unless a
    container uses it."""
    for tag in tags:
        with contextlib.suppress(EngineError):
            container.remove_image(tag, force=False, client=client)


def _build_secrets(dockerfile: str) -> dict[str, bytes] | None:
    """Return the pip.conf build secret when a step of the Dockerfile mounts it."""
    if f"--mount=type=secret,id={PIP_SECRET_ID}" not in dockerfile:
        return None
    config = pip_config_from_environment(os.environ)
    if config is None:
        raise EngineError(
            "the recorded package index needs credentials and none were found",
            hint="set PIP_INDEX_URL (and PIP_EXTRA_INDEX_URL) with the credentials, "
            "or capture with --wheels",
        )
    return {PIP_SECRET_ID: config}


def pip_config_from_environment(environ: Mapping[str, str]) -> bytes | None:
    """Return a pip.conf with the index URLs that pip would use here, credentials kept.

    PIP_INDEX_URL and PIP_EXTRA_INDEX_URL win over pip's configuration files,
    which are read in pip's order of precedence: /etc/pip.conf, the user's
    files, the virtual environment's, then PIP_CONFIG_FILE. The result is
    only ever passed to the engine as a build secret.
    """
    index_url = environ.get("PIP_INDEX_URL")
    extra = environ.get("PIP_EXTRA_INDEX_URL", "").split()
    if not index_url:
        index_url, config_extra = _pip_config_files_indexes(environ)
        extra = extra or config_extra
    if not index_url and not extra:
        return None

    lines = ["[global]"]
    if index_url:
        lines.append(f"index-url = {index_url}")
    if extra:
        lines.append("extra-index-url =")
        lines.extend(f"    {url}" for url in extra)
    return ("\n".join(lines) + "\n").encode()


def _pip_config_files_indexes(
    environ: Mapping[str, str],
) -> tuple[str | None, list[str]]:
    home = Path(environ.get("HOME", "~")).expanduser()
    xdg = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    paths = [Path("/etc/pip.conf"), home / ".pip/pip.conf", xdg / "pip/pip.conf"]
    if environ.get("VIRTUAL_ENV"):
        paths.append(Path(environ["VIRTUAL_ENV"]) / "pip.conf")
    if environ.get("PIP_CONFIG_FILE"):
        paths.append(Path(environ["PIP_CONFIG_FILE"]))

    # Later files override earlier ones, as in pip's own loading order.
    parser = configparser.RawConfigParser()
    parser.read([path for path in paths if path.is_file()])
    index_url: str | None = None
    extra: list[str] = []
    for section in ("global", "install"):
        if parser.has_option(section, "index-url"):
            index_url = parser.get(section, "index-url").strip()
        if parser.has_option(section, "extra-index-url"):
            extra = parser.get(section, "extra-index-url").split()
    return index_url, extra


# --- restore -------------------------------------------------------------------------


def restore_image(
    dest: Path,
    manifest: dict[str, Any],
    *,
    tags: Sequence[str] = (),
    network_mode: str | None = None,
) -> RestoredImage:
    """Put the bundle's image into the engine, tag it and smoke-test it.

    ``dest`` is the extracted bundle. The saved archive is loaded when the
    bundle has one; otherwise the image is built from ``image/Dockerfile``,
    which needs its base image in the engine. Raises EngineError when
    neither is possible or when the smoke test fails.
    """
    section = manifest.get(SECTION) or {}
    client = container.connect()
    tags = list(tags) or list(section.get("tags") or []) or [default_tag(manifest)]

    archive = dest / ARCHIVE_ARCNAME
    if archive.is_file():
        image_id = container.load_image(archive, tags=tags, client=client)
        origin = "loaded"
    else:
        image_id = _rebuild(dest, manifest, tags, network_mode, client)
        origin = "built"

    result = container.smoke_test(
        tags[0], (), distributions=main_distributions(manifest), client=client
    )
    weights_dir = dest / "weights" if section.get("weights") == "mounted" else None
    return RestoredImage(
        id=image_id,
        tags=tuple(tags),
        origin=origin,
        smoke_test=result,
        run_command=container.docker_run_command(tags[0], weights_dir),
    )


def _rebuild(
    dest: Path,
    manifest: dict[str, Any],
    tags: Sequence[str],
    network_mode: str | None,
    client: Any,
) -> str:
    dockerfile_path = dest / DOCKERFILE_ARCNAME
    if not dockerfile_path.is_file():
        raise EngineError(
            f"the bundle has neither {ARCHIVE_ARCNAME} nor {DOCKERFILE_ARCNAME}",
            hint="capture again with an engine reachable",
        )
    dockerfile = dockerfile_path.read_text()
    base = base_reference(dockerfile)
    if not container.image_exists(base, client=client):
        raise EngineError(
            f"the bundle has no saved image, and its base image {base} is not in the engine",
            hint=f"pull or load {base}, then run restore --image again",
        )

    info = container.build_image(
        dest,
        dockerfile,
        tags=tags,
        secrets=_build_secrets(dockerfile),
        network_mode=network_mode,
        client=client,
    )
    _remove_environment_stage(dockerfile, client)
    return info.id


INSTALLER_DISTRIBUTIONS = frozenset({"pip", "setuptools", "wheel"})
"""Installers that ``python -m venv`` adds as requested, left out of the smoke test.

The model's code does not import them. Also, importing setuptools after pip
in one process fails in _distutils_hack with the pip 23.2 and setuptools 65.5
that Python 3.11's venv installs.
"""


def main_distributions(manifest: Mapping[str, Any]) -> list[str]:
    """Return the distributions that were installed on request, by name.

    These are the packages the model's code imports directly; their
    dependencies are imported through them. INSTALLER_DISTRIBUTIONS are
    left out.
    """
    environment = manifest.get("environment") or {}
    distributions = environment.get("distributions") or []
    names = []
    for item in distributions:
        if isinstance(item, dict) and item.get("requested") and item.get("name"):
            name = str(item["name"])
            if name.lower() not in INSTALLER_DISTRIBUTIONS:
                names.append(name)
    return sorted(set(names))


def find_bundle_image(dest: Path, manifest: dict[str, Any]) -> str:
    """Return the id of the bundle's image in the engine, loading it when needed.

    ``dest`` is the extracted bundle. The recorded id comes first, because
    its tag may name another image by now. When the engine lacks that id,
    the saved archive in ``dest`` is loaded. Without an archive, the image
    that ``restore --image`` built from the Dockerfile is found by its tag
    and accepted only when its manifest digest label matches this bundle.
    """
    section = manifest.get(SECTION) or {}
    client = container.connect()
    recorded = section.get("id")
    if recorded and container.image_exists(str(recorded), client=client):
        return str(recorded)
    tags = list(section.get("tags") or []) or [default_tag(manifest)]
    archive = dest / ARCHIVE_ARCNAME
    if archive.is_file():
        return container.load_image(archive, tags=tags, client=client)

    expected = manifest_digest(manifest)
    for tag in tags:
        if not container.image_exists(tag, client=client):
            continue
        info = container.image_info(tag, client=client)
        if info.labels.get(MANIFEST_DIGEST_LABEL) == expected:
            return info.id
    raise EngineError(
        f"the image of this bundle is not in the engine (tags {', '.join(tags)})",
        hint="run goldmaster restore --image to build it from the Dockerfile",
    )
