"""goldmaster capture."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from ..capture import CaptureOptions, capture
from ..checks import DEFAULT_TIMEOUT
from ..console import human_bytes, print_json
from ..progress import Reporter
from .common import output_options


def _parse_param(values: tuple[str, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        if key in params:
            raise click.BadParameter(f"{key!r} is given twice", param_hint="--param")
        params[key] = _param_value(raw)
    return params


def _param_value(raw: str) -> Any:
    """Return ``raw`` as a number or boolean when JSON reads it as one, else as
    the string given.

    YAML 1.1 rules would read 011 as 9, 1:30 as 90, on as true and 1e-4 as a
    string, which is why JSON decides.
    """
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    return raw


@click.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("--name", help="Bundle name; default: the model folder's name.")
@click.option("--version", "version", help="Bundle version; default: the code's git commit.")
@click.option("--code", type=click.Path(path_type=Path), help="Code folder; default: the current folder.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("."), show_default=True, help="Folder for the bundle and its .sha256 file.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="A hyperparameter to record; repeatable. Numbers and true/false are read as in JSON, anything else is kept as text.")
@click.option("--params-file", type=click.Path(path_type=Path), help="JSON or YAML file of hyperparameters.")
@click.option("--metrics-file", type=click.Path(path_type=Path), help="JSON or YAML file of metrics.")
@click.option("--dataset", "datasets", multiple=True, metavar="URI", help="A dataset reference to record; repeatable.")
@click.option("--exclude", "excludes", multiple=True, metavar="GLOB", help="Leave out matching model and code files; repeatable.")
@click.option("--include", "includes", multiple=True, metavar="GLOB", help="Keep credential-like code files that match; repeatable.")
@click.option("--level", type=int, default=1, show_default=True, help="zstd level for weights, wheels and images (1-22); higher levels barely shrink weights.")
@click.option("--text-level", type=int, default=None, help="zstd level for code and text (1-22). Default: 9, or 3 above 16 MiB of code and text.")
@click.option("--threads", type=int, default=0, show_default=True, help="Compression threads; 0 uses every core.")
@click.option("--codec", type=click.Choice(["zstd", "bytegroup"]), default="zstd", show_default=True, help="How to store safetensors weights: zstd alone, readable with tar and zstd, or bytegroup, which groups the bytes of each float value first (bf16, fp16, fp32 shrink about 10% more) and is undone by restore or by the python3 command in README.txt.")
@click.option("--force", is_flag=True, help="Replace a bundle of the same name and version.")
@click.option("--python", "python", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Training interpreter whose environment and CUDA libraries to record; default: the active virtual or conda environment, else python3 on PATH (CUDA libraries: goldmaster's own).")
@click.option("--env/--no-env", default=True, show_default=True, help="Capture the Python environment.")
@click.option("--wheels", is_flag=True, help="Vendor every distribution file into env/wheels/ so that restore needs no network.")
@click.option("--strict", is_flag=True, help="With --wheels, fail when a distribution cannot be vendored.")
@click.option("--check", "checks", multiple=True, metavar="CMD", help="A shell command to run in the code folder; its output is recorded and compared after restore. Repeatable.")
@click.option("--check-output", "check_outputs", multiple=True, metavar="PATH", help="A file that the --check command writes, relative to the code folder; repeatable.")
@click.option("--check-rtol", type=float, help="Relative tolerance for numbers in check outputs, for checks that set none in goldmaster.yaml; default: exact comparison.")
@click.option("--check-atol", type=float, help="Absolute tolerance for numbers in check outputs, for checks that set none in goldmaster.yaml; default: exact comparison.")
@click.option("--check-timeout", type=float, default=DEFAULT_TIMEOUT, show_default=True, metavar="SECONDS", help="Time limit for each run of a check.")
@click.option("--sign", "sign_key", type=click.Path(path_type=Path), metavar="KEY", help="Sign the bundle with this Ed25519 private key (PEM); writes BUNDLE.sig.json.")
@click.option("--image/--no-image", "image", default=None, help="Build and save the container image; default: when an engine is reachable (DOCKER_HOST or the default socket).")
@click.option("--base-image", metavar="REF", help="Base image for the Dockerfile; default: chosen from the captured Python and CUDA.")
@click.option("--image-weights/--no-image-weights", default=True, show_default=True, help="Copy the weights into the image, or expect them mounted at /opt/goldmaster/weights.")
@click.option("--tag", "tags", multiple=True, metavar="REF", help="Tag for the image; repeatable. Default: localhost/NAME:VERSION.")
@output_options
def capture_command(
    model_path: Path,
    params: tuple[str, ...],
    datasets: tuple[str, ...],
    excludes: tuple[str, ...],
    includes: tuple[str, ...],
    tags: tuple[str, ...],
    as_json: bool,
    reporter: Reporter,
    **kwargs: Any,
) -> None:
    """Write a golden-master bundle of MODEL_PATH, a model file or folder."""
    options = CaptureOptions(
        model=model_path,
        output=kwargs["output"],
        name=kwargs["name"],
        version=kwargs["version"],
        code=kwargs["code"],
        params=_parse_param(params),
        params_file=kwargs["params_file"],
        metrics_file=kwargs["metrics_file"],
        datasets=list(datasets),
        excludes=list(excludes),
        includes=list(includes),
        level=kwargs["level"],
        text_level=kwargs["text_level"],
        threads=kwargs["threads"],
        codec=kwargs["codec"],
        force=kwargs["force"],
        env=kwargs["env"],
        python=kwargs["python"],
        wheels=kwargs["wheels"],
        strict=kwargs["strict"],
        image=kwargs["image"],
        base_image=kwargs["base_image"],
        image_weights=kwargs["image_weights"],
        tags=list(tags),
        checks=list(kwargs["checks"]),
        check_outputs=list(kwargs["check_outputs"]),
        check_rtol=kwargs["check_rtol"],
        check_atol=kwargs["check_atol"],
        check_timeout=kwargs["check_timeout"],
    )
    signer = None
    if kwargs["sign_key"]:
        # Imported only to sign: the cryptography package is slow to import.
        from ..signing import load_signer, sign_capture

        signer = load_signer(kwargs["sign_key"])
    result = capture(options, reporter)
    signed = None
    if signer is not None:
        signed = sign_capture(result.bundle, result.sha256, result.manifest, signer)
    if as_json:
        extra = {"signature": signed.to_json()} if signed else {}
        print_json(result.to_json() | extra)
        return
    click.echo(
        f"{result.bundle}  {human_bytes(result.size)} from {human_bytes(result.input_bytes)}"
        f"  sha256 {result.sha256}"
    )
    if signed is not None:
        click.echo(f"{signed.signature}  signed by {signed.signer}")
