"""Parse registry references such as ``registry.example.com:5000/team/model:1.0``.

goldmaster never falls back to a default registry: a reference must name its
registry host, so that a bundle is never sent to Docker Hub by accident.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

from .errors import UsageError
from .manifest import SUFFIX

# Grammar from the OCI distribution specification and Docker's reference
# package: lower-case path components, tags of at most 128 characters.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_HOST = (
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?"
)
_TAG = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}"
REFERENCE_PATTERN = re.compile(
    rf"^(?P<registry>{_HOST})/(?P<repository>{_REPOSITORY})"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
TAG_PATTERN = re.compile(rf"^{_TAG}$")
# An image reference as the container engine takes it, where the registry host
# may be left out: python:3.11-slim, team/model:1, 127.0.0.1:5000/model:1.
IMAGE_REFERENCE_PATTERN = re.compile(
    rf"^(?:{_HOST}/)?{_REPOSITORY}(?::{_TAG})?(?:@{_DIGEST})?$"
)

# Comma-separated host[:port] values that may be reached over plain HTTP
# besides loopback, like the Docker daemon's insecure-registries setting.
INSECURE_HOSTS_VARIABLE = "GOLDMASTER_INSECURE_REGISTRIES"


@dataclass(frozen=True)
class Reference:
    """A parsed ``REGISTRY/REPOSITORY[:TAG][@DIGEST]`` reference."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository_name(self) -> str:
        """The reference without tag or digest: ``REGISTRY/REPOSITORY``."""
        return f"{self.registry}/{self.repository}"

    @property
    def target(self) -> str:
        """The digest when there is one, else the tag, else ``latest``."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, check_tag(tag), None)

    def __str__(self) -> str:
        text = self.repository_name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str, *, require_target: bool = False) -> Reference:
    """Parse ``text`` or raise UsageError naming the expected form. With
    ``require_target``, the reference must name a tag or a digest."""
    match = REFERENCE_PATTERN.match(text)
    if match is None or not _is_registry_host(match.group("registry")):
        raise UsageError(
            f"invalid registry reference {text!r}",
            "use REGISTRY/REPOSITORY[:TAG], for example 127.0.0.1:5000/team/model:1.0, "
            "with a lower-case repository",
        )
    reference = Reference(
        registry=match.group("registry"),
        repository=match.group("repository"),
        tag=match.group("tag"),
        digest=match.group("digest"),
    )
    if require_target and reference.tag is None and reference.digest is None:
        raise UsageError(
            f"reference {text} names no tag or digest",
            "add :TAG or @sha256:DIGEST to the reference",
        )
    return reference


def _is_registry_host(host: str) -> bool:
    """Tell whether the first path component names a host, as Docker decides it:
    it contains a dot or a port, or it is ``localhost``."""
    return "." in host or ":" in host or host == "localhost"


def is_reference(text: str) -> bool:
    """Tell whether a command argument means a registry reference rather than a
    local path. An existing path and a name ending in the bundle suffix stay local."""
    if os.path.lexists(text) or text.endswith((SUFFIX, SUFFIX + ".sha256")):
        return False
    match = REFERENCE_PATTERN.match(text)
    return match is not None and _is_registry_host(match.group("registry"))


def check_image_reference(text: str, option: str) -> str:
    """Return ``text`` if the container engine can take it as an image
    reference, else raise UsageError naming ``option``."""
    if not IMAGE_REFERENCE_PATTERN.match(text):
        raise UsageError(
            f"invalid image reference for {option}: {text!r}",
            "use [REGISTRY/]REPOSITORY[:TAG] with a lower-case repository, "
            "for example localhost/team/model:1.0",
        )
    return text


def check_tag(tag: str) -> str:
    if not TAG_PATTERN.match(tag):
        raise UsageError(
            f"invalid tag {tag!r}",
            "use at most 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
        )
    return tag


def tag_for_version(version: str) -> str:
    """Turn a bundle version into a tag. Tags cannot contain '+', so it becomes
    '_', as Helm does for chart versions with build metadata."""
    return check_tag(version.replace("+", "_"))


def split_host(registry: str) -> str:
    """Return the host part of ``host[:port]``, without IPv6 brackets."""
    if registry.startswith("["):
        return registry[1 : registry.index("]")]
    return registry.rsplit(":", 1)[0] if ":" in registry else registry


def is_loopback(registry: str) -> bool:
    host = split_host(registry)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_insecure(reference: Reference, insecure: bool) -> None:
    """Allow plain HTTP only to loopback registries and to the hosts listed in
    GOLDMASTER_INSECURE_REGISTRIES."""
    if not insecure or is_loopback(reference.registry):
        return
    allowed = {
        item.strip() for item in os.environ.get(INSECURE_HOSTS_VARIABLE, "").split(",")
    }
    if reference.registry in allowed or split_host(reference.registry) in allowed:
        return
    raise UsageError(
        f"--insecure sends credentials and bundles over plain HTTP, and {reference.registry} "
        "is not a loopback address",
        f"use HTTPS, or list the host in {INSECURE_HOSTS_VARIABLE} to allow it",
    )
