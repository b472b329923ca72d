"""Turn a sweep request into its trials: parameter values, and each trial's job spec.

A grid takes every combination of the parameters' values, the first parameter
varying slowest. A random sweep draws ``n_trials`` combinations from a seeded
generator, so the same request and seed give the same trials. Values are drawn
only from ``random.Random.random()``, whose sequence for a given seed Python keeps
the same across versions.

A parameter path is checked against the base spec with every default filled in,
so ``optimizer.lr`` exists even when the base spec does not write it. The value
is then set in the base spec as the client sent it, so that everything else keeps
the client's form (a string shorthand such as ``"loss": "cross_entropy"`` stays).
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from core.spec import JobSpec, ValidationError
from services.errors import InvalidInput
from services.sweep_schemas import (
    ChoiceParameter,
    IntUniformParameter,
    ParameterSpec,
    SweepCreate,
    UniformParameter,
)

__all__ = [
    "count_trials",
    "culprit_parameter",
    "draw_parameter_sets",
    "grid_parameter_sets",
    "set_parameter",
    "trial_spec",
]

Parameters = Mapping[str, ParameterSpec]


# Parameter values -----------------------------------------------------------------------


def count_trials(request: SweepCreate) -> int:
    """Return the number of trials ``request`` makes, without making them."""
    if request.method == "random":
        assert request.n_trials is not None  # SweepCreate requires it for random
        return request.n_trials
    return math.prod(_values(parameter).__len__() for parameter in request.parameters.values())


def grid_parameter_sets(parameters: Parameters) -> list[dict[str, Any]]:
    """Return every combination of the parameters' values, the first parameter varying slowest."""
    paths = list(parameters)
    value_lists = [_values(parameters[path]) for path in paths]
    return [
        dict(zip(paths, combination, strict=True))
        for combination in itertools.product(*value_lists)
    ]


def draw_parameter_sets(parameters: Parameters, n_trials: int, seed: int) -> list[dict[str, Any]]:
    """Draw ``n_trials`` combinations; each trial draws one number per parameter, in order."""
    generator = random.Random(seed)
    return [
        {path: _draw(parameter, generator.random()) for path, parameter in parameters.items()}
        for _ in range(n_trials)
    ]


def _values(parameter: ParameterSpec) -> list[Any]:
    assert isinstance(parameter, ChoiceParameter)  # SweepCreate allows only values in a grid
    return list(parameter.values)


def _draw(parameter: ParameterSpec, u: float) -> Any:
    """Map ``u``, uniform in [0, 1), to a value of ``parameter``."""
    if isinstance(parameter, ChoiceParameter):
        return parameter.values[min(int(u * len(parameter.values)), len(parameter.values) - 1)]
    if isinstance(parameter, IntUniformParameter):
        span = parameter.max - parameter.min
        return parameter.min + min(int(u * (span + 1)), span)
    assert isinstance(parameter, UniformParameter)
    if parameter.distribution == "log_uniform":
        low, high = math.log(parameter.min), math.log(parameter.max)
        return math.exp(low + u * (high - low))
    return parameter.min + u * (parameter.max - parameter.min)


# Applying values to the spec -------------------------------------------------------------


def set_parameter(spec: dict[str, Any], full: Mapping[str, Any], path: str, value: Any) -> None:
    """Set ``path`` in ``spec`` to ``value``, in place.

    ``full`` is the same spec with every default filled in. A part of the path that
    ``spec`` leaves out, or writes as a string shorthand, is first copied from ``full``.

    Raises:
        KeyError: ``full`` has no field at ``path``; the message names the missing part.
    """
    parts = path.split(".")
    node: Any = spec
    full_node: Any = full
    for depth, part in enumerate(parts):
        key = _existing_key(full_node, part, parts[:depth])
        if depth == len(parts) - 1:
            node[key] = value
            return
        full_child = full_node[key]
        child = _get(node, key)
        if type(child) is not type(full_child):
            child = copy.deepcopy(full_child)
            node[key] = child
        node, full_node = child, full_child


def _existing_key(full_node: Any, part: str, parents: Sequence[str]) -> str | int:
    where = ".".join(parents) or "the top level of the spec"
    if isinstance(full_node, dict):
        if part not in full_node:
            fields = ", ".join(sorted(full_node))
            raise KeyError(f"{where} has no field {part!r}; its fields are {fields}")
        return part
    if isinstance(full_node, list):
        if not part.isdigit() or int(part) >= len(full_node):
            raise KeyError(
                f"{where} is a list of {len(full_node)} items, so {part!r} is not a valid index"
            )
        return int(part)
    raise KeyError(
        f"{where} is {full_node!r}, not an object; set it to an object in the base spec "
        f"to vary its fields"
    )


def _get(node: Any, key: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and key < len(node):
        return node[key]
    return None


def trial_spec(
    raw_base: Mapping[str, Any],
    full_base: Mapping[str, Any],
    index: int,
    values: Mapping[str, Any],
    overrides: Mapping[str, Any],
) -> JobSpec:
    """Build and validate the spec of trial ``index``: the base with ``values`` and ``overrides``.

    Raises:
        InvalidInput: a path does not exist in the spec, or the spec rejects a value;
            the message names the trial and the parameter, and ``loc`` the parameter.
    """
    spec = copy.deepcopy(dict(raw_base))
    for path, value in values.items():
        try:
            set_parameter(spec, full_base, path, value)
        except KeyError as error:
            raise InvalidInput(
                f"parameters.{path} does not exist in the base spec: {error.args[0]}",
                loc=("body", "parameters", path),
            ) from error
    spec.update(overrides)
    try:
        return JobSpec.model_validate(spec)
    except ValidationError as error:
        raise _trial_error(index, values, spec, error) from error


def _trial_error(
    index: int, values: Mapping[str, Any], spec: Mapping[str, Any], error: ValidationError
) -> InvalidInput:
    """Describe the first error of a trial's spec, naming the parameter that caused it."""
    first = error.errors()[0]
    error_path = _spec_path(first.get("loc", ()), spec)
    culprit = culprit_parameter(values, error_path)
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    trial = f"trial {index} ({_describe(values)})"
    if culprit is None:
        return InvalidInput(
            f"{trial}: the spec is invalid at {error_path or 'the top level'}: {message}",
            loc=("body", "parameters"),
        )
    return InvalidInput(
        f"{trial}: parameters.{culprit} = {values[culprit]!r} is invalid: {error_path}: {message}",
        loc=("body", "parameters", culprit),
    )


def culprit_parameter(values: Mapping[str, Any], error_path: str) -> str | None:
    """Return the parameter whose path contains ``error_path`` or lies inside it, if any."""
    for path in values:
        if (
            error_path == path
            or error_path.startswith(path + ".")
            or path.startswith(error_path + ".")
        ):
            return path
    return None


def _spec_path(loc: Sequence[Any], spec: Any) -> str:
    """Join a pydantic location as a dotted path, dropping the tags of tagged unions.

    Pydantic reports ``("optimizer", "adam", "lr")`` for ``optimizer.lr`` when the
    optimizer is an Adam; a part that is not a key of the spec at that point but
    equals the object's ``type`` is such a tag.
    """
    parts: list[str] = []
    node = spec
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("type") == part:
            continue
        parts.append(str(part))
        node = _get(node, part) if isinstance(part, str | int) else None
    return ".".join(parts)


def _describe(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{path}={value!r}" for path, value in values.items())
