"""A real CNCF Distribution registry on loopback for the registry tests.

Debian's ``docker-registry`` package provides the registry (install it with
``apt-get install -y docker-registry``), and ``htpasswd`` from apache2-utils
writes the bcrypt password file for the registry that requires credentials.
The tests skip when either is missing, unless GOLDMASTER_REQUIRE_SERVICES=1,
in which case they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldmaster.ociref import INSECURE_HOSTS_VARIABLE
from goldmaster.registry_client import PASSWORD_VARIABLE, USERNAME_VARIABLE

REGISTRY_PORT = int(os.environ.get("GOLDMASTER_TEST_REGISTRY_PORT", "5001"))
AUTH_REGISTRY_PORT = REGISTRY_PORT + 1
START_TIMEOUT_S = 30
USERNAME = "goldmaster-ci"
PASSWORD = "correct horse battery staple"


def services_unavailable(reason: str) -> None:
    """Skip the test, or fail it when GOLDMASTER_REQUIRE_SERVICES=1."""
    if os.environ.get("GOLDMASTER_REQUIRE_SERVICES") == "1":
        pytest.fail(f"registry required but unavailable: {reason}")
    pytest.skip(f"registry unavailable: {reason}")


def free_port(preferred: int | None) -> int:
    """Return ``preferred`` when nothing listens on it, else a free port."""
    if preferred:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RegistryServer:
    """One ``docker-registry serve`` process with its own storage and log."""

    def __init__(self, root: Path, port: int, htpasswd: Path | None = None) -> None:
        self.root = root
        self.port = port
        self.htpasswd = htpasswd
        self.storage = root / "storage"
        self.config = root / "registry.yml"
        self.log = root / "registry.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def write_config(self) -> None:
        auth = ""
        if self.htpasswd is not None:
            auth = f"auth:\n  htpasswd:\n    realm: goldmaster-tests\n    path: {self.htpasswd}\n"
        # A fixed http.secret keeps upload sessions valid across a restart.
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"http:\n  addr: {self.address}\n  secret: goldmaster-test-secret\n" + auth
        )

    def start(self) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError(
                "docker-registry is not installed (apt-get install -y docker-registry)"
            )
        self.write_config()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [binary, "serve", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2):
                    return
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"docker-registry did not answer in {START_TIMEOUT_S} s: {self.log_tail()}"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def blob_gets(self, repository: str, digest: str) -> int:
        """Count the GET requests for one blob in the registry's access log."""
        pattern = re.compile(
            rf'"GET /v2/{re.escape(repository)}/blobs/{re.escape(digest)} HTTP/[0-9.]+" 200 '
        )
        return len(pattern.findall(self.log_text()))

    def blob_data(self, digest: str) -> Path:
        """Return the file in which the filesystem driver stores a blob."""
        hex_digest = digest.removeprefix("sha256:")
        return (
            self.storage
            / "docker/registry/v2/blobs/sha256"
            / hex_digest[:2]
            / hex_digest
            / "data"
        )


def _started(root: Path, port: int, htpasswd: Path | None = None) -> RegistryServer:
    root.mkdir(parents=True, exist_ok=True)
    server = RegistryServer(root, free_port(port), htpasswd)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        services_unavailable(str(exc))
    return server


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry without authentication, shared by the whole session."""
    server = _started(tmp_path_factory.mktemp("registry"), REGISTRY_PORT)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry that requires USERNAME and PASSWORD (htpasswd, bcrypt)."""
    root = tmp_path_factory.mktemp("auth-registry")
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        services_unavailable(
            "htpasswd is not installed (apt-get install -y apache2-utils)"
        )
    done = subprocess.run(
        [str(htpasswd), "-Bbn", USERNAME, PASSWORD], capture_output=True, check=True
    )
    password_file = root / "htpasswd"
    password_file.write_bytes(done.stdout)
    server = _started(root, AUTH_REGISTRY_PORT, password_file)
    yield server
    server.stop()


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A registry for one test, which may stop and restart it."""
    server = _started(tmp_path / "own-registry", 0)
    yield server
    server.stop()


@pytest.fixture
def registry_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Give the test its own empty HOME and no registry credentials, so that
    neither the user's Docker config nor their environment leaks in."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in (
        USERNAME_VARIABLE,
        PASSWORD_VARIABLE,
        "DOCKER_CONFIG",
        INSECURE_HOSTS_VARIABLE,
    ):
        monkeypatch.delenv(name, raising=False)
    return home


REGISTRY_FIXTURES = frozenset({"oci_registry", "auth_registry", "own_registry"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts a registry with the ``registry`` marker."""
    for item in items:
        if REGISTRY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.registry)
