"""Report the CUDA libraries of a Python environment as a JSON file.

goldmaster runs this file's source inside the training interpreter, not its
own, as ``python -c SOURCE REPORT_PATH [--no-import]``. It therefore uses the
standard library only and runs on Python 3.8 and newer. Distribution metadata,
torch/version.py and TensorFlow's build_info.py are read without importing the
packages. torch is imported (unless --no-import) only for three facts that
exist nowhere else: the compiled architecture list, and the cuDNN and NCCL
versions.

The report is written before torch is imported and again after, so a crash
inside the import still leaves the facts gathered up to that point.
"""

import ast
import ctypes
import json
import os
import platform
import re
import sys

try:
    from importlib import metadata
except ImportError:  # Python 3.7 and older
    metadata = None  # type: ignore[assignment]

REPORT_VERSION = 1
FRAMEWORKS = (
    "cupy",
    "jax",
    "jaxlib",
    "onnxruntime-gpu",
    "paddlepaddle-gpu",
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-gpu",
    "tensorrt",
    "tf-nightly",
    "torch",
    "triton",
)
CUDA_NAME_PREFIXES = ("nvidia-", "jax-cuda", "cupy-cuda", "tensorrt-cu")
CUDART_FILE = re.compile(r"libcudart(?:-[0-9a-f]+)?\.so(?:\.\d+)*$")
TENSORFLOW_DISTRIBUTIONS = (
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-gpu",
    "tf-nightly",
)


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def collect_distributions():
    """Return {normalized name: distribution} for CUDA-related distributions."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        key = normalize(name)
        # The first entry on sys.path wins, as it does for import.
        if key in found:
            continue
        if key in FRAMEWORKS or key.startswith(CUDA_NAME_PREFIXES):
            found[key] = dist
    return found


def cuda_from_tag(tag):
    """Turn a wheel tag such as cu121, cu118 or cu92 into 12.1, 11.8, 9.2."""
    match = re.fullmatch(r"cu(\d+)(\d)", tag)
    if match is None:
        return None
    return f"{int(match.group(1))}.{int(match.group(2))}"


def version_code_text(code):
    """Turn a cuDNN or NCCL version code (90100, 8902, 21805) into 9.1.0 style."""
    if code >= 10000:
        major, rest = divmod(code, 10000)
    else:
        major, rest = divmod(code, 1000)
    minor, patch = divmod(rest, 100)
    return f"{major}.{minor}.{patch}"


def read_assignments(path, names):
    """Return literal values assigned to ``names`` at module level in ``path``."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=str(path))
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id in names:
                values[target.id] = literal(value)
    return values


def literal(node):
    """Evaluate a literal, or collections.OrderedDict([...]) as a dict."""
    if isinstance(node, ast.Call) and node.args:
        return dict(ast.literal_eval(node.args[0]))
    return ast.literal_eval(node)


def torch_facts(dist, allow_import, write_partial):
    version = dist.version
    facts = {"version": version, "source": "distribution metadata"}
    _, _, tag = version.partition("+")
    if cuda_from_tag(tag):
        facts["cuda_wheel_tag"] = {
            "value": cuda_from_tag(tag),
            "source": "wheel tag +" + tag,
        }

    try:
        path = dist.locate_file("torch/version.py")
        values = read_assignments(path, ("cuda", "hip", "git_version"))
    except (OSError, SyntaxError, ValueError) as exc:
        facts["version_py"] = {"status": "failed", "reason": str(exc)}
    else:
        source = "torch/version.py, read without importing torch"
        facts["cuda_build_version"] = {"value": values.get("cuda"), "source": source}
        if values.get("hip"):
            facts["hip_build_version"] = {"value": values["hip"], "source": source}
        if values.get("git_version"):
            facts["git_version"] = values["git_version"]

    if not allow_import:
        facts["import"] = {"status": "skipped", "reason": "--no-import was given"}
        return facts
    write_partial(facts)
    facts.update(imported_torch_facts())
    return facts


def imported_torch_facts():
    try:
        import torch
    # Importing a framework can raise anything; each failure is a finding.
    except Exception as exc:  # noqa: BLE001
        return {
            "import": {
                "status": "failed",
                "reason": f"{type(exc).__name__}: {exc}",
            }
        }

    facts = {"import": {"status": "ok"}}
    facts["cuda_build_version"] = {
        "value": torch.version.cuda,
        "source": "torch.version.cuda",
    }
    facts["arch_list"] = torch_arch_list(torch)

    try:
        code = torch.backends.cudnn.version()
    except Exception as exc:  # noqa: BLE001
        facts["cudnn_version"] = {"status": "failed", "reason": str(exc)}
    else:
        facts["cudnn_version"] = {
            "value": version_code_text(code) if code else None,
            "code": code,
            "source": "torch.backends.cudnn.version()",
        }

    facts["nccl_version"] = torch_nccl_version(torch)
    return facts


def torch_arch_list(torch):
    # torch.cuda.get_arch_list() returns [] when no GPU is usable, so read the
    # compiled list directly where this torch has the private accessor.
    flags_reader = getattr(torch._C, "_cuda_getArchFlags", None)
    if flags_reader is not None:
        try:
            flags = flags_reader()
        except Exception as exc:  # noqa: BLE001
            return {"status": "failed", "reason": str(exc)}
        return {
            "value": sorted((flags or "").split()),
            "source": "torch._C._cuda_getArchFlags()",
        }
    try:
        arches = torch.cuda.get_arch_list()
    except Exception as exc:  # noqa: BLE001
        return {"status": "failed", "reason": str(exc)}
    return {"value": sorted(arches), "source": "torch.cuda.get_arch_list()"}


def torch_nccl_version(torch):
    try:
        raw = torch.cuda.nccl.version()
    except Exception as exc:  # noqa: BLE001
        return {"status": "failed", "reason": str(exc)}
    if isinstance(raw, (tuple, list)):
        text = ".".join(str(part) for part in raw)
    else:
        text = version_code_text(int(raw))
    return {"value": text, "source": "torch.cuda.nccl.version()"}


def jax_facts(dists):
    facts = {}
    for name in ("jax", "jaxlib"):
        if name in dists:
            facts[name] = dists[name].version
    match = re.search(r"\+cuda(\d+)\.cudnn(\d)(\d+)", facts.get("jaxlib", ""))
    if match:
        source = "jaxlib wheel tag"
        facts["cuda_major"] = {"value": int(match.group(1)), "source": source}
        cudnn = f"{match.group(2)}.{match.group(3)}"
        facts["cudnn_major_minor"] = {"value": cudnn, "source": source}
    plugins = []
    for name in sorted(dists):
        plugin = re.fullmatch(r"jax-cuda(\d+)-(plugin|pjrt)", name)
        if plugin:
            plugins.append(
                {
                    "name": name,
                    "version": dists[name].version,
                    "cuda_major": int(plugin.group(1)),
                }
            )
    if plugins:
        facts["cuda_plugins"] = plugins
    return facts


def tensorflow_facts(dist):
    facts = {"version": dist.version}
    keys = (
        "is_cuda_build",
        "is_rocm_build",
        "cuda_version",
        "cudnn_version",
        "cuda_compute_capabilities",
    )
    try:
        path = dist.locate_file("tensorflow/python/platform/build_info.py")
        info = read_assignments(path, ("build_info",)).get("build_info") or {}
    except (OSError, SyntaxError, ValueError, TypeError) as exc:
        facts["build_info"] = {"status": "failed", "reason": str(exc)}
        return facts
    facts["build_info"] = {key: info[key] for key in keys if key in info}
    facts["build_info"]["source"] = "tensorflow/python/platform/build_info.py"
    return facts


def cupy_facts(dists):
    for name in sorted(dists):
        match = re.fullmatch(r"cupy-cuda(\d+?)(x|\d)", name)
        if match is None:
            continue
        if match.group(2) == "x":
            cuda = match.group(1) + ".x"
        else:
            cuda = f"{int(match.group(1))}.{match.group(2)}"
        source = "distribution name " + name
        return {
            "version": dists[name].version,
            "cuda_build_version": {"value": cuda, "source": source},
        }
    if "cupy" in dists:
        return {
            "version": dists["cupy"].version,
            "source": "source build, CUDA version unknown",
        }
    return None


def nvidia_wheels(dists):
    wheels = []
    for name in sorted(dists):
        if not name.startswith("nvidia-"):
            continue
        version = dists[name].version
        entry = {"name": name, "version": version}
        suffix = re.search(r"-cu(\d+)$", name)
        if suffix:
            entry["cuda_major"] = int(suffix.group(1))
        elif name.startswith("nvidia-cuda-") and version[:1].isdigit():
            # Unsuffixed toolkit components (nvidia-cuda-runtime 13.0.96) carry
            # the CUDA version as their own version.
            entry["cuda_major"] = int(version.split(".")[0])
        wheels.append(entry)
    return wheels


def cuda_runtime_libraries(dists):
    found = []
    for name in sorted(dists):
        for file in dists[name].files or ():
            if CUDART_FILE.search(str(file)):
                path = os.path.realpath(str(dists[name].locate_file(file)))
                entry = {"path": path, "provided_by": name}
                entry.update(cuda_runtime_version(path))
                found.append(entry)
    return sorted(found, key=lambda entry: entry["path"])


def cuda_runtime_version(path):
    """Call cudaRuntimeGetVersion, which needs no driver and no GPU."""
    try:
        library = ctypes.CDLL(path)
        value = ctypes.c_int(0)
        error = library.cudaRuntimeGetVersion(ctypes.byref(value))
    except (OSError, AttributeError) as exc:
        return {"status": "failed", "reason": str(exc)}
    if error != 0:
        return {
            "status": "failed",
            "reason": f"cudaRuntimeGetVersion returned error {error}",
        }
    code = value.value
    return {
        "version": f"{code // 1000}.{(code % 1000) // 10}",
        "version_code": code,
        "source": "cudaRuntimeGetVersion()",
    }


def interpreter_facts():
    return {
        "executable": sys.executable,
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "prefix": sys.prefix,
        "base_prefix": getattr(sys, "base_prefix", sys.prefix),
    }


def build_report(allow_import, write_partial):
    report = {"report_version": REPORT_VERSION, "python": interpreter_facts()}
    if metadata is None:
        report["distributions"] = {
            "status": "not-supported",
            "reason": "importlib.metadata needs Python 3.8 or newer",
        }
        return report

    dists = collect_distributions()
    frameworks = {}
    report["frameworks"] = frameworks
    report["nvidia_wheels"] = nvidia_wheels(dists)
    report["cuda_runtime_libraries"] = cuda_runtime_libraries(dists)

    jax = jax_facts(dists)
    if jax:
        frameworks["jax"] = jax
    for name in TENSORFLOW_DISTRIBUTIONS:
        if name in dists:
            frameworks["tensorflow"] = tensorflow_facts(dists[name])
            break
    cupy = cupy_facts(dists)
    if cupy:
        frameworks["cupy"] = cupy
    if "torch" in dists:

        def write_torch_partial(facts):
            frameworks["torch"] = dict(facts, **{"import": {"status": "crashed"}})
            write_partial(report)

        frameworks["torch"] = torch_facts(
            dists["torch"], allow_import, write_torch_partial
        )
    return report


def main(argv):
    output = argv[1]
    allow_import = "--no-import" not in argv[2:]

    def write(report):
        temporary = output + ".part"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(report, handle, sort_keys=True, indent=1)
        os.replace(temporary, output)

    write(build_report(allow_import, write))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
