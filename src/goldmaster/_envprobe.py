"""Report a Python environment as JSON on stdout.

goldmaster runs this file inside the interpreter being captured, as
``python -I _envprobe.py``, so it imports nothing outside the standard
library and keeps to syntax that Python 3.7 accepts.
"""

import email.parser
import json
import os
import platform
import re
import sys
import sysconfig

PROBE_VERSION = 1


def normalize_name(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def glibc_version():
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None
    if not value or not value.startswith("glibc "):
        return None
    return value.split(" ", 1)[1]


def platform_tags(glibc):
    """List wheel platform tags for this interpreter, most specific first."""
    base = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    if not base.startswith("linux_") or not glibc:
        return [base]
    arch = base[len("linux_") :]
    if arch == "x86_64" and sys.maxsize <= 2**32:
        arch = "i686"
    major, minor = (int(part) for part in glibc.split(".")[:2])
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags = []
    if major == 2:
        for number in range(minor, 4, -1):
            tags.append(f"manylinux_2_{number}_{arch}")
            if number in legacy and (number == 17 or arch in ("x86_64", "i686")):
                tags.append(f"{legacy[number]}_{arch}")
    tags.append(base)
    return tags


def interpreter_facts():
    implementation = sys.implementation.name
    short = {"cpython": "cp", "pypy": "pp"}.get(implementation, implementation)
    nodot = "{}{}".format(*sys.version_info[:2])
    soabi = sysconfig.get_config_var("SOABI") or ""
    abi = short + nodot
    if implementation == "cpython" and sysconfig.get_config_var("Py_DEBUG"):
        abi += "d"
    if implementation != "cpython" and soabi:
        abi = soabi.split("-")[0].replace(".", "_").replace("-", "_")
    glibc = glibc_version()
    return {
        "executable": sys.executable,
        "base_executable": getattr(sys, "_base_executable", sys.executable),
        "version": platform.python_version(),
        "major_minor": "{}.{}".format(*sys.version_info[:2]),
        "implementation": implementation,
        "implementation_version": platform.python_implementation(),
        "prefix": sys.prefix,
        "base_prefix": getattr(sys, "base_prefix", sys.prefix),
        "is_venv": getattr(sys, "base_prefix", sys.prefix) != sys.prefix,
        "is_conda": os.path.isdir(os.path.join(sys.prefix, "conda-meta")),
        "platform": sysconfig.get_platform(),
        "system": platform.system(),
        "machine": platform.machine(),
        "glibc": glibc,
        "soabi": soabi,
        "tags": {
            "python_version": nodot,
            "implementation": short,
            "abi": abi,
            "platforms": platform_tags(glibc),
        },
    }


def site_dirs():
    """List the sys.path folders that can hold installed distributions.

    ``-I`` drops the user site-packages folder from sys.path, but a plain
    ``python`` run outside a virtual environment would import from it, so it
    is added back for such interpreters.
    """
    entries = list(sys.path)
    user_site = user_site_dir()
    if user_site:
        entries.append(user_site)
    seen = []
    for entry in entries:
        path = os.path.abspath(entry or os.getcwd())
        if os.path.isdir(path) and path not in seen:
            seen.append(path)
    return seen


def user_site_dir():
    import site

    if getattr(sys, "base_prefix", sys.prefix) != sys.prefix:
        config = read_text(os.path.join(sys.prefix, "pyvenv.cfg")) or ""
        if not re.search(
            r"include-system-site-packages\s*=\s*true", config, re.IGNORECASE
        ):
            return None
    try:
        return site.getusersitepackages()
    except (AttributeError, OSError):
        return None


def parse_metadata(text):
    message = email.parser.Parser().parsestr(text or "", headersonly=True)
    return message.get("Name"), message.get("Version")


def read_direct_url(meta_dir):
    text = read_text(os.path.join(meta_dir, "direct_url.json"))
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"error": "direct_url.json is not valid JSON"}


def record_entry(site, entry):
    meta_dir = os.path.join(site, entry)
    if entry.endswith(".dist-info"):
        metadata = read_text(os.path.join(meta_dir, "METADATA"))
        kind = "dist-info"
    elif os.path.isdir(meta_dir):
        metadata = read_text(os.path.join(meta_dir, "PKG-INFO"))
        kind = "egg-info"
    else:
        metadata = read_text(meta_dir)
        kind = "egg-info-file"
    name, version = parse_metadata(metadata)
    if not name or not version:
        return None
    installer = read_text(os.path.join(meta_dir, "INSTALLER"))
    return {
        "name": name,
        "key": normalize_name(name),
        "version": version,
        "metadata_kind": kind,
        "metadata_dir": meta_dir,
        "location": site,
        "installer": installer.strip() if installer else None,
        "requested": os.path.exists(os.path.join(meta_dir, "REQUESTED")),
        "direct_url": read_direct_url(meta_dir),
        "has_record": os.path.exists(os.path.join(meta_dir, "RECORD")),
        "has_wheel_file": os.path.exists(os.path.join(meta_dir, "WHEEL")),
    }


def egg_links(site):
    links = {}
    try:
        entries = sorted(os.listdir(site))
    except OSError:
        return links
    for entry in entries:
        if not entry.endswith(".egg-link"):
            continue
        text = read_text(os.path.join(site, entry)) or ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            target = os.path.normpath(os.path.join(lines[0], *lines[1:2]))
            links[normalize_name(entry[: -len(".egg-link")])] = {
                "egg_link": os.path.join(site, entry),
                "path": lines[0],
                "project_dir": target,
            }
    return links


def distributions(sites):
    found = {}
    shadowed = []
    links = {}
    for site in sites:
        for key, link in egg_links(site).items():
            links.setdefault(key, link)
    for site in sites:
        try:
            entries = sorted(os.listdir(site))
        except OSError:
            continue
        for entry in entries:
            if not entry.endswith((".dist-info", ".egg-info")):
                continue
            record = record_entry(site, entry)
            if record is None:
                continue
            link = None
            if record["metadata_kind"] != "dist-info":
                link = links.get(record["key"]) or find_egg_link_for(record, links)
            record["egg_link"] = link
            if record["key"] in found:
                shadowed.append(
                    {
                        "name": record["name"],
                        "version": record["version"],
                        "location": site,
                    }
                )
                continue
            found[record["key"]] = record
    return [found[key] for key in sorted(found)], shadowed


def find_egg_link_for(record, links):
    """Match a develop-mode egg-info folder to the .egg-link that points at it."""
    parent = os.path.dirname(record["metadata_dir"])
    for link in links.values():
        if os.path.normpath(link["project_dir"]) == os.path.normpath(parent):
            return link
    return None


def pth_files(sites):
    prefixes = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    result = []
    for site in sites:
        try:
            entries = sorted(os.listdir(site))
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(".pth"):
                result.append(read_pth(site, entry, prefixes))
    return result


def read_pth(site, entry, prefixes):
    paths = []
    imports = 0
    for line in (read_text(os.path.join(site, entry)) or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("import ", "import\t")):
            imports += 1
            continue
        path = os.path.realpath(os.path.join(site, line))
        inside = any(path == p or path.startswith(p + os.sep) for p in prefixes)
        paths.append(
            {"path": path, "exists": os.path.exists(path), "external": not inside}
        )
    return {"file": os.path.join(site, entry), "paths": paths, "import_lines": imports}


def main():
    sites = site_dirs()
    dists, shadowed = distributions(sites)
    report = {
        "probe_version": PROBE_VERSION,
        "interpreter": interpreter_facts(),
        "sys_path": list(sys.path),
        "site_dirs": sites,
        "distributions": dists,
        "shadowed": shadowed,
        "pth_files": pth_files(sites),
    }
    json.dump(report, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
