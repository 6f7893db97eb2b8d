"""An OCI distribution client for one repository, built on the oras package.

oras supplies the HTTP session, the registry URLs, Docker config files and
credential helpers, bearer-token negotiation, blob and manifest uploads and
tag listing. This module adds what goldmaster needs on top: Basic
authentication, which the CNCF Distribution registry requests when it uses htpasswd,
resumable chunked uploads, downloads that check size and digest while they
stream, and errors that carry the registry's own message.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import oras.auth
import oras.container
import oras.provider
import requests

from .errors import GoldmasterError, RegistryError, UsageError, VerificationError
from .ociref import Reference, check_insecure, is_loopback
from .progress import Reporter

USERNAME_VARIABLE = "GOLDMASTER_REGISTRY_USERNAME"
PASSWORD_VARIABLE = "GOLDMASTER_REGISTRY_PASSWORD"

CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 300
# oras's own default chunk size for chunked uploads.
DEFAULT_CHUNK_SIZE = 16 << 20
# Failed chunks in a row before an upload gives up; waits double from 1 s.
UPLOAD_ATTEMPTS = 4
# Distribution rejects manifests larger than 4 MiB, so nothing larger is read.
MAX_MANIFEST_BYTES = 4 << 20
DOWNLOAD_CHUNK = 1 << 20

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPTED_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST)
DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")

ProgressFn = Callable[[int], None]

# oras logs through the standard logging module. A library must not print, so
# its records reach the user only through the Reporter attached below.
logging.getLogger("oras").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: the media type, digest and size of one blob."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def to_oci(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return data

    @classmethod
    def from_oci(cls, data: Any, where: str) -> Descriptor:
        """Read a descriptor from a manifest, or raise RegistryError naming ``where``."""
        if not isinstance(data, dict):
            raise RegistryError(f"{where} has an invalid descriptor")
        digest, size = data.get("digest"), data.get("size")
        media_type = data.get("mediaType")
        if not isinstance(digest, str) or not DIGEST_PATTERN.match(digest):
            raise RegistryError(
                f"{where} has a descriptor with digest {digest!r}",
                "goldmaster reads sha256 digests only",
            )
        if not isinstance(size, int) or size < 0 or not isinstance(media_type, str):
            raise RegistryError(
                f"{where} has a descriptor with an invalid size or media type"
            )
        annotations = data.get("annotations") or {}
        return cls(
            media_type, digest, size, {str(k): str(v) for k, v in annotations.items()}
        )


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _ChallengeAuth(oras.auth.TokenAuth):
    """Authentication backend for both Basic and Bearer challenges.

    oras's token backend turns every challenge into a token request, which
    fails against a registry that requests Basic credentials (Distribution
    with htpasswd). Here a Basic challenge gets the Basic credentials, and they
    are sent with every later request so that chunks are not sent twice.
    """

    def __init__(self) -> None:
        super().__init__()
        self.basic_scheme = False

    def get_auth_header(self) -> dict[str, str]:
        credentials = getattr(self, "_basic_auth", None)
        if self.basic_scheme and credentials:
            return {"Authorization": f"Basic {credentials}"}
        return super().get_auth_header()

    def authenticate_request(
        self, original: requests.Response, headers: dict, refresh: bool = False
    ) -> tuple[dict, bool]:
        challenge = original.headers.get("Www-Authenticate", "")
        if not challenge.lower().startswith("basic"):
            # A 401 with a token means the token lacks the requested scope, so
            # a new one is requested for the scope in the challenge.
            return super().authenticate_request(original, headers, refresh=True)
        credentials = getattr(self, "_basic_auth", None)
        if not credentials or self.basic_scheme:
            return headers, False
        self.basic_scheme = True
        return {**headers, "Authorization": f"Basic {credentials}"}, True


class _Transport(oras.provider.Registry):
    """oras's registry client with timeouts and without its retry decorator.

    oras retries any failed request up to five times, waiting up to 81 s
    between tries, and would resend an upload chunk blindly. goldmaster fails
    fast instead and resumes chunked uploads from the offset that the
    registry reports.
    """

    def do_request(  # type: ignore[override]
        self,
        url: str,
        method: str = "GET",
        data: Any = None,
        headers: dict | None = None,
        json: dict | None = None,
        stream: bool = False,
    ) -> requests.Response:
        headers = {**(headers or {}), **self.auth.get_auth_header()}
        response = self._send(method, url, data, headers, json, stream)
        if response.status_code != 401:
            return response
        headers, changed = self.auth.authenticate_request(response, headers)
        if not changed:
            return response
        response.close()
        return self._send(method, url, data, headers, json, stream)

    def _send(
        self, method: str, url: str, data: Any, headers: dict, body: Any, stream: bool
    ) -> requests.Response:
        return self.session.request(
            method,
            url,
            data=data,
            json=body,
            headers=headers,
            stream=stream,
            verify=self._tls_verify,
            timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
            allow_redirects=True,
        )


class _NoticeHandler(logging.Handler):
    """Passes oras's warnings, such as a missing credential helper, to the reporter."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__(logging.WARNING)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        self.reporter.notice(f"oras: {record.getMessage()}")


def registry_message(response: requests.Response) -> str:
    """Return the status and the registry's error codes and messages."""
    text = f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        parts = []
        for item in errors:
            if isinstance(item, dict):
                parts.append(
                    f"{item.get('code', 'UNKNOWN')}: {item.get('message', '')}".strip()
                )
        return f"{text} {'; '.join(parts)}"
    return f"{text} {response.reason or ''}".strip()


class RegistryClient:
    """Talks to one repository of one registry, with the caller's credentials."""

    def __init__(
        self,
        reference: Reference,
        insecure: bool = False,
        reporter: Reporter | None = None,
    ) -> None:
        check_insecure(reference, insecure)
        self.reference = reference
        self.insecure = insecure
        self.reporter = reporter or Reporter()
        self.base = f"{'http' if insecure else 'https'}://{reference.registry}"
        self.oras = _Transport(hostname=reference.registry, insecure=insecure)
        auth = _ChallengeAuth()
        auth.session = self.oras.session
        auth.prefix = "http" if insecure else "https"
        auth._tls_verify = True
        self.oras.auth = auth
        self.container = self.oras_container(reference.tag or "latest")
        self._handler = _NoticeHandler(self.reporter)
        logging.getLogger("oras").addHandler(self._handler)
        try:
            self.username = self._load_credentials()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        logging.getLogger("oras").removeHandler(self._handler)
        self.oras.session.close()

    def __enter__(self) -> RegistryClient:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- credentials and requests ------------------------------------------------

    def _load_credentials(self) -> str | None:
        """Load Docker config credentials, then let the environment override them."""
        configs = []
        docker_config = os.environ.get("DOCKER_CONFIG")
        if docker_config and Path(docker_config, "config.json").is_file():
            configs.append(str(Path(docker_config, "config.json")))
        try:
            self.oras.auth.load_configs(self.container, configs=configs or None)
        except (OSError, ValueError) as exc:
            raise RegistryError(
                f"cannot read the Docker config file: {exc}",
                "fix or remove ~/.docker/config.json, or set DOCKER_CONFIG",
            ) from exc
        username = os.environ.get(USERNAME_VARIABLE)
        password = os.environ.get(PASSWORD_VARIABLE)
        if bool(username) != bool(password):
            raise UsageError(
                f"only one of {USERNAME_VARIABLE} and {PASSWORD_VARIABLE} is set",
                "set both, or neither to use the Docker config file",
            )
        if username and password:
            self.oras.auth.set_basic_auth(username, password)
        return username

    def oras_container(self, tag: str) -> oras.container.Container:
        """Return oras's name object for a tag of this repository.

        oras's parser takes a first component without '.' or ':' (such as
        ``localhost``) for a namespace, so the parsed fields are set directly.
        """
        container = oras.container.Container(
            "placeholder", registry=self.reference.registry
        )
        container.namespace = None
        container.repository = self.reference.repository
        container.tag = tag
        container.digest = None
        return container

    def url(self, path: str) -> str:
        return f"{self.base}/v2/{self.reference.repository}/{path}"

    @contextlib.contextmanager
    def translate_errors(self, action: str) -> Iterator[None]:
        """Turn transport failures inside the block into RegistryError."""
        try:
            yield
        except GoldmasterError:
            raise
        except requests.exceptions.SSLError as exc:
            raise RegistryError(
                f"{action} failed: TLS error talking to {self.reference.registry}: {exc}",
                self._tls_hint(),
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise RegistryError(
                f"{action} failed: {self.reference.registry} did not answer in time",
                "check that the registry is up, then retry",
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise RegistryError(
                f"{action} failed: cannot connect to {self.base}: {_reason(exc)}",
                self._connect_hint(),
            ) from exc
        except (requests.exceptions.RequestException, ValueError) as exc:
            raise RegistryError(f"{action} failed: {exc}") from exc

    def _tls_hint(self) -> str:
        if is_loopback(self.reference.registry) and not self.insecure:
            return "for a loopback registry that serves plain HTTP, pass --insecure"
        return "check the registry's certificate and the system's CA certificates"

    def _connect_hint(self) -> str:
        if self.insecure:
            return "check that the registry is running and listening on that address"
        return (
            "check the address; for a loopback registry on plain HTTP, pass --insecure"
        )

    def request(
        self,
        method: str,
        url: str,
        action: str,
        ok: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request and raise RegistryError unless its status is in ``ok``."""
        with self.translate_errors(action):
            response = self.oras.do_request(url, method, **kwargs)
        if response.status_code not in ok:
            self.raise_for(response, action)
        return response

    def raise_for(self, response: requests.Response, action: str) -> None:
        message = registry_message(response)
        response.close()
        status = response.status_code
        if status == 401:
            raise RegistryError(f"{action} failed: {message}", self._credentials_hint())
        if status == 403:
            raise RegistryError(
                f"{action} failed: {message}",
                f"the account has no access to {self.reference.repository_name}",
            )
        if status == 404:
            raise RegistryError(
                f"{action} failed: {message}",
                f"check the repository, tag or digest in {self.reference}",
            )
        raise RegistryError(f"{action} failed: {message}")

    def _credentials_hint(self) -> str:
        if self.username:
            return (
                f"the registry rejected the credentials of {self.username!r}; "
                f"check {USERNAME_VARIABLE} and {PASSWORD_VARIABLE} or the Docker config file"
            )
        return (
            f"log in with `docker login {self.reference.registry}`, or set "
            f"{USERNAME_VARIABLE} and {PASSWORD_VARIABLE}"
        )

    # -- manifests and tags -------------------------------------------------------

    def get_manifest(self, target: str) -> tuple[dict[str, Any], str, bytes]:
        """Download a manifest by tag or digest; return it, its digest and its bytes.

        The digest is computed from the bytes and must match the registry's
        Docker-Content-Digest header and, for a digest reference, the digest requested.
        """
        action = f"reading the manifest of {self.reference.repository_name}:{target}"
        response = self.request(
            "GET",
            self.url(f"manifests/{target}"),
            action,
            headers={"Accept": ", ".join(ACCEPTED_MANIFESTS)},
            stream=True,
        )
        with response:
            raw = _read_limited(response, MAX_MANIFEST_BYTES, action)
        digest = sha256_digest(raw)
        served = response.headers.get("Docker-Content-Digest")
        if (served and served != digest) or (
            target.startswith("sha256:") and target != digest
        ):
            raise VerificationError(
                f"the manifest of {self.reference.repository_name}:{target} does not match "
                f"its digest: got {digest}",
                "the registry's copy is corrupt; push the bundle again",
            )
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise RegistryError(f"{action} failed: the manifest is not JSON") from exc
        if not isinstance(data, dict):
            raise RegistryError(f"{action} failed: the manifest is not a JSON object")
        return data, digest, raw

    def put_manifest(self, manifest: dict[str, Any], tag: str) -> str:
        """Upload ``manifest`` under ``tag`` with oras and return its digest."""
        container = self.oras_container(tag)
        action = f"tagging {self.reference.repository_name}:{tag}"
        with self.translate_errors(action):
            response = self.oras.upload_manifest(manifest, container)
        if response.status_code not in (200, 201):
            self.raise_for(response, action)
        return str(response.headers.get("Docker-Content-Digest", ""))

    def list_tags(self) -> list[str]:
        """Return every tag of the repository, following the registry's pagination."""
        action = f"listing the tags of {self.reference.repository_name}"
        response = self.request("GET", self.url("tags/list"), action, ok=(200, 404))
        if response.status_code == 404:
            self.raise_for(response, action)
        response.close()
        with self.translate_errors(action):
            return list(self.oras.get_tags(self.container))

    # -- blobs --------------------------------------------------------------------

    def blob_exists(self, digest: str, size: int) -> bool:
        response = self.request(
            "HEAD",
            self.url(f"blobs/{digest}"),
            f"checking for blob {digest} in {self.reference.repository_name}",
            ok=(200, 404),
        )
        length = response.headers.get("Content-Length")
        return response.status_code == 200 and (length is None or int(length) == size)

    def upload_small(self, path: Path, media_type: str) -> Descriptor:
        """Upload a small file in one request with oras, unless the blob exists."""
        data = path.read_bytes()
        descriptor = Descriptor(media_type, sha256_digest(data), len(data))
        action = f"uploading {path.name}"
        with self.translate_errors(action):
            response = self.oras.upload_blob(
                str(path), self.container, descriptor.to_oci()
            )
        if response.status_code not in (200, 201, 202):
            self.raise_for(response, action)
        return descriptor

    def upload_large(
        self,
        path: Path,
        media_type: str,
        *,
        expected_sha256: str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        progress: ProgressFn | None = None,
    ) -> Descriptor:
        """Upload a file in chunks, hashing it on the way, and return its descriptor.

        With ``expected_sha256`` (from the bundle's sidecar), the upload is
        cancelled unless the file hashes to it, and a blob that the registry
        already stores is not sent again.
        """
        size = path.stat().st_size
        if expected_sha256 and self.blob_exists(f"sha256:{expected_sha256}", size):
            actual = hash_file(path, progress)
            _check_expected(path, expected_sha256, actual)
            return Descriptor(media_type, f"sha256:{actual}", size)
        upload = ChunkedUpload(self, path, chunk_size, progress)
        digest = upload.run(expected_sha256)
        return Descriptor(media_type, digest, size)

    def download(
        self,
        descriptor: Descriptor,
        sink: BinaryIO,
        description: str,
        progress: ProgressFn | None = None,
    ) -> None:
        """Stream a blob into ``sink``; raise VerificationError unless it has
        exactly the size and digest its descriptor declares."""
        action = f"downloading {description}"
        response = self.request(
            "GET", self.url(f"blobs/{descriptor.digest}"), action, stream=True
        )
        digest = hashlib.sha256()
        count = 0
        with response, self.translate_errors(action):
            for chunk in response.iter_content(DOWNLOAD_CHUNK):
                count += len(chunk)
                if count > descriptor.size:
                    break
                digest.update(chunk)
                sink.write(chunk)
                if progress is not None:
                    progress(len(chunk))
        actual = "sha256:" + digest.hexdigest()
        if count != descriptor.size or actual != descriptor.digest:
            raise VerificationError(
                f"{description} from {self.reference} does not match its descriptor: expected "
                f"{descriptor.digest} ({descriptor.size} bytes), got "
                f"{actual if count <= descriptor.size else 'more data'} ({count} bytes)",
                "the registry's copy is corrupt or was changed; push the bundle again",
            )

    def read_small(self, descriptor: Descriptor, description: str, limit: int) -> bytes:
        """Download a blob of at most ``limit`` bytes into memory, checked."""
        if descriptor.size > limit:
            raise RegistryError(
                f"{description} in {self.reference} is {descriptor.size} bytes, more than the "
                f"{limit} bytes allowed"
            )
        buffer = io.BytesIO()
        self.download(descriptor, buffer, description)
        return buffer.getvalue()


class ChunkedUpload:
    """One blob upload in PATCH requests of ``chunk_size`` bytes.

    After a failed chunk it requests the upload status, which contains the
    count of bytes received, and resumes there. Distribution 2.8 cancels an upload whose offset does not
    match the session state, so when resuming fails the upload starts over
    in a new session. Any other failure cancels the upload session.
    """

    def __init__(
        self,
        client: RegistryClient,
        path: Path,
        chunk_size: int,
        progress: ProgressFn | None = None,
    ) -> None:
        if chunk_size < 1:
            raise UsageError(
                f"invalid chunk size {chunk_size}", "use a positive number of bytes"
            )
        self.client = client
        self.path = path
        self.size = path.stat().st_size
        self.chunk_size = chunk_size
        self.progress = progress or (lambda count: None)
        self.location = ""
        self.offset = 0
        self.hasher = hashlib.sha256()
        self.resumes = 0
        self.restarts = 0
        self.action = f"uploading {path.name}"

    def run(self, expected_sha256: str | None = None) -> str:
        """Upload the whole file and return its digest."""
        self.start()
        try:
            with open(self.path, "rb") as fh:
                self.send_all(fh)
                actual = self.hasher.hexdigest()
                if expected_sha256:
                    _check_expected(self.path, expected_sha256, actual)
                self.finish(actual)
        except BaseException:
            self.cancel()
            raise
        return f"sha256:{actual}"

    def start(self) -> None:
        response = self.client.request(
            "POST",
            self.client.url("blobs/uploads/"),
            self.action,
            ok=(202,),
            headers={"Content-Length": "0"},
        )
        self.location = self._location(response)
        self.offset = 0
        self.hasher = hashlib.sha256()

    def send_all(self, fh: BinaryIO) -> None:
        failures = 0
        while self.offset < self.size:
            fh.seek(self.offset)
            chunk = fh.read(min(self.chunk_size, self.size - self.offset))
            try:
                self.send_chunk(chunk)
            except _TransientUploadError as exc:
                failures += 1
                if failures >= UPLOAD_ATTEMPTS:
                    raise RegistryError(
                        f"{self.action} failed after {failures} tries: {exc}",
                        "check the registry and the network, then push again",
                    ) from exc
                time.sleep(2 ** (failures - 1))
                self.resume(fh)
                continue
            failures = 0

    def send_chunk(self, chunk: bytes) -> None:
        end = self.offset + len(chunk) - 1
        headers = {
            "Content-Range": f"{self.offset}-{end}",
            "Content-Length": str(len(chunk)),
            "Content-Type": "application/octet-stream",
        }
        try:
            response = self.client.oras.do_request(
                self.location, "PATCH", data=chunk, headers=headers
            )
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
        ) as exc:
            raise _TransientUploadError(_reason(exc)) from exc
        if response.status_code >= 500 or response.status_code == 416:
            raise _TransientUploadError(registry_message(response))
        if response.status_code != 202:
            self.client.raise_for(response, self.action)
        self.location = self._location(response)
        self.hasher.update(chunk)
        self.offset += len(chunk)
        self.progress(len(chunk))

    def resume(self, fh: BinaryIO) -> None:
        """Continue at the offset the registry reports, or start over."""
        try:
            response = self.client.oras.do_request(self.location, "GET")
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
            return  # still unreachable: the next chunk fails and counts as a try
        if response.status_code != 204:
            response.close()
            self.restarts += 1
            self.start()
            return
        self.location = self._location(response)
        self._hash_up_to(fh, _range_end(response.headers.get("Range")))
        self.resumes += 1

    def _hash_up_to(self, fh: BinaryIO, offset: int) -> None:
        """Bring the running digest up to ``offset``, the count of bytes the registry received."""
        if offset < self.offset:
            self.hasher = hashlib.sha256()
            self.offset = 0
        fh.seek(self.offset)
        while self.offset < offset:
            data = fh.read(min(DOWNLOAD_CHUNK, offset - self.offset))
            if not data:
                raise RegistryError(f"{self.path} shrank while it was uploaded")
            self.hasher.update(data)
            self.offset += len(data)
            self.progress(len(data))

    def finish(self, hex_digest: str) -> None:
        separator = "&" if "?" in self.location else "?"
        url = f"{self.location}{separator}digest=sha256:{hex_digest}"
        self.client.request(
            "PUT", url, self.action, ok=(201,), headers={"Content-Length": "0"}
        ).close()

    def cancel(self) -> None:
        """Delete the upload session so that the registry drops what it received."""
        if not self.location:
            return
        with contextlib.suppress(requests.exceptions.RequestException):
            self.client.oras.do_request(self.location, "DELETE").close()

    def _location(self, response: requests.Response) -> str:
        location = response.headers.get("Location", "")
        response.close()
        if not location:
            raise RegistryError(
                f"{self.action} failed: the registry sent no upload location"
            )
        if location.startswith("/"):
            location = self.client.base + location
        return location


class _TransientUploadError(Exception):
    """A chunk failed in a way that asking the registry for its offset may fix."""


def _range_end(value: str | None) -> int:
    """Turn a ``Range: 0-N`` header into the count of bytes received.

    Distribution reports ``0-0`` for an empty upload as well as for one byte,
    so ``0-0`` counts as empty. A wrong guess fails the next chunk with 416.
    """
    match = re.fullmatch(r"0-(\d+)", (value or "").strip())
    if match is None or match.group(1) == "0":
        return 0
    return int(match.group(1)) + 1


def hash_file(path: Path, progress: ProgressFn | None = None) -> str:
    """Return the sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while data := fh.read(DEFAULT_CHUNK_SIZE):
            digest.update(data)
            if progress is not None:
                progress(len(data))
    return digest.hexdigest()


def _check_expected(path: Path, expected: str, actual: str) -> None:
    if actual != expected:
        raise VerificationError(
            f"{path} has sha256 {actual}, but its .sha256 file records {expected}",
            f"run `goldmaster verify {path}` and push only a bundle that passes",
        )


def _read_limited(response: requests.Response, limit: int, action: str) -> bytes:
    parts: list[bytes] = []
    count = 0
    for chunk in response.iter_content(64 << 10):
        count += len(chunk)
        if count > limit:
            raise RegistryError(f"{action} failed: more than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _reason(exc: BaseException) -> str:
    """Return the innermost cause of a requests error, which names the problem."""
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^')\]]+)", text)
    return match.group(1) if match else text
