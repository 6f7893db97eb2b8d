"""Remove credentials from URLs and text before anything is recorded."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

PLACEHOLDER = "REDACTED"

# user:password@ or token@ in the authority part of any scheme://authority URL.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^@/\s]+)@")

# Conda channels and some package indexes carry a token in the path: /t/<token>/.
_PATH_TOKEN = re.compile(r"/t/(?!" + PLACEHOLDER + r"/)[^/\s]+/")

_SECRET_QUERY_KEYS = {"token", "access_token", "auth", "password", "key", "sig", "signature"}


def redact_url(url: str) -> str:
    """Return ``url`` with its user name, password and token values replaced.

    Scp-like git remotes (``git@host:org/repo``) keep their user name, which
    is not a secret and is the same for everyone.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)

    netloc = parts.netloc
    if "@" in netloc:
        netloc = PLACEHOLDER + "@" + netloc.rsplit("@", 1)[1]

    query = parts.query
    if query:
        pairs = []
        for pair in query.split("&"):
            key, sep, value = pair.partition("=")
            if sep and key.lower() in _SECRET_QUERY_KEYS:
                value = PLACEHOLDER
            pairs.append(key + sep + value)
        query = "&".join(pairs)

    path = _PATH_TOKEN.sub("/t/" + PLACEHOLDER + "/", parts.path)
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Replace credentials in every URL found in free text."""
    text = _USERINFO.sub(lambda m: m.group("scheme") + PLACEHOLDER + "@", text)
    return _PATH_TOKEN.sub("/t/" + PLACEHOLDER + "/", text)


def has_credentials(url: str) -> bool:
    """Tell whether ``url`` carries a user name, password or token."""
    return redact_url(url) != url


def redact_value(value: Any) -> Any:
    """Return ``value`` with credentials removed from every URL in its strings,
    looking inside lists and mappings."""
    if isinstance(value, str):
        return redact_text(value) if "://" in value else value
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    return value
