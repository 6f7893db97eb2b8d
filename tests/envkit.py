"""Build tiny real projects, wheels, package indexes and venvs for environment tests.

Each project builds with an in-tree PEP 517 backend that needs no other
package, so ``pip wheel``, ``pip install .``, ``pip install -e`` and
``git+file://`` installs all work without reaching any index.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BACKEND = """
import base64, hashlib, os, zipfile

NAME = {name!r}
VERSION = {version!r}
SOURCE = {source!r}
PACKAGE = {package!r}
STAMP = (1980, 1, 1, 0, 0, 0)


def _dist():
    return NAME.replace("-", "_")


def _write(files, wheel_directory):
    info = "%s-%s.dist-info" % (_dist(), VERSION)
    files[info + "/METADATA"] = (
        "Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n" % (NAME, VERSION)
    ).encode()
    files[info + "/WHEEL"] = (
        b"Wheel-Version: 1.0\\nGenerator: tinybackend\\n"
        b"Root-Is-Purelib: true\\nTag: py3-none-any\\n"
    )
    lines = []
    for arcname in sorted(files):
        digest = base64.urlsafe_b64encode(hashlib.sha256(files[arcname]).digest())
        lines.append("%s,sha256=%s,%d" % (arcname, digest.rstrip(b"=").decode(), len(files[arcname])))
    lines.append(info + "/RECORD,,")
    files[info + "/RECORD"] = ("\\n".join(lines) + "\\n").encode()
    name = "%s-%s-py3-none-any.whl" % (_dist(), VERSION)
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as archive:
        for arcname in sorted(files):
            archive.writestr(zipfile.ZipInfo(arcname, STAMP), files[arcname])
    return name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = {{}}
    root = os.path.join(SOURCE, PACKAGE)
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, "rb") as handle:
                    files[os.path.relpath(path, SOURCE).replace(os.sep, "/")] = handle.read()
    return _write(files, wheel_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    path = os.path.abspath(SOURCE) + "\\n"
    return _write({{"__editable__.%s.pth" % _dist(): path.encode()}}, wheel_directory)


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []
"""

PYPROJECT = """[build-system]
requires = []
build-backend = "tinybackend"
backend-path = ["."]

[project]
name = "{name}"
version = "{version}"
"""


def make_project(
    root: Path, name: str, version: str, value: str, src_layout: bool = False
) -> Path:
    """Write a project whose module ``name`` (dashes as underscores) has ``VALUE = value``."""
    package = name.replace("-", "_")
    source = "src" if src_layout else "."
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(PYPROJECT.format(name=name, version=version))
    (root / "tinybackend.py").write_text(
        BACKEND.format(name=name, version=version, source=source, package=package)
    )
    module_dir = root / source / package
    module_dir.mkdir(parents=True, exist_ok=True)
    (module_dir / "__init__.py").write_text(f"VALUE = {value!r}\n")
    return root


def clean_pip_env(**extra: str) -> dict[str, str]:
    """Return an environment in which pip reads no machine configuration."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "UV_"))
    }
    env.pop("VIRTUAL_ENV", None)
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(extra)
    return env


def run(
    command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> str:
    result = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def build_wheel(project: Path, output: Path) -> Path:
    """Build ``project`` into ``output`` with ``pip wheel`` and return the wheel."""
    output.mkdir(parents=True, exist_ok=True)
    before = set(output.iterdir())
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-w",
        str(output),
        str(project),
    ]
    run(command, env=clean_pip_env())
    (wheel,) = set(output.iterdir()) - before
    return wheel


def sha256_hex(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_to_index(index_root: Path, project: str, wheel: Path) -> None:
    """Put ``wheel`` into a PEP 503 simple index folder and rewrite the project page."""
    folder = index_root / "simple" / project
    folder.mkdir(parents=True, exist_ok=True)
    (folder / wheel.name).write_bytes(wheel.read_bytes())
    links = [
        f'<a href="{path.name}#sha256={sha256_hex(path)}">{path.name}</a><br>'
        for path in sorted(folder.glob("*.whl"))
    ]
    (folder / "index.html").write_text(
        "<html><body>\n" + "\n".join(links) + "\n</body></html>\n"
    )


class IndexServer:
    """A simple index served over HTTP on 127.0.0.1, with optional Basic auth."""

    def __init__(self, root: Path, user: str, password: str) -> None:
        self.requests: list[str] = []
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        log = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                log.append(self.path)
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="index"')
                    self.end_headers()
                    return
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(Handler, directory=str(root))
        )
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}/simple"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def git(repo: Path, *args: str) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="Test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="Test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
    )
    return run(["git", "-C", str(repo), *args], env=env).strip()


def commit_all(repo: Path) -> str:
    """Make ``repo`` a git repository with everything committed; return the commit."""
    if not (repo / ".git").exists():
        git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Add the project")
    return git(repo, "rev-parse", "HEAD")


def make_venv(path: Path, with_pip: bool = True) -> Path:
    command = [sys.executable, "-m", "venv", str(path)]
    if not with_pip:
        command.append("--without-pip")
    run(command, env=clean_pip_env())
    return path / "bin" / "python"


def pip(
    python: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> str:
    return run([str(python), "-m", "pip", *args], env=env or clean_pip_env(), cwd=cwd)


def import_values(python: Path, modules: list[str]) -> dict[str, str]:
    """Import each module in ``python`` and return its VALUE."""
    code = "import importlib, json, sys; print(json.dumps({m: importlib.import_module(m).VALUE for m in sys.argv[1:]}))"
    import json

    return json.loads(
        run([str(python), "-c", code, *modules], env=clean_pip_env(), cwd=python.parent)
    )
