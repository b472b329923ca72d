"""Feature preprocessing fitted on the training split: imputation and standardization."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.spec import Preprocessing

__all__ = ["Preprocessor", "fit_preprocessor"]


@dataclass(frozen=True)
class Preprocessor:
    """The steps ``transform`` applies: fill missing values, then ``(x - mean) / scale``.

    Each array has shape (n_features,) or is None when that step is off.
    """

    fill: np.ndarray | None = None
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def transform(self, x: np.ndarray, dtype: np.dtype | str | None = None) -> np.ndarray:
        """Return a preprocessed copy of x (n_samples, n_features) in ``dtype`` (default x's).

        Raises:
            ValueError: x contains NaN and no imputation was fitted, or x contains infinity;
                the message names the first such row and column.
        """
        out = np.array(x, dtype=dtype or x.dtype, copy=True)
        missing = np.isnan(out)
        if missing.any():
            if self.fill is None:
                row, column = np.argwhere(missing)[0]
                raise ValueError(
                    f"x has a missing value (NaN) at row {row}, column {column}; "
                    "clean the data or set preprocessing.impute to 'mean' or 'median'"
                )
            np.copyto(out, np.broadcast_to(self.fill.astype(out.dtype), out.shape), where=missing)
        check_finite_features(out)
        if self.mean is not None and self.scale is not None:
            out -= self.mean.astype(out.dtype)
            out /= self.scale.astype(out.dtype)
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            name: value
            for name, value in (("fill", self.fill), ("mean", self.mean), ("scale", self.scale))
            if value is not None
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Preprocessor:
        return cls(arrays.get("fill"), arrays.get("mean"), arrays.get("scale"))


def check_finite_features(x: np.ndarray) -> None:
    """Raise ValueError naming the first row and column of x that contains infinity."""
    infinite = np.isinf(x)
    if infinite.any():
        row, column = np.argwhere(infinite)[0]
        raise ValueError(
            f"x has an infinite value at row {row}, column {column}; features must be finite"
        )


def fit_preprocessor(spec: Preprocessing, x_train: np.ndarray) -> Preprocessor:
    """Fit imputation and standardization statistics on x_train (n_samples, n_features) only.

    Statistics are computed in float64. A constant column gets scale 1, so it
    becomes all zeros instead of NaN.
    """
    x = np.asarray(x_train, dtype=np.float64)
    fill = None
    if spec.impute != "none":
        if np.isnan(x).all(axis=0).any():
            column = int(np.flatnonzero(np.isnan(x).all(axis=0))[0])
            raise ValueError(
                f"column {column} has no values in the training split, so it cannot be imputed"
            )
        fill = np.nanmean(x, axis=0) if spec.impute == "mean" else np.nanmedian(x, axis=0)
        x = np.where(np.isnan(x), fill, x)
    mean = scale = None
    if spec.standardize:
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        scale = np.where(std > 0, std, 1.0)
    return Preprocessor(fill, mean, scale)
