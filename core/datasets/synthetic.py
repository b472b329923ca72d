"""Small datasets written by hand or generated with NumPy.

Every generator draws from `np.random.default_rng(seed)`, so the same arguments give the
same arrays. The returned arrays are read-only.
"""

import numpy as np

from core.datasets.dataset import Dataset, make_read_only

GENERATED_BY = "Generated with NumPy from the seed."


def make_tea() -> Dataset:
    """Build the one-sample regression for y_hat = w * x: x of shape (1, 1), y of shape (1,).

    With w = 0.5, squared error and one SGD step at lr = 0.01, the loss is 81, dL/dw is -36
    and the new w is 0.86.
    """
    return Dataset(
        name="tea",
        x=make_read_only(np.array([[2.0]])),
        y=make_read_only(np.array([10.0])),
        task="regression",
        feature_names=("x",),
        classes=None,
        description=(
            "One sample, x = 2 and y = 10, for the one-weight model y_hat = w * x. "
            "Written by hand for steep."
        ),
    )


def make_xor() -> Dataset:
    """Build the XOR truth table: x of shape (4, 2) with 0/1 inputs, y of shape (4,)."""
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([0, 1, 1, 0], dtype=np.int64)
    return Dataset(
        name="xor",
        x=make_read_only(x),
        y=make_read_only(y),
        task="classification",
        feature_names=("x0", "x1"),
        classes=("0", "1"),
        description=(
            "The four rows of the XOR truth table, with class 1 where exactly one input is 1. "
            "No line separates the classes, so a model needs a hidden layer."
        ),
    )


def make_moons(*, n_samples: int = 500, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Generate two interleaving half circles: x of shape (n_samples, 2), y of shape (n_samples,).

    Class 0 is the upper half circle of radius 1 around (0, 0). Class 1 is the lower half
    circle around (1, 0.5). Gaussian noise with standard deviation `noise` is added to x,
    and the rows are shuffled.
    """
    _validate_count("n_samples", n_samples, minimum=2)
    _validate_noise(noise)
    rng = np.random.default_rng(seed)
    n_upper = n_samples // 2
    n_lower = n_samples - n_upper

    angle_upper = np.linspace(0.0, np.pi, n_upper)
    angle_lower = np.linspace(0.0, np.pi, n_lower)
    upper = np.column_stack([np.cos(angle_upper), np.sin(angle_upper)])
    lower = np.column_stack([1.0 - np.cos(angle_lower), 0.5 - np.sin(angle_lower)])

    x = np.concatenate([upper, lower])  # (n_samples, 2)
    x = x + rng.normal(0.0, noise, size=x.shape)
    y = np.concatenate([np.zeros(n_upper, np.int64), np.ones(n_lower, np.int64)])
    x, y = _shuffle_rows(rng, x, y)
    return Dataset(
        name="moons",
        x=x,
        y=y,
        task="classification",
        feature_names=("x0", "x1"),
        classes=("0", "1"),
        description=(
            f"Two interleaving half circles with Gaussian noise of standard deviation {noise}, "
            f"class 0 on top and class 1 below. {GENERATED_BY}"
        ),
    )


def make_circles(
    *, n_samples: int = 500, noise: float = 0.05, factor: float = 0.5, seed: int = 0
) -> Dataset:
    """Generate two concentric circles: x of shape (n_samples, 2), y of shape (n_samples,).

    Class 0 is the circle of radius 1 and class 1 the circle of radius `factor`, both
    around (0, 0). Gaussian noise with standard deviation `noise` is added to x, and the
    rows are shuffled.
    """
    _validate_count("n_samples", n_samples, minimum=2)
    _validate_noise(noise)
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor must be in the open interval (0, 1), got {factor}.")
    rng = np.random.default_rng(seed)
    n_outer = n_samples // 2
    n_inner = n_samples - n_outer

    # endpoint=False so that angle 0 and 2*pi do not put two points on the same spot.
    angle_outer = np.linspace(0.0, 2.0 * np.pi, n_outer, endpoint=False)
    angle_inner = np.linspace(0.0, 2.0 * np.pi, n_inner, endpoint=False)
    outer = np.column_stack([np.cos(angle_outer), np.sin(angle_outer)])
    inner = factor * np.column_stack([np.cos(angle_inner), np.sin(angle_inner)])

    x = np.concatenate([outer, inner])  # (n_samples, 2)
    x = x + rng.normal(0.0, noise, size=x.shape)
    y = np.concatenate([np.zeros(n_outer, np.int64), np.ones(n_inner, np.int64)])
    x, y = _shuffle_rows(rng, x, y)
    return Dataset(
        name="circles",
        x=x,
        y=y,
        task="classification",
        feature_names=("x0", "x1"),
        classes=("0", "1"),
        description=(
            f"Two concentric circles with Gaussian noise of standard deviation {noise}, "
            f"class 0 on radius 1 and class 1 on radius {factor}. {GENERATED_BY}"
        ),
    )


def make_spirals(
    *, n_arms: int = 3, n_samples_per_arm: int = 200, noise: float = 0.2, seed: int = 0
) -> Dataset:
    """Generate interleaved spiral arms, one class per arm.

    Returns x of shape (n_arms * n_samples_per_arm, 2) and y of the same length. Along each
    arm the radius grows from 0 to 1 while the angle turns by 4 radians. Arm k starts at
    angle 2*pi*k / n_arms. Gaussian noise with standard deviation `noise` (radians) is added
    to the angle, and the rows are shuffled.
    """
    _validate_count("n_arms", n_arms, minimum=2)
    _validate_count("n_samples_per_arm", n_samples_per_arm, minimum=1)
    _validate_noise(noise)
    rng = np.random.default_rng(seed)

    radius = np.tile(np.linspace(0.0, 1.0, n_samples_per_arm), n_arms)
    y = np.repeat(np.arange(n_arms, dtype=np.int64), n_samples_per_arm)
    start_angle = 2.0 * np.pi * y / n_arms
    angle = start_angle + 4.0 * radius + rng.normal(0.0, noise, size=radius.shape)
    x = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])  # (n_samples, 2)
    x, y = _shuffle_rows(rng, x, y)
    return Dataset(
        name="spirals",
        x=x,
        y=y,
        task="classification",
        feature_names=("x0", "x1"),
        classes=tuple(str(arm) for arm in range(n_arms)),
        description=(
            f"{n_arms} interleaved spiral arms of {n_samples_per_arm} points each, one class "
            f"per arm, with Gaussian noise of standard deviation {noise} on the angle. "
            f"{GENERATED_BY}"
        ),
    )


def make_sine(*, n_samples: int = 500, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Generate y = sin(x) + noise for x uniform in [-pi, pi].

    Returns x of shape (n_samples, 1) and y of shape (n_samples,). The noise is Gaussian
    with standard deviation `noise`.
    """
    _validate_count("n_samples", n_samples, minimum=1)
    _validate_noise(noise)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-np.pi, np.pi, size=(n_samples, 1))
    y = np.sin(x[:, 0]) + rng.normal(0.0, noise, size=n_samples)
    return Dataset(
        name="sine",
        x=make_read_only(x),
        y=make_read_only(y),
        task="regression",
        feature_names=("x",),
        classes=None,
        description=(
            f"y = sin(x) plus Gaussian noise of standard deviation {noise}, for x drawn "
            f"uniformly from [-pi, pi]. {GENERATED_BY}"
        ),
    )


def _validate_count(name: str, value: int, *, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")


def _validate_noise(noise: float) -> None:
    # Written as `not >=` so that NaN is rejected too.
    if not noise >= 0.0:
        raise ValueError(f"noise must be a standard deviation >= 0, got {noise}.")


def _shuffle_rows(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle the rows of x and y together and make both read-only.

    Shuffling mixes the classes, so a validation split taken from the end of the arrays
    contains every class.
    """
    order = rng.permutation(len(x))
    return make_read_only(x[order]), make_read_only(y[order])
