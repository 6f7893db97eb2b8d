"""Comparison of recorded and new check outputs, exactly and within a tolerance.

The bounds are chosen so that the differences are exact in binary floating
point: 2.0 against 2.25 differs by exactly 0.25.
"""

from __future__ import annotations

import io
import json
import struct
import sys
from typing import Any

import numpy as np
import pytest

from goldmaster.compare import (
    DIFFERENT,
    IDENTICAL,
    WITHIN_TOLERANCE,
    NumpyMissingError,
    Tolerance,
    compare_outputs,
    detect_format,
)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _safetensors(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blob = b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [len(blob), len(blob) + len(data)],
        }
        blob += data
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + blob


def test_identical_bytes_are_identical() -> None:
    result = compare_outputs("stdout", b"loss 0.5\n", b"loss 0.5\n")

    assert result.status == IDENTICAL
    assert result.passed


# --- JSON ----------------------------------------------------------------------------


JSON_EXPECTED = {"model": "m", "scores": [[1.0, 2.0], [3, 4.5]], "ok": True}
JSON_ACTUAL = {"model": "m", "scores": [[1.0, 2.25], [3, 4.5]], "ok": True}


@pytest.mark.parametrize(
    ("tolerance", "status"),
    [
        (Tolerance(atol=0.25), WITHIN_TOLERANCE),
        (Tolerance(atol=0.24), DIFFERENT),
        (Tolerance(rtol=0.125), WITHIN_TOLERANCE),
        (Tolerance(rtol=0.12), DIFFERENT),
        (Tolerance(rtol=0.0625, atol=0.125), WITHIN_TOLERANCE),
        (Tolerance(rtol=0.0625, atol=0.12), DIFFERENT),
    ],
)
def test_json_tolerance_bound(tolerance: Tolerance, status: str) -> None:
    result = compare_outputs(
        "out.json", _json(JSON_EXPECTED), _json(JSON_ACTUAL), tolerance
    )

    assert result.status == status
    assert result.max_abs_diff == 0.25
    assert result.max_rel_diff == 0.125


def test_json_difference_names_first_element() -> None:
    result = compare_outputs("out.json", _json(JSON_EXPECTED), _json(JSON_ACTUAL))

    assert result.status == DIFFERENT
    assert result.format == "json"
    assert result.first is not None
    assert result.first.location == "$.scores[0][1]"
    assert result.first.expected == "2.0"
    assert result.first.actual == "2.25"
    assert result.differing == 1
    assert result.diff == ["$.scores[0][1]: expected 2.0, got 2.25 (abs diff 0.25)"]


def test_json_stdout_is_detected() -> None:
    assert detect_format("stdout", b'{"a": 1}\n') == "json"
    assert detect_format("stdout", b"1.5\n") == "text"
    assert detect_format("stdout", b"\xff\xfe") == "bytes"


@pytest.mark.parametrize(
    ("actual", "location"),
    [
        ({"model": "m", "scores": [[1.0, 2.0], [3, 4.5]]}, "$.ok"),
        ({"model": "x", "scores": [[1.0, 2.0], [3, 4.5]], "ok": True}, "$.model"),
        ({"model": "m", "scores": [[1.0, 2.0]], "ok": True}, "$.scores length"),
        (
            {"model": "m", "scores": [[1.0, None], [3, 4.5]], "ok": True},
            "$.scores[0][1]",
        ),
        ({"model": "m", "scores": [[1.0, 2.0], [3, 4.5]], "ok": 1}, "$.ok"),
    ],
)
def test_json_structure_differs_beyond_any_tolerance(
    actual: dict[str, Any], location: str
) -> None:
    result = compare_outputs(
        "out.json", _json(JSON_EXPECTED), _json(actual), Tolerance(rtol=1, atol=1)
    )

    assert result.status == DIFFERENT
    assert result.first is not None
    assert result.first.location == location


def test_json_reformatted_fails_exact_but_passes_tolerance() -> None:
    expected = b'{"a": [1.0, 2.0]}'
    actual = b'{"a": [1.00, 2.0]}'

    exact = compare_outputs("out.json", expected, actual)
    tolerant = compare_outputs("out.json", expected, actual, Tolerance())

    assert exact.status == DIFFERENT
    assert exact.summary.startswith("values equal, but the bytes differ")
    assert tolerant.status == WITHIN_TOLERANCE
    assert tolerant.max_abs_diff == 0.0


def test_json_invalid_new_output_differs() -> None:
    result = compare_outputs("out.json", b'{"a": 1}', b'{"a": 1', Tolerance(atol=1))

    assert result.status == DIFFERENT
    assert "not valid JSON" in result.summary


# --- CSV -----------------------------------------------------------------------------


CSV_EXPECTED = b"name,score,count\nalpha,2.0,3\nbeta,4,5\n"
CSV_ACTUAL = b"name,score,count\nalpha,2.25,3\nbeta,4,5\n"


@pytest.mark.parametrize(
    ("tolerance", "status"),
    [
        (Tolerance(atol=0.25), WITHIN_TOLERANCE),
        (Tolerance(atol=0.24), DIFFERENT),
        (Tolerance(rtol=0.125), WITHIN_TOLERANCE),
        (Tolerance(rtol=0.12), DIFFERENT),
    ],
)
def test_csv_tolerance_bound(tolerance: Tolerance, status: str) -> None:
    result = compare_outputs("scores.csv", CSV_EXPECTED, CSV_ACTUAL, tolerance)

    assert result.status == status
    assert result.max_abs_diff == 0.25


def test_csv_difference_names_row_and_column() -> None:
    result = compare_outputs("scores.csv", CSV_EXPECTED, CSV_ACTUAL)

    assert result.first is not None
    assert result.first.location == "row 2, column 'score'"
    assert result.first.expected == "2.0"
    assert result.first.actual == "2.25"


def test_csv_text_cell_must_match() -> None:
    actual = b"name,score,count\nALPHA,2.0,3\nbeta,4,5\n"

    result = compare_outputs("scores.csv", CSV_EXPECTED, actual, Tolerance(atol=1))

    assert result.status == DIFFERENT
    assert result.first is not None
    assert result.first.location == "row 2, column 'name'"


def test_csv_row_count_differs() -> None:
    result = compare_outputs(
        "scores.csv", CSV_EXPECTED, CSV_EXPECTED + b"gamma,1,1\n", Tolerance(atol=1)
    )

    assert result.status == DIFFERENT
    assert result.summary == "row count differs: expected 3, got 4"


def test_tsv_without_header_uses_column_numbers() -> None:
    result = compare_outputs("out.tsv", b"1\t2\n", b"1\t3\n")

    assert result.first is not None
    assert result.first.location == "row 1, column 2"


# --- NumPy ---------------------------------------------------------------------------


NPY_EXPECTED = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
NPY_ACTUAL = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]], dtype=np.float32)


@pytest.mark.parametrize(
    ("tolerance", "status"),
    [
        (Tolerance(atol=0.5), WITHIN_TOLERANCE),
        (Tolerance(atol=0.49), DIFFERENT),
        (Tolerance(rtol=0.5 / 6), WITHIN_TOLERANCE),
        (Tolerance(rtol=0.08), DIFFERENT),
    ],
)
def test_npy_tolerance_bound(tolerance: Tolerance, status: str) -> None:
    result = compare_outputs("e.npy", _npy(NPY_EXPECTED), _npy(NPY_ACTUAL), tolerance)

    assert result.status == status
    assert result.max_abs_diff == 0.5
    assert result.compared == 6


def test_npy_difference_names_index() -> None:
    result = compare_outputs("e.npy", _npy(NPY_EXPECTED), _npy(NPY_ACTUAL))

    assert result.status == DIFFERENT
    assert result.first is not None
    assert result.first.location == "[1, 2]"
    assert result.first.expected == "6.0"
    assert result.first.actual == "6.5"


@pytest.mark.parametrize(
    "actual",
    [NPY_EXPECTED.astype(np.float64), NPY_EXPECTED.reshape(3, 2), NPY_EXPECTED[:1]],
)
def test_npy_shape_or_dtype_change_differs(actual: np.ndarray) -> None:
    result = compare_outputs(
        "e.npy", _npy(NPY_EXPECTED), _npy(actual), Tolerance(rtol=1, atol=1)
    )

    assert result.status == DIFFERENT
    assert result.first is not None
    assert result.first.location in ("shape", "dtype")


def test_npy_nan_and_infinity_rules() -> None:
    expected = np.array([np.nan, np.inf, 1.0])

    same = compare_outputs(
        "e.npy",
        _npy(expected),
        _npy(np.array([np.nan, np.inf, 1.5])),
        Tolerance(atol=1),
    )
    flipped = compare_outputs(
        "e.npy",
        _npy(expected),
        _npy(np.array([np.nan, -np.inf, 1.0])),
        Tolerance(atol=1),
    )
    lost = compare_outputs(
        "e.npy", _npy(expected), _npy(np.array([0.0, np.inf, 1.0])), Tolerance(atol=1)
    )

    assert same.status == WITHIN_TOLERANCE
    assert flipped.status == DIFFERENT
    assert flipped.first is not None
    assert flipped.first.location == "[1]"
    assert lost.status == DIFFERENT
    assert lost.first is not None
    assert lost.first.location == "[0]"


def test_npy_string_array_compared_exactly() -> None:
    result = compare_outputs(
        "labels.npy",
        _npy(np.array(["cat", "dog"])),
        _npy(np.array(["cat", "cow"])),
        Tolerance(atol=1),
    )

    assert result.status == DIFFERENT
    assert result.first is not None
    assert result.first.location == "[1]"
    assert result.first.actual == "cow"


def test_npz_compares_each_array() -> None:
    expected = _npz(weights=np.ones(3), bias=np.zeros(2))
    actual = _npz(weights=np.ones(3), bias=np.array([0.0, 0.25]))

    inside = compare_outputs("p.npz", expected, actual, Tolerance(atol=0.25))
    outside = compare_outputs("p.npz", expected, actual, Tolerance(atol=0.125))
    renamed = compare_outputs("p.npz", expected, _npz(w=np.ones(3), bias=np.zeros(2)))

    assert inside.status == WITHIN_TOLERANCE
    assert outside.status == DIFFERENT
    assert outside.first is not None
    assert outside.first.location == "bias[1]"
    assert renamed.status == DIFFERENT
    assert renamed.first is not None
    assert renamed.first.location == "array 'weights'"
    assert renamed.first.actual == "missing"


def test_safetensors_compares_tensors() -> None:
    values = np.array([1.0, 2.0], dtype="<f4")
    changed = np.array([1.0, 2.25], dtype="<f4")
    expected = _safetensors({"w": ("F32", [2], values.tobytes())})
    actual = _safetensors({"w": ("F32", [2], changed.tobytes())})

    inside = compare_outputs("m.safetensors", expected, actual, Tolerance(atol=0.25))
    outside = compare_outputs("m.safetensors", expected, actual, Tolerance(atol=0.125))

    assert inside.status == WITHIN_TOLERANCE
    assert outside.status == DIFFERENT
    assert outside.first is not None
    assert outside.first.location == "w[1]"


def test_safetensors_bfloat16_is_widened() -> None:
    # bfloat16 1.0 is 0x3f80 and 1.5 is 0x3fc0.
    expected = _safetensors({"b": ("BF16", [1], struct.pack("<H", 0x3F80))})
    actual = _safetensors({"b": ("BF16", [1], struct.pack("<H", 0x3FC0))})

    result = compare_outputs("m.safetensors", expected, actual)

    assert result.first is not None
    assert result.first.expected == "1.0"
    assert result.first.actual == "1.5"


def test_safetensors_dtype_change_differs() -> None:
    expected = _safetensors({"b": ("BF16", [2], b"\x80\x3f\x80\x3f")})
    actual = _safetensors({"b": ("F16", [2], b"\x00\x3c\x00\x3c")})

    result = compare_outputs("m.safetensors", expected, actual, Tolerance(atol=1))

    assert result.status == DIFFERENT
    assert result.first is not None
    assert result.first.location == "b dtype"


def test_array_formats_need_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    expected, actual = _npy(NPY_EXPECTED), _npy(NPY_ACTUAL)
    monkeypatch.setitem(sys.modules, "numpy", None)

    with pytest.raises(NumpyMissingError) as raised:
        compare_outputs("e.npy", expected, actual)

    assert "needs NumPy" in raised.value.message
    assert compare_outputs("e.npy", expected, expected).status == IDENTICAL


# --- text ----------------------------------------------------------------------------


TEXT_EXPECTED = b"epoch 1 loss 2.0 acc 0.5\nbanana nan\ndone\n"
TEXT_ACTUAL = b"epoch 1 loss 2.25 acc 0.5\nbanana nan\ndone\n"


@pytest.mark.parametrize(
    ("tolerance", "status"),
    [(Tolerance(atol=0.25), WITHIN_TOLERANCE), (Tolerance(atol=0.24), DIFFERENT)],
)
def test_text_numbers_tolerance_bound(tolerance: Tolerance, status: str) -> None:
    result = compare_outputs("stdout", TEXT_EXPECTED, TEXT_ACTUAL, tolerance)

    assert result.status == status
    assert result.format == "text"
    assert result.compared == 4


def test_text_difference_names_line_and_number() -> None:
    result = compare_outputs("stdout", TEXT_EXPECTED, TEXT_ACTUAL)

    assert result.first is not None
    assert result.first.location == "line 1, number 2"
    assert result.first.expected == "2.0"
    assert result.first.actual == "2.25"


def test_text_words_must_match() -> None:
    actual = TEXT_EXPECTED.replace(b"done", b"fail")

    result = compare_outputs("stdout", TEXT_EXPECTED, actual, Tolerance(atol=10))

    assert result.status == DIFFERENT
    assert result.first is not None
    assert result.first.location == "line 3"
    assert result.diff == ["--- recorded", "+++ new", "@@ -3 +3 @@", "-done", "+fail"]


def test_long_line_diff_is_cut_around_difference() -> None:
    expected = ("x" * 500 + "A" + "y" * 500).encode()
    actual = ("x" * 500 + "B" + "y" * 500).encode()

    result = compare_outputs("log.txt", expected, actual)

    (removed,) = [line for line in result.diff if line[:1] == "-" and line[:3] != "---"]
    assert removed.startswith("-...")
    assert "xA" in removed
    assert len(removed) < 200


def test_binary_output_compared_by_bytes() -> None:
    result = compare_outputs(
        "image.png", b"\x89PNG\x00\x01", b"\x89PNG\x00\x02", Tolerance(atol=1)
    )

    assert result.status == DIFFERENT
    assert result.format == "bytes"
    assert result.first is not None
    assert result.first.location == "byte 5"
