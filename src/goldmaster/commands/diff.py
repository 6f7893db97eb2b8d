"""goldmaster diff."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..console import human_bytes, print_json
from ..diff import ManifestDiff, diff_manifests, origin_text
from ..errors import EXIT_FAILED
from ..progress import Reporter
from ..registry import manifest_of
from .common import output_options
from .remote import insecure_option


@click.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option(
    "--exit-code", is_flag=True, help="Exit with status 1 when the bundles differ."
)
@insecure_option
@output_options
def diff_command(
    a: str, b: str, as_json: bool, reporter: Reporter, **kwargs: Any
) -> None:
    """Show what changed from bundle A to bundle B.

    A and B are bundle files or registry references; for a reference only
    the manifest blob is downloaded. Compares weights, packages, CUDA, driver,
    cuDNN, GPU and Python versions, the code's git state, parameters and metrics.
    """
    insecure = kwargs["insecure"]
    manifest_a = manifest_of(a, insecure=insecure, reporter=reporter)
    manifest_b = manifest_of(b, insecure=insecure, reporter=reporter)
    result = diff_manifests(manifest_a, manifest_b, a, b)
    if as_json:
        print_json(result.to_json())
    else:
        for line in render_diff(result):
            click.echo(line)
    if kwargs["exit_code"] and not result.identical:
        sys.exit(EXIT_FAILED)


def render_diff(result: ManifestDiff) -> list[str]:
    """Return the diff as lines of text, one section after another."""
    lines = [
        f"a: {result.a['name']} {result.a['version']}  ({result.a['source']})",
        f"b: {result.b['name']} {result.b['version']}  ({result.b['source']})",
    ]
    lines += _files_lines("Weights", result.weights)
    lines += _package_lines(result.packages)
    lines += _facts_lines("System", result.system)
    lines += _facts_lines("Code", result.code)
    lines += _files_lines("Code files", result.code["files"])
    lines += _value_lines("Parameters", result.params)
    lines += _value_lines("Metrics", result.metrics)
    if result.identical:
        lines += [
            "",
            "no differences in weights, packages, system, code, parameters or metrics",
        ]
    return lines


def _files_lines(title: str, section: dict[str, Any]) -> list[str]:
    if not (section["added"] or section["removed"] or section["changed"]):
        return []
    summary = (
        f"{title}: {len(section['changed'])} changed, {len(section['added'])} added, "
        f"{len(section['removed'])} removed, {section['unchanged']} unchanged"
    )
    lines = ["", summary]
    for item in section["changed"]:
        lines.append(
            f"  changed  {item['path']}  {_sizes(item['a']['size'], item['b']['size'])}  "
            f"sha256 {item['a']['sha256'][:12]} -> {item['b']['sha256'][:12]}"
        )
    lines += [
        f"  added    {i['path']}  {human_bytes(i['size'])}" for i in section["added"]
    ]
    lines += [
        f"  removed  {i['path']}  {human_bytes(i['size'])}" for i in section["removed"]
    ]
    return lines


def _sizes(before: int, after: int) -> str:
    """Show both sizes, in bytes when the rounded sizes would look equal."""
    if human_bytes(before) == human_bytes(after) and before != after:
        return f"{before:,} B -> {after:,} B"
    return f"{human_bytes(before)} -> {human_bytes(after)}"


def _package_lines(section: dict[str, Any]) -> list[str]:
    if not section["compared"]:
        missing = [side for side, present in section["recorded"].items() if not present]
        return [
            "",
            f"Packages: not compared, no environment recorded in {' and '.join(missing)}",
        ]
    if not (section["added"] or section["removed"] or section["changed"]):
        return []
    lines = ["", "Packages:"]
    for item in section["added"]:
        lines.append(
            f"  added    {item['name']} {item['version']}  ({origin_text(item['origin'])})"
        )
    for item in section["removed"]:
        lines.append(
            f"  removed  {item['name']} {item['version']}  ({origin_text(item['origin'])})"
        )
    for item in section["changed"]:
        parts = []
        if item["version"]:
            parts.append(f"{item['version']['a']} -> {item['version']['b']}")
        if item["origin"]:
            parts.append(
                f"origin {origin_text(item['origin']['a'])} -> {origin_text(item['origin']['b'])}"
            )
        lines.append(f"  changed  {item['name']}  {'; '.join(parts)}")
    return lines


def _facts_lines(title: str, section: dict[str, Any]) -> list[str]:
    if not section["changed"]:
        return []
    lines = ["", f"{title}:"]
    for name in section["changed"]:
        before = _text(section["a"].get(name))
        after = _text(section["b"].get(name))
        lines.append(f"  {name}  {before} -> {after}")
    return lines


def _value_lines(title: str, section: dict[str, Any]) -> list[str]:
    if not (section["added"] or section["removed"] or section["changed"]):
        return []
    lines = ["", f"{title}:"]
    for item in section["changed"]:
        delta = ""
        if item["delta"] is not None:
            delta = f"  ({item['delta']:+g}"
            delta += (
                f", {item['relative']:+.1%})" if item["relative"] is not None else ")"
            )
        lines.append(
            f"  changed  {item['key']}  {_text(item['a'])} -> {_text(item['b'])}{delta}"
        )
    lines += [f"  added    {i['key']} = {_text(i['value'])}" for i in section["added"]]
    lines += [
        f"  removed  {i['key']} = {_text(i['value'])}" for i in section["removed"]
    ]
    return lines


def _text(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value)
