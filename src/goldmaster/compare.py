"""Compare a recorded output with a new one, exactly or within a numeric tolerance.

Exact comparison is by bytes. With a tolerance, numbers are compared element by
element with the rule of ``numpy.isclose``: ``|actual - expected| <= atol +
rtol * |expected|``. NaN equals NaN and an infinity equals only the same
infinity. Everything that is not a number must still match exactly.

Supported formats: JSON (numbers anywhere in the structure), CSV and TSV
(numeric cells), NumPy ``.npy`` and ``.npz``, safetensors, and plain text
whose numbers are parsed out of otherwise equal text. Any other file is
compared byte for byte. NumPy is needed only for ``.npy``, ``.npz`` and
safetensors, and is imported when such a file is compared.
"""

from __future__ import annotations

import csv
import difflib
import io
import itertools
import json
import math
import re
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import GoldmasterError

IDENTICAL = "identical"
WITHIN_TOLERANCE = "within_tolerance"
DIFFERENT = "different"

# Number of differing elements, and of diff lines, that a comparison reports.
SAMPLE_MISMATCHES = 5
MAX_DIFF_LINES = 12
MAX_LINE_WIDTH = 160

# A number in text: decimal, scientific, or nan/inf. The look-behind keeps
# "nan" in "banana" and digits glued to a word such as "layer12" out, so both
# sides split the same way.
NUMBER = re.compile(
    r"(?<![\w.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])"
    r"|(?<![\w.])[-+]?(?:nan|inf(?:inity)?)(?!\w)",
    re.IGNORECASE,
)

SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
    "BOOL": "?",
}  # fmt: skip
MAX_SAFETENSORS_HEADER = 100_000_000


class NumpyMissingError(GoldmasterError):
    """NumPy is needed to read an array output but is not installed."""


@dataclass(frozen=True)
class Tolerance:
    """Allowed numeric difference: ``atol + rtol * |expected|``."""

    rtol: float = 0.0
    atol: float = 0.0

    def describe(self) -> str:
        return f"rtol={self.rtol:g}, atol={self.atol:g}"


@dataclass
class Mismatch:
    """One differing element: where it is and both values as text."""

    location: str
    expected: str
    actual: str

    def to_json(self) -> dict[str, str]:
        return {
            "location": self.location,
            "expected": self.expected,
            "actual": self.actual,
        }


@dataclass
class Comparison:
    """The result of comparing one recorded output with a new one."""

    status: str
    format: str
    summary: str
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    compared: int = 0
    differing: int = 0
    first: Mismatch | None = None
    diff: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status in (IDENTICAL, WITHIN_TOLERANCE)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "format": self.format,
            "summary": self.summary,
            "max_abs_diff": plain_float(self.max_abs_diff),
            "max_rel_diff": plain_float(self.max_rel_diff),
            "compared": self.compared,
            "differing": self.differing,
            "first": self.first.to_json() if self.first else None,
            "diff": self.diff,
        }


def plain_float(value: float | None) -> float | str | None:
    """Return ``value`` as JSON and YAML can hold it: infinities and NaN as text."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


class _StructureDiffers(Exception):
    """The outputs differ in something other than numbers: keys, shapes, text."""

    def __init__(self, location: str, expected: str, actual: str) -> None:
        super().__init__(location)
        self.mismatch = Mismatch(location, expected, actual)


class _Tally:
    """Accumulates element-by-element numeric differences."""

    def __init__(self, tolerance: Tolerance) -> None:
        self.tolerance = tolerance
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.compared = 0
        self.differing = 0
        self.samples: list[tuple[Mismatch, float]] = []

    def number(self, location: str, expected: float, actual: float) -> None:
        abs_diff, rel_diff, ok = _scalar_difference(expected, actual, self.tolerance)
        self._count(abs_diff, rel_diff)
        if not ok:
            self._differ(
                Mismatch(location, _number_text(expected), _number_text(actual)),
                abs_diff,
            )

    def exact(self, location: str, expected: str, actual: str) -> None:
        """Count a non-numeric element that must match exactly."""
        self.compared += 1
        if expected != actual:
            self._differ(Mismatch(location, expected, actual), math.inf)

    def block(
        self,
        compared: int,
        differing: int,
        max_abs: float,
        max_rel: float,
        samples: list[tuple[Mismatch, float]],
    ) -> None:
        """Count a whole array compared at once."""
        self.compared += compared
        self.differing += differing
        self.max_abs = max(self.max_abs, max_abs)
        self.max_rel = max(self.max_rel, max_rel)
        self.samples.extend(samples[: SAMPLE_MISMATCHES - len(self.samples)])

    def _count(self, abs_diff: float, rel_diff: float) -> None:
        self.compared += 1
        self.max_abs = max(self.max_abs, abs_diff)
        self.max_rel = max(self.max_rel, rel_diff)

    def _differ(self, mismatch: Mismatch, abs_diff: float) -> None:
        self.differing += 1
        if len(self.samples) < SAMPLE_MISMATCHES:
            self.samples.append((mismatch, abs_diff))


def _scalar_difference(
    expected: float, actual: float, tolerance: Tolerance
) -> tuple[float, float, bool]:
    """Return absolute difference, relative difference and whether it is allowed."""
    if expected == actual or (math.isnan(expected) and math.isnan(actual)):
        return 0.0, 0.0, True
    if not (math.isfinite(expected) and math.isfinite(actual)):
        return math.inf, math.inf, False
    abs_diff = float(abs(actual - expected))
    scale = abs(expected)
    rel_diff = abs_diff / scale if scale else math.inf
    return abs_diff, rel_diff, abs_diff <= tolerance.atol + tolerance.rtol * scale


def _number_text(value: float) -> str:
    return json.dumps(value) if isinstance(value, (int, float)) else str(value)


def compare_outputs(
    name: str, expected: bytes, actual: bytes, tolerance: Tolerance | None = None
) -> Comparison:
    """Compare the recorded bytes of output ``name`` with a new run's bytes.

    Without ``tolerance`` only identical bytes pass, but a failure still names
    the first differing element when the format is known. The format follows
    the name's suffix; ``stdout`` and other text is read as JSON when the
    recorded text is a JSON object or array. Raises NumpyMissingError when an
    array format needs NumPy and it is not installed.
    """
    kind = detect_format(name, expected)
    if expected == actual:
        return Comparison(IDENTICAL, kind, "identical")
    try:
        tally = _compare_elements(kind, expected, actual, tolerance or Tolerance())
    except _StructureDiffers as exc:
        return _structure_result(kind, expected, actual, exc.mismatch)
    if tally is None:
        return _bytes_result(kind, expected, actual)
    return _tally_result(kind, expected, actual, tally, tolerance)


def detect_format(name: str, recorded: bytes) -> str:
    """Return the format used to compare output ``name``."""
    lowered = name.lower()
    for suffix, kind in (
        (".json", "json"),
        (".csv", "csv"),
        (".tsv", "tsv"),
        (".npy", "npy"),
        (".npz", "npz"),
        (".safetensors", "safetensors"),
    ):
        if lowered.endswith(suffix):
            return kind
    text = _decode(recorded)
    if text is None:
        return "bytes"
    if text.lstrip()[:1] in ("{", "[") and _parse_json(text) is not None:
        return "json"
    return "text"


def _decode(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None


def _compare_elements(
    kind: str, expected: bytes, actual: bytes, tolerance: Tolerance
) -> _Tally | None:
    """Compare element by element; None when the format has no elements."""
    tally = _Tally(tolerance)
    if kind == "json":
        _compare_json_bytes(expected, actual, tally)
    elif kind in ("csv", "tsv"):
        _compare_csv(expected, actual, "\t" if kind == "tsv" else ",", tally)
    elif kind == "text":
        _compare_text(expected, actual, tally)
    elif kind == "npy":
        _compare_npy(expected, actual, tally)
    elif kind == "npz":
        _compare_npz(expected, actual, tally)
    elif kind == "safetensors":
        _compare_safetensors(expected, actual, tally)
    else:
        return None
    return tally


# --- JSON ---------------------------------------------------------------------------


def _compare_json_bytes(expected: bytes, actual: bytes, tally: _Tally) -> None:
    recorded = _parse_json(_decode(expected) or "")
    if recorded is None and expected.strip() != b"null":
        raise _StructureDiffers(
            "$", "valid JSON", "the recorded output is not valid JSON"
        )
    text = _decode(actual)
    new = _parse_json(text) if text is not None else None
    if new is None and actual.strip() != b"null":
        raise _StructureDiffers("$", "valid JSON", "output that is not valid JSON")
    _compare_json(recorded, new, "$", tally)


def _compare_json(expected: Any, actual: Any, path: str, tally: _Tally) -> None:
    if _is_number(expected) and _is_number(actual):
        tally.number(path, expected, actual)
    elif isinstance(expected, dict) and isinstance(actual, dict):
        _compare_json_objects(expected, actual, path, tally)
    elif isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            raise _StructureDiffers(
                f"{path} length", str(len(expected)), str(len(actual))
            )
        for index, (left, right) in enumerate(zip(expected, actual)):
            _compare_json(left, right, f"{path}[{index}]", tally)
    elif type(expected) is type(actual):
        tally.exact(path, json.dumps(expected), json.dumps(actual))
    else:
        raise _StructureDiffers(path, _short_json(expected), _short_json(actual))


def _compare_json_objects(
    expected: dict[str, Any], actual: dict[str, Any], path: str, tally: _Tally
) -> None:
    missing = [key for key in expected if key not in actual]
    extra = [key for key in actual if key not in expected]
    if missing:
        raise _StructureDiffers(_json_key(path, missing[0]), "present", "missing")
    if extra:
        raise _StructureDiffers(_json_key(path, extra[0]), "absent", "present")
    for key, value in expected.items():
        _compare_json(value, actual[key], _json_key(path, key), tally)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_key(path: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


def _short_json(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- CSV ----------------------------------------------------------------------------


def _compare_csv(expected: bytes, actual: bytes, delimiter: str, tally: _Tally) -> None:
    recorded = _csv_rows(expected, delimiter)
    new = _csv_rows(actual, delimiter)
    if len(recorded) != len(new):
        raise _StructureDiffers("row count", str(len(recorded)), str(len(new)))
    header = (
        recorded[0]
        if recorded and not any(_float(c) is not None for c in recorded[0])
        else None
    )
    for number, (left_row, right_row) in enumerate(zip(recorded, new), start=1):
        if len(left_row) != len(right_row):
            raise _StructureDiffers(
                f"row {number} cell count", str(len(left_row)), str(len(right_row))
            )
        for column, (left, right) in enumerate(zip(left_row, right_row)):
            _compare_cell(_cell_location(number, column, header), left, right, tally)


def _csv_rows(data: bytes, delimiter: str) -> list[list[str]]:
    text = _decode(data)
    if text is None:
        raise _StructureDiffers("encoding", "UTF-8 text", "bytes that are not UTF-8")
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise _StructureDiffers("syntax", "valid CSV", f"invalid CSV ({exc})") from exc


def _compare_cell(location: str, left: str, right: str, tally: _Tally) -> None:
    left_number, right_number = _float(left), _float(right)
    if left_number is not None and right_number is not None:
        tally.number(location, left_number, right_number)
    else:
        tally.exact(location, left, right)


def _cell_location(row: int, column: int, header: list[str] | None) -> str:
    if header is not None and column < len(header) and header[column]:
        return f"row {row}, column {header[column]!r}"
    return f"row {row}, column {column + 1}"


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# --- text ---------------------------------------------------------------------------


def _compare_text(expected: bytes, actual: bytes, tally: _Tally) -> None:
    recorded, new = _decode(expected), _decode(actual)
    if recorded is None or new is None:
        raise _StructureDiffers("encoding", "UTF-8 text", "bytes that are not UTF-8")
    left_lines, right_lines = recorded.splitlines(), new.splitlines()
    for number, (left, right) in enumerate(zip(left_lines, right_lines), start=1):
        _compare_line(number, left, right, tally)
    if len(left_lines) != len(right_lines):
        raise _StructureDiffers(
            "line count", str(len(left_lines)), str(len(right_lines))
        )


def _compare_line(number: int, left: str, right: str, tally: _Tally) -> None:
    left_parts, right_parts = NUMBER.split(left), NUMBER.split(right)
    left_numbers, right_numbers = NUMBER.findall(left), NUMBER.findall(right)
    if left_parts != right_parts or len(left_numbers) != len(right_numbers):
        raise _StructureDiffers(f"line {number}", _clip(left), _clip(right))
    for index, (a, b) in enumerate(zip(left_numbers, right_numbers), start=1):
        tally.number(f"line {number}, number {index}", float(a), float(b))


# --- NumPy arrays: .npy, .npz, safetensors -----------------------------------------


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:
        raise NumpyMissingError(
            "comparing .npy, .npz and safetensors outputs needs NumPy, which is not installed",
            "install it where goldmaster runs: pip install 'goldmaster[checks]'",
        ) from exc
    return numpy


def _compare_npy(expected: bytes, actual: bytes, tally: _Tally) -> None:
    np = _numpy()
    left = _load_array_file(np, expected, "recorded")
    right = _load_array_file(np, actual, "new")
    _compare_arrays(np, "", left, right, tally)


def _compare_npz(expected: bytes, actual: bytes, tally: _Tally) -> None:
    np = _numpy()
    left = _load_array_file(np, expected, "recorded")
    right = _load_array_file(np, actual, "new")
    _compare_named_arrays(np, left, right, tally)


def _load_array_file(np: Any, data: bytes, side: str) -> Any:
    """Load a .npy array, or the arrays of a .npz file as a dict, without pickle."""
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if hasattr(loaded, "files"):
            return {name: loaded[name] for name in loaded.files}
        return loaded
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _StructureDiffers(
            "file",
            "a NumPy file without pickled objects",
            f"the {side} output is not one ({exc})",
        ) from exc


def _compare_named_arrays(
    np: Any, left: dict[str, Any], right: dict[str, Any], tally: _Tally
) -> None:
    for name in sorted(left):
        if name not in right:
            raise _StructureDiffers(f"array {name!r}", "present", "missing")
    for name in sorted(right):
        if name not in left:
            raise _StructureDiffers(f"array {name!r}", "absent", "present")
    for name in sorted(left):
        _compare_arrays(np, name, left[name], right[name], tally)


def _compare_safetensors(expected: bytes, actual: bytes, tally: _Tally) -> None:
    np = _numpy()
    left_meta, left = _safetensors_arrays(np, expected, "recorded")
    right_meta, right = _safetensors_arrays(np, actual, "new")
    if left_meta != right_meta:
        raise _StructureDiffers(
            "__metadata__", _short_json(left_meta), _short_json(right_meta)
        )
    for name in sorted(set(left) & set(right)):
        if left[name][0] != right[name][0]:
            raise _StructureDiffers(f"{name} dtype", left[name][0], right[name][0])
    _compare_named_arrays(
        np,
        {name: array for name, (_, array) in left.items()},
        {name: array for name, (_, array) in right.items()},
        tally,
    )


def _safetensors_arrays(
    np: Any, data: bytes, side: str
) -> tuple[Any, dict[str, tuple[str, Any]]]:
    """Return the metadata and each tensor as (safetensors dtype, array)."""
    try:
        header, block = read_safetensors(data)
        tensors = {
            name: (str(entry["dtype"]), _tensor_array(np, entry, block))
            for name, entry in header.items()
            if name != "__metadata__"
        }
    except (ValueError, TypeError, KeyError) as exc:
        raise _StructureDiffers(
            "file", "a valid safetensors file", f"the {side} output is not one ({exc})"
        ) from exc
    return header.get("__metadata__"), tensors


def _tensor_array(np: Any, entry: dict[str, Any], block: memoryview) -> Any:
    start, end = (int(offset) for offset in entry["data_offsets"])
    if not 0 <= start <= end <= len(block):
        raise ValueError("a tensor points past the end of the file")
    raw = block[start:end]
    dtype = str(entry["dtype"])
    shape = [int(size) for size in entry["shape"]]
    if dtype == "BF16":
        # bfloat16 is the upper half of a float32, so widening is exact.
        widened = np.frombuffer(raw, "<u2").astype("<u4") << 16
        return widened.view("<f4").reshape(shape)
    if dtype in SAFETENSORS_DTYPES:
        return np.frombuffer(raw, SAFETENSORS_DTYPES[dtype]).reshape(shape)
    # NOTE: NumPy has no float8 types, so F8 tensors and unknown dtypes are
    # compared byte for byte, even with a tolerance.
    return np.frombuffer(raw, "V1")


def _compare_arrays(
    np: Any, name: str, expected: Any, actual: Any, tally: _Tally
) -> None:
    if expected.shape != actual.shape:
        raise _StructureDiffers(
            f"{name} shape".strip(), str(expected.shape), str(actual.shape)
        )
    if expected.dtype != actual.dtype:
        raise _StructureDiffers(
            f"{name} dtype".strip(), str(expected.dtype), str(actual.dtype)
        )
    left, right = expected.reshape(-1), actual.reshape(-1)
    if expected.dtype.kind in "iufc":
        differing, abs_diff, rel_diff = _numeric_differences(
            np, left, right, tally.tolerance
        )
    elif expected.dtype.kind in "bUS":
        differing = left != right
        abs_diff = rel_diff = np.where(differing, np.inf, 0.0)
    else:
        differing = np.array([left.tobytes() != right.tobytes()])
        abs_diff = rel_diff = np.where(differing, np.inf, 0.0)
    indices = np.flatnonzero(differing)
    samples = [
        (
            Mismatch(
                _array_location(np, name, expected.shape, i),
                str(left[i]),
                str(right[i]),
            ),
            float(abs_diff[i]),
        )
        for i in indices[:SAMPLE_MISMATCHES]
    ]
    tally.block(
        left.size,
        len(indices),
        float(abs_diff.max()) if abs_diff.size else 0.0,
        float(rel_diff.max()) if rel_diff.size else 0.0,
        samples,
    )


def _numeric_differences(
    np: Any, left: Any, right: Any, tolerance: Tolerance
) -> tuple[Any, Any, Any]:
    """Return the differing mask, absolute and relative differences, with the
    same rules as _scalar_difference."""
    work = np.complex128 if left.dtype.kind == "c" else np.float64
    left, right = left.astype(work), right.astype(work)
    with np.errstate(all="ignore"):
        same = (left == right) | (np.isnan(left) & np.isnan(right))
        finite = np.isfinite(left) & np.isfinite(right)
        abs_diff = np.where(same, 0.0, np.where(finite, np.abs(right - left), np.inf))
        scale = np.abs(left)
        rel_diff = np.where(
            abs_diff == 0, 0.0, np.where(scale > 0, abs_diff / scale, np.inf)
        )
        bound = tolerance.atol + tolerance.rtol * scale
        differing = ~same & (~finite | (abs_diff > bound))
    return differing, abs_diff, rel_diff


def _array_location(np: Any, name: str, shape: tuple[int, ...], flat_index: int) -> str:
    if not shape:
        return name or "value"
    index = ", ".join(str(int(i)) for i in np.unravel_index(flat_index, shape))
    return f"{name}[{index}]"


# --- results ------------------------------------------------------------------------


def _tally_result(
    kind: str,
    expected: bytes,
    actual: bytes,
    tally: _Tally,
    tolerance: Tolerance | None,
) -> Comparison:
    if tally.differing == 0 and tolerance is None:
        # Every element is equal although the bytes differ, such as 1.0
        # against 1.00 or changed whitespace; exact comparison still fails.
        result = _bytes_result(kind, expected, actual)
        result.compared = tally.compared
        result.max_abs_diff, result.max_rel_diff = tally.max_abs, tally.max_rel
        result.summary = f"values equal, but the bytes differ: {result.summary}"
        return result
    result = Comparison(
        WITHIN_TOLERANCE if tally.differing == 0 else DIFFERENT,
        kind,
        "",
        max_abs_diff=tally.max_abs,
        max_rel_diff=tally.max_rel,
        compared=tally.compared,
        differing=tally.differing,
        first=tally.samples[0][0] if tally.samples else None,
    )
    rule = (tolerance or Tolerance()).describe()
    if result.status == WITHIN_TOLERANCE:
        values = "value" if tally.compared == 1 else "values"
        result.summary = (
            f"{tally.compared} {values} within {rule}: max abs diff {tally.max_abs:.3g},"
            f" max rel diff {tally.max_rel:.3g}"
        )
        return result
    first = tally.samples[0][0]
    result.summary = (
        f"{tally.differing} of {tally.compared} values differ beyond {rule}; first at"
        f" {first.location}: expected {first.expected}, got {first.actual}"
    )
    result.diff = [_mismatch_line(m, d) for m, d in tally.samples]
    if tally.differing > len(tally.samples):
        result.diff.append(f"... and {tally.differing - len(tally.samples)} more")
    return result


def _mismatch_line(mismatch: Mismatch, abs_diff: float) -> str:
    line = f"{mismatch.location}: expected {mismatch.expected}, got {mismatch.actual}"
    if math.isfinite(abs_diff):
        line += f" (abs diff {abs_diff:.3g})"
    return line


def _structure_result(
    kind: str, expected: bytes, actual: bytes, mismatch: Mismatch
) -> Comparison:
    return Comparison(
        DIFFERENT,
        kind,
        f"{mismatch.location} differs: expected {mismatch.expected}, got {mismatch.actual}",
        differing=1,
        first=mismatch,
        diff=text_diff(expected, actual),
    )


def _bytes_result(kind: str, expected: bytes, actual: bytes) -> Comparison:
    offset = next(
        (i for i, (a, b) in enumerate(zip(expected, actual)) if a != b),
        min(len(expected), len(actual)),
    )
    mismatch = Mismatch(
        f"byte {offset}",
        _byte_text(expected, offset),
        _byte_text(actual, offset),
    )
    summary = (
        f"bytes differ from offset {offset}"
        f" (sizes {len(expected)} and {len(actual)} bytes)"
    )
    return Comparison(
        DIFFERENT,
        kind,
        summary,
        differing=1,
        first=mismatch,
        diff=text_diff(expected, actual),
    )


def _byte_text(data: bytes, offset: int) -> str:
    if offset >= len(data):
        return "end of file"
    return f"0x{data[offset]:02x}"


def text_diff(expected: bytes, actual: bytes) -> list[str]:
    """Return a short unified diff of two texts, or nothing for binary data.

    Long lines are cut to a window around their first difference.
    """
    left, right = _decode(expected), _decode(actual)
    if left is None or right is None:
        return []
    lines = difflib.unified_diff(
        left.splitlines(), right.splitlines(), "recorded", "new", n=0, lineterm=""
    )
    samples = list(_clip_pairs(list(itertools.islice(lines, MAX_DIFF_LINES + 1))))
    if len(samples) > MAX_DIFF_LINES:
        samples = samples[:MAX_DIFF_LINES] + ["..."]
    return samples


def _clip_pairs(lines: list[str]) -> Iterator[str]:
    """Cut long removed and added lines around the column where the first
    removed and the first added line differ."""
    removed = [line[1:] for line in lines if line[:1] == "-" and line[:3] != "---"]
    added = [line[1:] for line in lines if line[:1] == "+" and line[:3] != "+++"]
    column = _first_difference(removed[0], added[0]) if removed and added else 0
    start = max(column - MAX_LINE_WIDTH // 3, 0)
    for line in lines:
        if len(line) <= MAX_LINE_WIDTH or line.startswith(("---", "+++", "@@")):
            yield line
        else:
            yield line[0] + _clip(line[1:], start)


def _first_difference(left: str, right: str) -> int:
    pairs = zip(left, right)
    return next(
        (i for i, (a, b) in enumerate(pairs) if a != b), min(len(left), len(right))
    )


def _clip(text: str, start: int = 0) -> str:
    """Return up to MAX_LINE_WIDTH characters of ``text`` from ``start``, marking cuts."""
    if len(text) <= MAX_LINE_WIDTH:
        return text
    window = text[start : start + MAX_LINE_WIDTH]
    prefix = "..." if start > 0 else ""
    suffix = "..." if start + MAX_LINE_WIDTH < len(text) else ""
    return f"{prefix}{window}{suffix}"


# --- safetensors header, shared with arrays ------------------------------------------


def read_safetensors(data: bytes) -> tuple[dict[str, Any], memoryview]:
    """Split a safetensors file into its JSON header and its data block.

    Raises ValueError when the header is missing or is not JSON, and
    TypeError when it is not a JSON object.
    """
    if len(data) < 8:
        raise ValueError("shorter than the 8-byte header length")
    (length,) = struct.unpack("<Q", data[:8])
    if length > MAX_SAFETENSORS_HEADER or 8 + length > len(data):
        raise ValueError(f"header length {length} does not fit the file")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise TypeError("header is not a JSON object")
    return header, memoryview(data)[8 + length :]
