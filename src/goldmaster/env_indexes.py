"""Read the package index configuration that pip, uv and poetry would use.

Every URL is recorded with its credentials replaced by a placeholder. A
restore gets the credentials back from an environment variable whose name
comes from :func:`auth_env_name`, so they never reach a file.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from goldmaster.redact import PLACEHOLDER, has_credentials, redact_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

PYPI_SIMPLE = "https://pypi.org/simple"

# pip options that name where packages come from, as spelled in pip.conf.
_PIP_OPTIONS = (
    "index-url",
    "extra-index-url",
    "find-links",
    "no-index",
    "trusted-host",
)
_URL_OPTIONS = {"index-url", "extra-index-url", "find-links"}
_ENV_VARS = {
    "PIP_INDEX_URL": "index-url",
    "PIP_EXTRA_INDEX_URL": "extra-index-url",
    "PIP_FIND_LINKS": "find-links",
    "PIP_NO_INDEX": "no-index",
    "PIP_TRUSTED_HOST": "trusted-host",
    "UV_INDEX_URL": "index-url",
    "UV_DEFAULT_INDEX": "index-url",
    "UV_EXTRA_INDEX_URL": "extra-index-url",
    "UV_INDEX": "extra-index-url",
    "UV_FIND_LINKS": "find-links",
}
_REQUIREMENT_OPTIONS = {
    "-i": "index-url",
    "--index-url": "index-url",
    "--extra-index-url": "extra-index-url",
    "-f": "find-links",
    "--find-links": "find-links",
    "--no-index": "no-index",
    "--trusted-host": "trusted-host",
}


def auth_env_name(url: str) -> str:
    """Name the environment variable that supplies credentials for ``url``'s host."""
    host = urlsplit(url).netloc.rsplit("@", 1)[-1]
    return "GOLDMASTER_INDEX_AUTH_" + re.sub(r"[^A-Za-z0-9]", "_", host).upper()


def pip_config_files(prefix: str, environ: Mapping[str, str]) -> list[tuple[str, Path]]:
    """List the pip configuration files in the order pip loads them.

    Later files override earlier ones. A ``PIP_CONFIG_FILE`` that exists
    hides the per-user files, and one set to the null device hides all.
    """
    env_file = environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return []
    home = Path(environ.get("HOME", str(Path.home())))
    xdg_dirs = environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files: list[tuple[str, Path]] = [
        ("global", Path(folder) / "pip" / "pip.conf") for folder in xdg_dirs.split(":")
    ]
    files.append(("global", Path("/etc/pip.conf")))
    if not (env_file and Path(env_file).exists()):
        xdg_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
        files.append(("user", home / ".pip" / "pip.conf"))
        files.append(
            ("user", home / "Library" / "Application Support" / "pip" / "pip.conf")
        )
        files.append(("user", xdg_home / "pip" / "pip.conf"))
    files.append(("site", Path(prefix) / "pip.conf"))
    if env_file:
        files.append(("env", Path(env_file)))
    return [(scope, path) for scope, path in files if path.is_file()]


def _url_entry(option: str, value: str, **where: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"option": option, **where}
    if option in _URL_OPTIONS:
        entry["url"] = redact_url(value)
        entry["credentials"] = has_credentials(value)
        if entry["credentials"]:
            entry["auth_env"] = auth_env_name(value)
    else:
        entry["value"] = value
    return entry


def _split_values(option: str, value: str) -> list[str]:
    if option in ("index-url", "no-index"):
        return [value.strip()]
    return value.split()


def read_pip_config(path: Path) -> dict[str, dict[str, str]]:
    """Return the index options of one pip.conf, by section."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError):
        return {}
    result: dict[str, dict[str, str]] = {}
    for section in ("global", "install", "download", "wheel"):
        if not parser.has_section(section):
            continue
        options = {
            key.replace("_", "-"): value
            for key, value in parser.items(section)
            if key.replace("_", "-") in _PIP_OPTIONS
        }
        if options:
            result[section] = options
    return result


def pip_sources(prefix: str, environ: Mapping[str, str]) -> tuple[list, dict]:
    """Return the recorded index sources and pip's effective index settings.

    The effective settings are what ``pip install`` used: later files
    override earlier ones, ``[install]`` overrides ``[global]``, and
    ``PIP_*`` variables override every file. Their URLs keep credentials,
    so they stay in memory and are never recorded.
    """
    sources: list[dict[str, Any]] = []
    effective: dict[str, str] = {}
    for scope, path in pip_config_files(prefix, environ):
        config = read_pip_config(path)
        for section in ("global", "install", "download", "wheel"):
            for option, value in config.get(section, {}).items():
                if section in ("global", "install"):
                    effective[option] = value
                for item in _split_values(option, value):
                    where = {"source": "pip.conf", "path": str(path), "scope": scope}
                    sources.append(_url_entry(option, item, section=section, **where))
    for variable, option in sorted(_ENV_VARS.items()):
        setting = environ.get(variable)
        if not setting:
            continue
        if variable.startswith("PIP_"):
            effective[option] = setting
        for item in _split_values(option, setting):
            sources.append(
                _url_entry(option, item, source="environment", variable=variable)
            )
    return sources, effective


def requirement_file_sources(path: Path, relative: str) -> list[dict[str, Any]]:
    """Return the index options written in one requirements or constraints file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    sources = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line.startswith("-"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        for option, value in _option_pairs(words):
            sources.append(
                _url_entry(option, value, source="requirements", path=relative)
            )
    return sources


def _option_pairs(words: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for index, word in enumerate(words):
        flag, equals, inline = word.partition("=")
        option = _REQUIREMENT_OPTIONS.get(flag)
        if option is None:
            continue
        if option == "no-index":
            pairs.append((option, "true"))
        elif equals:
            pairs.append((option, inline))
        elif index + 1 < len(words):
            pairs.append((option, words[index + 1]))
    return pairs


def toml_sources(path: Path, relative: str) -> list[dict[str, Any]]:
    """Return uv, poetry and pdm source tables from pyproject.toml or uv.toml."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    tool = data.get("tool", {}) if path.name == "pyproject.toml" else {"uv": data}
    sources: list[dict[str, Any]] = []
    uv = tool.get("uv", {}) if isinstance(tool, dict) else {}
    for key, option in (
        ("index-url", "index-url"),
        ("extra-index-url", "extra-index-url"),
    ):
        values = uv.get(key)
        for value in [values] if isinstance(values, str) else values or []:
            sources.append(_url_entry(option, value, source="uv", path=relative))
    for table, tool_name in ((uv.get("index"), "uv"), *_poetry_pdm(tool)):
        for item in table or []:
            if isinstance(item, dict) and isinstance(item.get("url"), str):
                option = "index-url" if item.get("default") else "extra-index-url"
                where = {
                    "source": tool_name,
                    "path": relative,
                    "name": item.get("name"),
                }
                sources.append(_url_entry(option, item["url"], **where))
    return sources


def _poetry_pdm(tool: Any) -> list[tuple[Any, str]]:
    if not isinstance(tool, dict):
        return []
    poetry = tool.get("poetry", {})
    pdm = tool.get("pdm", {})
    return [
        (poetry.get("source") if isinstance(poetry, dict) else None, "poetry"),
        (pdm.get("source") if isinstance(pdm, dict) else None, "pdm"),
    ]


def effective_indexes(effective: Mapping[str, str]) -> dict[str, Any]:
    """Summarise pip's effective settings with credentials replaced."""
    index = effective.get("index-url", PYPI_SIMPLE).strip()
    extras = effective.get("extra-index-url", "").split()
    find_links = effective.get("find-links", "").split()
    no_index = effective.get("no-index", "").strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
    )
    return {
        "index_url": redact_url(index),
        "extra_index_urls": [redact_url(url) for url in extras],
        "find_links": [redact_url(url) for url in find_links],
        "no_index": no_index,
    }


def restore_url(url: str, environ: Mapping[str, str]) -> tuple[str, str | None]:
    """Put credentials from the environment back into a recorded URL.

    The variable contains ``USER:PASSWORD`` or a bare token, not percent-encoded.
    Returns the URL to use and, when the URL needs credentials that the
    environment does not supply, the name of the variable to set.
    """
    if PLACEHOLDER + "@" not in url:
        return url, None
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[1]
    variable = auth_env_name(url)
    secret = environ.get(variable)
    bare = parts._replace(netloc=host).geturl()
    if not secret:
        return bare, variable
    user, colon, password = secret.partition(":")
    userinfo = quote(user, safe="") + colon + quote(password, safe="")
    return parts._replace(netloc=userinfo + "@" + host).geturl(), None
