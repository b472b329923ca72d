"""Malformed uploads: each is rejected with its status and a message naming the problem,
and none leaves a dataset row or blob behind."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.settings import Settings
from tests.services.api.conftest import assert_problem
from tests.services.datasets.conftest import TEST_UPLOAD_LIMIT
from tests.services.datasets.helpers import count_rows, npz_bytes


@dataclass(frozen=True)
class Case:
    """One malformed upload: the multipart parts to send and the expected problem."""

    id: str
    files: dict[str, Any]
    status: int
    words: tuple[str, ...]
    data: dict[str, str] = field(default_factory=dict)


def _csv(case_id: str, text: str | bytes, status: int, *words: str, **data: str) -> Case:
    content = text.encode() if isinstance(text, str) else text
    return Case(case_id, {"file": (f"{case_id}.csv", content)}, status, words, data)


def _json(case_id: str, content: Any, *words: str) -> Case:
    text = content if isinstance(content, str) else json.dumps(content)
    return Case(case_id, {"file": (f"{case_id}.json", text.encode())}, 422, words)


def _npz(case_id: str, content: bytes, *words: str, **data: str) -> Case:
    return Case(case_id, {"file": (f"{case_id}.npz", content)}, 422, words, data)


WIDE_HEADER = ",".join(f"c{i}" for i in range(10_001)) + "\n" + ",".join(["1"] * 10_001) + "\n"
MANY_CATEGORIES = "id,y\n" + "".join(f"user{i},{i % 2}\n" for i in range(1_001))
XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
RANDOM_BYTES = np.random.default_rng(0).bytes(2048)
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + np.random.default_rng(1).bytes(200)
NOT_TEXT = "is not a CSV or JSON text file"
ACCEPTED = ".npz file with arrays x and y"

CASES = [
    _csv("ragged-rows", "a,b,y\n1,2,0\n3,4\n", 422, "line 3 has 2 values", "header has 3"),
    _csv("header-only", "a,b,y\n", 422, "header but no data rows"),
    _csv("empty-file", b"", 422, "is empty (0 bytes)"),
    _csv("whitespace-only", "  \n \t \n\n", 422, "the CSV is empty"),
    _csv(
        "missing-target", "a,b,y\n1,2,0\n", 422, "target column 'churn' is not in", target="churn"
    ),
    _csv("duplicate-columns", "a,a,y\n1,2,0\n", 422, "column name 'a' appears twice"),
    _csv(
        "target-is-every-column", "a,y\n1,0\n2,1\n", 422, "every column is a target", target="a,y"
    ),
    _csv(
        "missing-target-value",
        "a,y\n1,\n2,1\n3,0\n",
        422,
        "line 2",
        "target column 'y' has no value",
    ),
    _csv("nan-target-value", "a,y\n1,NaN\n2,1\n3,0\n", 422, "line 2", "'y' has no value"),
    _csv("inf-feature", "a,b,y\n1,inf,0\n2,3,1\n", 422, "line 2, column 'b'", "'inf' is infinite"),
    _csv("inf-target", "a,y\n1,-inf\n2,1\n", 422, "line 2, target column 'y'", "infinite"),
    _csv("single-text-class", "a,y\n1,yes\n2,yes\n3,yes\n", 422, "'yes'", "at least 2 classes"),
    _csv("single-number-class", "a,y\n1,3\n2,3\n3,3\n4,3\n", 422, "at least 2 classes"),
    _csv("label-per-row", "a,y\n1,ann\n2,bob\n3,cy\n", 422, "different label in each of its 3"),
    _csv("not-utf8", b"a,y\n\xff\xfe,1\n2,0\n", 422, "not UTF-8", "UTF-8"),
    _csv("mixed-column", "a,y\n1,0\nx,1\n2,0\n", 422, "line 3, column 'a'", "'x' is not a number"),
    _csv("decimal-comma", "a;y\n1,5;0\n2,5;1\n", 422, "'1,5'", "point as the decimal mark"),
    _csv("wide-header", WIDE_HEADER, 422, "10,001 columns", "limit of 10,000"),
    _csv("long-field", "a,y\n" + "7" * 200_000 + ",1\n2,0\n", 422, "longer than 131,072"),
    _csv("too-many-categories", MANY_CATEGORIES, 422, "'id'", "more than 1,000 different"),
    _csv(
        "text-in-several-targets",
        "a,b,c\n1,x,2\n2,y,3\n",
        422,
        "target column 'b' contains text",
        target="b,c",
    ),
    _csv("name-too-long", "a,y\n1,0\n2,1\n", 422, "name has 201 characters", name="n" * 201),
    _npz(
        "npz-objects",
        npz_bytes(x=XOR_X, y=np.array([{}, {}, {}, {}], dtype=object)),
        "array 'y' cannot be read",
        "allow_pickle",
    ),
    _npz("npz-length-mismatch", npz_bytes(x=XOR_X, y=np.array([0, 1, 1])), "y must have 4 rows"),
    _npz("npz-zero-rows", npz_bytes(x=np.empty((0, 2)), y=np.empty(0)), "x has no samples"),
    _npz("npz-without-y", npz_bytes(x=XOR_X), "has no 'y'"),
    _npz("npz-single-array", b"\x93NUMPY" + b"\x00" * 40, "not a readable NPZ"),
    _npz("npz-that-is-text", b"x,y\n1,2\n", "not an NPZ file", "numpy.savez"),
    _npz("npz-with-target", npz_bytes(x=XOR_X, y=np.array([0, 1, 1, 0])), "CSV column", target="y"),
    _npz(
        "npz-inf",
        npz_bytes(x=np.array([[1.0], [np.inf], [2.0]]), y=np.array([0.5, 1.5, 2.5])),
        "x[1][0] is inf",
    ),
    _json("json-not-object", [[1, 2], [3, 4]], "must be an object", "got list"),
    _json("json-invalid", "{not json", "not valid JSON"),
    _json("json-zero-rows", {"x": [], "y": []}, "x must be a non-empty list of rows"),
    _json("json-x-not-2d", {"x": [1, 2, 3], "y": [0, 1, 0]}, "x must be a list of rows"),
    _json("json-y-nested", {"x": [[1], [2]], "y": [[1, [2]], [3, 4]]}, "y[0]", "deeper nesting"),
    _json("json-boolean-feature", {"x": [[True], [False]], "y": [1, 0]}, "x[0][0] is True"),
    _json("json-null-target", {"x": [[1], [2]], "y": [1, None]}, "y[1] is null"),
    Case("unknown-type", {"file": ("sheet.xlsx", b"PK\x03\x04")}, 422, ("unknown type '.xlsx'",)),
    _csv("random-bytes", RANDOM_BYTES, 422, NOT_TEXT, ACCEPTED),
    _csv("png-as-csv", PNG_BYTES, 422, NOT_TEXT, "not UTF-8 (invalid start byte, byte 0 is 0x89)"),
    Case("png-without-suffix", {"file": ("picture", PNG_BYTES)}, 422, (NOT_TEXT, ACCEPTED)),
    _csv("nul-byte", b"a,b\x00,y\n1,2,3\n4,5,6\n", 422, NOT_TEXT, "byte 3 is a NUL byte"),
    _csv("nul-lines", bytes(100) + b"\n" + bytes(100) + b"\n", 422, NOT_TEXT, "byte 0 is a NUL"),
    Case(
        "json-utf16",
        {"file": ("data.json", '{"x": [[1]], "y": [1]}'.encode("utf-16"))},
        422,
        (NOT_TEXT, "save a text file in another encoding as UTF-8"),
    ),
    Case("missing-file", {"name": (None, "no file")}, 422, ("file: missing;",)),
    Case(
        "file-as-text-field",
        {"file": (None, "a,y\n1,0\n")},
        422,
        ("file must be a file part",),
    ),
    Case(
        "unknown-field",
        {"file": ("a.csv", b"a,y\n1,0\n2,1\n"), "tagret": (None, "y")},
        422,
        ("unknown form fields ['tagret']",),
    ),
    Case(
        "oversize",
        {"file": ("big.csv", b"a,y\n" + b"1,0\n" * (TEST_UPLOAD_LIMIT // 4))},
        413,
        ("upload limit of 1,048,576 bytes",),
    ),
]


def test_table_has_enough_cases() -> None:
    """The table covers at least 25 kinds of malformed upload, each named once."""
    names = [case.id for case in CASES]

    assert len(names) >= 25
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_malformed_upload_rejected(client: TestClient, settings: Settings, case: Case) -> None:
    """Each malformed upload gets its status and words, and stores no row and no blob."""
    before = count_rows(settings)

    response = client.post("/v1/datasets", files=case.files, data=case.data)

    problem = assert_problem(response, case.status)
    for words in case.words:
        assert words in problem["detail"], problem["detail"]
    assert count_rows(settings) == before
