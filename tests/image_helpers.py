"""Real inputs for image tests: hand-built wheels and a package index on loopback."""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def make_wheel(folder: Path, name: str, version: str, source: str) -> Path:
    """Write a pure-Python wheel with one module, ``name``, holding ``source``."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": source.encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: goldmaster-tests\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{dist_info}/top_level.txt": f"{name}\n".encode(),
    }
    record_lines = []
    for arcname, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record_lines.append(f"{arcname},sha256={digest.decode()},{len(data)}")
    record_lines.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record_lines) + "\n").encode()

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for arcname, data in files.items():
            archive.writestr(arcname, data)
    return path


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _IndexHandler(http.server.BaseHTTPRequestHandler):
    """Serve a PEP 503 simple index of one folder of wheels behind basic auth."""

    wheels: Path
    expected_auth: str
    requests_seen: list[str]

    def do_GET(self) -> None:
        self.requests_seen.append(self.path)
        if self.headers.get("Authorization") != self.expected_auth:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="test index"')
            self.end_headers()
            return
        parts = [part for part in self.path.split("/") if part]
        if len(parts) == 2 and parts[0] == "simple":
            self._send_project_page(parts[1])
        elif len(parts) == 2 and parts[0] == "files":
            self._send_file(parts[1])
        else:
            self.send_error(404)

    def _send_project_page(self, project: str) -> None:
        links = [
            f'<a href="/files/{wheel.name}#sha256={sha256_file(wheel)}">{wheel.name}</a>'
            for wheel in sorted(self.wheels.glob("*.whl"))
            if wheel.name.split("-")[0].lower().replace("_", "-") == project
        ]
        if not links:
            self.send_error(404)
            return
        body = ("<html><body>" + "".join(links) + "</body></html>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_file(self, name: str) -> None:
        path = self.wheels / name
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@contextmanager
def basic_auth_index(
    wheels: Path, user: str, password: str
) -> Iterator[tuple[str, list[str]]]:
    """Serve ``wheels`` on 127.0.0.1 and yield its URL and the paths requested.

    The URL carries no credentials; every request without them gets 401.
    """
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    seen: list[str] = []
    handler = type(
        "IndexHandler",
        (_IndexHandler,),
        {"wheels": wheels, "expected_auth": f"Basic {token}", "requests_seen": seen},
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple", seen
    finally:
        server.shutdown()
        server.server_close()


TINY_MODEL_SOURCE = "def predict(x):\n    return [round(v * 0.5, 3) for v in x]\n"


def isolated_pip_environ() -> dict[str, str]:
    """Return os.environ with no pip configuration of this machine in it."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "UV_"))
        and key not in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH")
    }
    environ["PIP_CONFIG_FILE"] = os.devnull
    return environ


def tiny_model_venv(root: Path) -> Path:
    """Make a virtual environment without pip that has ``tinymodel`` installed,
    and return its interpreter."""
    wheel = make_wheel(root / "dist", "tinymodel", "1.0", TINY_MODEL_SOURCE)
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True
    )
    python = root / "venv" / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install"]
    subprocess.run(
        [*install, "--no-index", "--no-deps", str(wheel)],
        env=isolated_pip_environ(),
        check=True,
        capture_output=True,
    )
    return python
