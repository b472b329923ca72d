"""The built-in datasets, loaded by name.

>>> from core.datasets import load_builtin
>>> digits = load_builtin("builtin:digits")
>>> digits.x.shape, digits.classes[:3]
((1797, 64), ('0', '1', '2'))
"""

from collections.abc import Callable
from numbers import Integral

from core.datasets import real, synthetic
from core.datasets.dataset import Dataset

__all__ = ["BUILTIN_NAMES", "Dataset", "load_builtin"]

# The HTTP API ids of built-in datasets are "builtin:<name>". load_builtin also takes the bare name.
_ID_PREFIX = "builtin:"

# Each loader takes the seed. The hand-written and the real datasets ignore it.
_LOADERS: dict[str, Callable[[int], Dataset]] = {
    "tea": lambda seed: synthetic.make_tea(),
    "xor": lambda seed: synthetic.make_xor(),
    "moons": lambda seed: synthetic.make_moons(seed=seed),
    "circles": lambda seed: synthetic.make_circles(seed=seed),
    "spirals": lambda seed: synthetic.make_spirals(seed=seed),
    "sine": lambda seed: synthetic.make_sine(seed=seed),
    "iris": lambda seed: real.load_iris(),
    "wine": lambda seed: real.load_wine(),
    "breast_cancer": lambda seed: real.load_breast_cancer(),
    "digits": lambda seed: real.load_digits(),
    "diabetes": lambda seed: real.load_diabetes(),
}

BUILTIN_NAMES: tuple[str, ...] = tuple(_LOADERS)


def load_builtin(name: str, *, seed: int = 0) -> Dataset:
    """Load a built-in dataset by its name ("digits") or its id ("builtin:digits").

    `seed` selects the random draw of the generated datasets (moons, circles, spirals,
    sine). The same seed gives the same arrays. The other datasets ignore it.

    The arrays of the returned Dataset are read-only, because the real datasets are parsed
    once and shared between calls. Copy an array before changing it.

    Raises:
        TypeError: name is not a str or seed is not an int.
        ValueError: name is not one of BUILTIN_NAMES, with or without the "builtin:"
            prefix, or seed is negative.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}.")
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}.")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}.")

    bare_name = name.removeprefix(_ID_PREFIX)
    loader = _LOADERS.get(bare_name)
    if loader is None:
        raise ValueError(
            f"Unknown built-in dataset {name!r}. Use one of {', '.join(BUILTIN_NAMES)}, "
            f"with or without the prefix {_ID_PREFIX!r}."
        )
    return loader(int(seed))
