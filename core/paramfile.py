"""Parameter files: a trained model in an open format (NPZ or JSON), never pickle.

Both formats hold the same content: every parameter by name (``dense_0.weight``,
``dense_0.bias``, ...), the fitted preprocessing arrays, and the metadata needed to
rebuild the model (the format tag, the job spec, task, classes, feature names,
n_features and dtype). A model trained on data with text columns also has
``encoding``, the input columns with the categories of each text column (see
``core.encoding``), so the loaded model's ``encode`` turns raw rows into features.
Files without ``encoding`` load as before.

NPZ layout: one array per parameter under its name, ``preprocessing.fill``,
``preprocessing.mean`` and ``preprocessing.scale`` when that step was fitted, and
``meta``, a 0-d unicode array holding the metadata as JSON. Every member loads
with ``numpy.load(..., allow_pickle=False)``.

JSON layout: the metadata fields at the top level, plus ``parameters``
(``{name: {"shape": [...], "data": nested lists}}``) and ``preprocessing``
(``{"mean": [...], ...}``). Floats are written with Python's shortest round-trip
repr, so a model loaded from JSON predicts exactly as the one that was saved.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from pydantic import ValidationError

from core.encoding import Encoding
from core.model import Model
from core.network import Network
from core.preprocessing import Preprocessor
from core.spec import JobSpec, Task, parse_spec

__all__ = [
    "PARAMETERS_FORMAT",
    "load_model",
    "save_json",
    "save_npz",
    "to_json_dict",
    "to_npz_bytes",
]

PARAMETERS_FORMAT = "steep.parameters/1"

_META_MEMBER = "meta"
_PREPROCESSING_PREFIX = "preprocessing."
_PREPROCESSING_NAMES = ("fill", "mean", "scale")
_TASKS = ("classification", "regression")
_DTYPES = ("float32", "float64")

Source = str | os.PathLike[str] | bytes | bytearray | memoryview | Mapping[str, Any]


# Writing --------------------------------------------------------------------


def _meta(model: Model) -> dict[str, Any]:
    """Everything besides the arrays that ``load_model`` needs to rebuild the model."""
    classes = None if model.classes is None else [_json_label(label) for label in model.classes]
    meta = {
        "format": PARAMETERS_FORMAT,
        "spec": model.spec.model_dump(mode="json"),
        "task": model.task,
        "classes": classes,
        "feature_names": [str(name) for name in model.feature_names],
        "n_features": int(model.n_features),
        "dtype": model.network.dtype.name,
    }
    if model.encoding is not None:
        meta["encoding"] = model.encoding.to_dict()
    return meta


def _json_label(label: Any) -> str | int | float | bool:
    """Turn a class label into the JSON scalar that reads back equal to it."""
    if isinstance(label, np.generic):
        label = label.item()
    if not isinstance(label, str | int | float | bool):
        raise TypeError(
            f"class labels must be str, int, float or bool to be saved, "
            f"got {label!r} of type {type(label).__name__}"
        )
    return label


def to_npz_bytes(model: Model) -> bytes:
    """Serialize the model to NPZ bytes (layout in the module docstring)."""
    # Typed Any because numpy's stub for savez reads ** keywords as its own options.
    arrays: dict[str, Any] = dict(model.parameters())
    for name, value in model.preprocessor.to_arrays().items():
        arrays[_PREPROCESSING_PREFIX + name] = value
    arrays[_META_MEMBER] = np.array(json.dumps(_meta(model), allow_nan=False))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def save_npz(model: Model, path: str | os.PathLike[str]) -> None:
    """Write the model to ``path`` as NPZ; the path is used as given, with no suffix added."""
    Path(path).write_bytes(to_npz_bytes(model))


def to_json_dict(model: Model) -> dict[str, Any]:
    """Return the model as a JSON-serializable dict (layout in the module docstring).

    Raises:
        ValueError: a parameter or preprocessing array contains NaN or infinity, which
            JSON cannot represent; save the model as NPZ instead.
    """
    parameters = {}
    for name, value in model.parameters().items():
        _check_finite_for_json(name, value)
        parameters[name] = {"shape": list(value.shape), "data": value.tolist()}
    preprocessing = {}
    for name, value in model.preprocessor.to_arrays().items():
        _check_finite_for_json(_PREPROCESSING_PREFIX + name, value)
        preprocessing[name] = value.tolist()
    return {**_meta(model), "parameters": parameters, "preprocessing": preprocessing}


def _check_finite_for_json(name: str, value: np.ndarray) -> None:
    if not np.isfinite(value).all():
        raise ValueError(
            f"{name} contains NaN or infinity, which JSON cannot represent; save the model as .npz"
        )


def save_json(model: Model, path: str | os.PathLike[str]) -> None:
    """Write the model to ``path`` as JSON."""
    text = json.dumps(to_json_dict(model), allow_nan=False)
    Path(path).write_text(text, encoding="utf-8")


# Reading --------------------------------------------------------------------


def load_model(source: Source) -> Model:
    """Rebuild a model from a parameter file.

    Args:
        source: a path to a ``.npz`` or ``.json`` file (any other suffix is read as
            NPZ when the file starts like a zip archive, and as JSON otherwise), the
            bytes of an NPZ file, or the dict that ``to_json_dict`` returns.

    Returns:
        A Model that predicts exactly as the saved one, bit for bit in the same dtype.

    Raises:
        ValueError: the content is not a steep parameter file, or a member is missing,
            malformed, or does not match the spec (the message names it).
        TypeError: source is not a path, bytes or a mapping.
        OSError: the file cannot be read.
    """
    if isinstance(source, Mapping):
        return _from_json_dict(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return _from_npz_bytes(bytes(source))
    if isinstance(source, str | os.PathLike):
        return _from_path(Path(source))
    raise TypeError(f"source must be a path, NPZ bytes or a JSON dict, got {type(source).__name__}")


def _from_path(path: Path) -> Model:
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix == ".npz" or (suffix != ".json" and data.startswith(b"PK")):
        return _from_npz_bytes(data)
    try:
        content = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        expected = "valid JSON" if suffix == ".json" else "an NPZ archive or JSON"
        raise ValueError(f"the file is not {expected}: {error}") from error
    if not isinstance(content, dict):
        raise ValueError(f"the file must contain a JSON object, got {type(content).__name__}")
    return _from_json_dict(content)


def _from_npz_bytes(data: bytes) -> Model:
    arrays = _read_npz_members(data)
    meta_array = arrays.pop(_META_MEMBER, None)
    if meta_array is None:
        hint = " (this looks like a training checkpoint)" if "__meta__" in arrays else ""
        raise ValueError(f"the NPZ file has no {_META_MEMBER!r} member{hint}")
    if meta_array.ndim != 0 or meta_array.dtype.kind != "U":
        raise ValueError(
            f"member {_META_MEMBER!r} must be a 0-d unicode array containing JSON, "
            f"got shape {meta_array.shape} and dtype {meta_array.dtype}"
        )
    try:
        meta = json.loads(str(meta_array))
    except json.JSONDecodeError as error:
        raise ValueError(f"member {_META_MEMBER!r} is not valid JSON: {error}") from error
    if not isinstance(meta, dict):
        raise ValueError(f"member {_META_MEMBER!r} must contain a JSON object")
    header = _read_meta(meta)

    preprocessing = {}
    parameters = {}
    for name, value in arrays.items():
        if name.startswith(_PREPROCESSING_PREFIX):
            preprocessing[name.removeprefix(_PREPROCESSING_PREFIX)] = value
        else:
            if value.dtype != header.dtype:
                raise ValueError(
                    f"parameter {name} must have dtype {header.dtype} to match meta.dtype, "
                    f"got {value.dtype}"
                )
            parameters[name] = value
    return _build_model(header, parameters, preprocessing)


def _read_npz_members(data: bytes) -> dict[str, np.ndarray]:
    """Read every member of an NPZ archive without unpickling anything."""
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"not a readable NPZ file: {error}") from error
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError("the data is a single .npy array, not an NPZ archive")
    arrays = {}
    with loaded:
        for name in loaded.files:
            try:
                arrays[name] = loaded[name]
            except ValueError as error:
                # Object arrays need pickle, which allow_pickle=False rejects.
                raise ValueError(f"member {name!r} cannot be read: {error}") from error
            except (OSError, EOFError, zipfile.BadZipFile) as error:
                raise ValueError(f"member {name!r} is damaged: {error}") from error
    return arrays


def _from_json_dict(content: Mapping[str, Any]) -> Model:
    header = _read_meta(content)
    raw_parameters = _require(content, "parameters", dict)
    parameters = {}
    for name, entry in raw_parameters.items():
        if not isinstance(entry, dict) or "shape" not in entry or "data" not in entry:
            raise ValueError(f"parameters.{name} must be an object with 'shape' and 'data'")
        values = _json_array(f"parameters.{name}.data", entry["data"])
        if list(values.shape) != entry["shape"]:
            raise ValueError(
                f"parameters.{name}.data has shape {list(values.shape)}, "
                f"but parameters.{name}.shape says {entry['shape']}"
            )
        parameters[name] = values.astype(header.dtype)
    raw_preprocessing = _require(content, "preprocessing", dict)
    preprocessing = {
        name: _json_array(f"preprocessing.{name}", values)
        for name, values in raw_preprocessing.items()
    }
    return _build_model(header, parameters, preprocessing)


def _json_array(where: str, data: Any) -> np.ndarray:
    """Convert nested lists of JSON numbers to a float64 array, rejecting anything else."""
    try:
        array = np.array(data)
    except ValueError as error:
        raise ValueError(f"{where} must be nested lists of equal length: {error}") from error
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{where} must contain only numbers, got array dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{where} contains NaN or infinity")
    return array


# Metadata and assembly ------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    """The validated metadata of a parameter file."""

    spec: JobSpec
    task: Task
    classes: list[Any] | None
    feature_names: list[str]
    n_features: int
    dtype: np.dtype
    encoding: Encoding | None


def _require(meta: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in meta:
        raise ValueError(f"the parameter file has no {key!r} field")
    value = meta[key]
    if not isinstance(value, kind):
        raise ValueError(f"field {key!r} has the wrong type: got {type(value).__name__}")
    return value


def _read_meta(meta: Mapping[str, Any]) -> _Header:
    """Validate the metadata fields shared by both formats."""
    file_format = meta.get("format")
    if file_format != PARAMETERS_FORMAT:
        raise ValueError(f"format must be {PARAMETERS_FORMAT!r}, got {file_format!r}")
    try:
        spec = parse_spec(_require(meta, "spec", dict))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        raise ValueError(f"field 'spec' is not a valid job spec: {problems}") from error

    task = _require(meta, "task", str)
    if task not in _TASKS:
        raise ValueError(f"task must be one of {_TASKS}, got {task!r}")
    dtype_name = _require(meta, "dtype", str)
    if dtype_name not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype_name!r}")
    if dtype_name != spec.training.dtype:
        raise ValueError(
            f"dtype is {dtype_name!r} but the spec's training.dtype is {spec.training.dtype!r}"
        )

    n_features = _require(meta, "n_features", int)
    if isinstance(n_features, bool) or n_features < 1:
        raise ValueError(f"n_features must be a positive integer, got {n_features!r}")
    feature_names = _require(meta, "feature_names", list)
    if len(feature_names) != n_features or not all(isinstance(n, str) for n in feature_names):
        raise ValueError(
            f"feature_names must be {n_features} strings (one per feature), got {feature_names!r}"
        )

    return _Header(
        spec=spec,
        task=cast(Task, task),
        classes=_read_classes(meta, task),
        feature_names=feature_names,
        n_features=n_features,
        dtype=np.dtype(dtype_name),
        encoding=_read_encoding(meta, feature_names),
    )


def _read_encoding(meta: Mapping[str, Any], feature_names: list[str]) -> Encoding | None:
    """Read the optional input encoding; its features must be the file's feature_names."""
    if meta.get("encoding") is None:
        return None
    encoding = Encoding.from_dict(_require(meta, "encoding", dict))
    if encoding.feature_names != feature_names:
        raise ValueError(
            "encoding does not match feature_names: it makes the features "
            f"{encoding.feature_names[:10]}, but feature_names lists {feature_names[:10]}"
        )
    return encoding


def _read_classes(meta: Mapping[str, Any], task: str) -> list[Any] | None:
    if "classes" not in meta:
        raise ValueError("the parameter file has no 'classes' field")
    classes = meta["classes"]
    if task == "regression":
        if classes is not None:
            raise ValueError(f"classes must be null for regression, got {classes!r}")
        return None
    if not isinstance(classes, list) or len(classes) < 2:
        raise ValueError(f"classes must list at least 2 labels for classification, got {classes!r}")
    if not all(isinstance(label, str | int | float | bool) for label in classes):
        raise ValueError(f"classes must be strings or numbers, got {classes!r}")
    return classes


def _build_model(
    header: _Header,
    parameters: dict[str, np.ndarray],
    preprocessing: dict[str, np.ndarray],
) -> Model:
    network = Network(header.spec.model, header.n_features, header.dtype)
    network.load_parameters(parameters)
    _check_outputs(header, network.n_outputs)
    preprocessor = _read_preprocessing(preprocessing, header.n_features)
    return Model(
        header.spec,
        network,
        preprocessor,
        header.task,
        header.classes,
        header.feature_names,
        header.encoding,
    )


def _check_outputs(header: _Header, n_outputs: int) -> None:
    """Check that the last layer's units fit the classes, so ``predict`` can index them."""
    if header.classes is None:
        return
    n_classes = len(header.classes)
    binary_logit = n_outputs == 1 and n_classes == 2
    if n_outputs != n_classes and not binary_logit:
        raise ValueError(
            f"the network has {n_outputs} outputs but the file lists {n_classes} classes"
        )


def _read_preprocessing(arrays: dict[str, np.ndarray], n_features: int) -> Preprocessor:
    unknown = sorted(set(arrays) - set(_PREPROCESSING_NAMES))
    if unknown:
        raise ValueError(
            f"unknown preprocessing arrays {unknown}; expected some of {list(_PREPROCESSING_NAMES)}"
        )
    if ("mean" in arrays) != ("scale" in arrays):
        raise ValueError("preprocessing.mean and preprocessing.scale must be saved together")
    checked = {}
    for name, value in arrays.items():
        if value.dtype.kind != "f":
            raise ValueError(f"preprocessing.{name} must contain floats, got dtype {value.dtype}")
        if value.shape != (n_features,):
            raise ValueError(
                f"preprocessing.{name} must have shape ({n_features},), got {value.shape}"
            )
        checked[name] = value.astype(np.float64)
    return Preprocessor.from_arrays(checked)
