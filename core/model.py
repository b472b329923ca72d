"""A trained model: the network, its preprocessing and its classes, ready to predict."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.activations import sigmoid
from core.encoding import Encoding
from core.metrics import predict_classes
from core.network import Network
from core.preprocessing import Preprocessor
from core.spec import JobSpec, Task

__all__ = ["Model"]


class Model:
    """Predicts from feature rows, applying the preprocessing fitted in training.

    ``encoding`` records the input columns when the training data had text columns;
    ``encode`` turns raw rows (with text) into the feature rows ``predict`` takes.
    """

    def __init__(
        self,
        spec: JobSpec,
        network: Network,
        preprocessor: Preprocessor,
        task: Task,
        classes: list[Any] | None,
        feature_names: list[str],
        encoding: Encoding | None = None,
    ) -> None:
        if encoding is not None and encoding.n_features != network.n_features:
            raise ValueError(
                f"the encoding makes {encoding.n_features} features, but the network "
                f"takes {network.n_features}"
            )
        self.spec = spec
        self.network = network
        self.preprocessor = preprocessor
        self.task = task
        self.classes = classes
        self.feature_names = feature_names
        self.encoding = encoding

    @property
    def n_features(self) -> int:
        return self.network.n_features

    @property
    def input_encoding(self) -> Encoding:
        """The input columns: ``encoding``, or one number column per feature name."""
        if self.encoding is not None:
            return self.encoding
        return Encoding.numeric(self.feature_names)

    def encode(self, rows: Any, name: str = "rows") -> np.ndarray:
        """Encode raw rows into features of shape (n_samples, n_features) for ``predict``.

        Each row is a list of values in the original column order or an object keyed
        by column name; text columns take their category labels (see
        ``core.encoding.Encoding.encode``).

        Raises:
            core.encoding.RowError: a row has the wrong length or keys, or a value is
                of the wrong type or an unknown category.
        """
        return self.input_encoding.encode(rows, name)

    def _features(self, x: Any) -> np.ndarray:
        """Return x as a float64 feature matrix, encoding it first when it is raw rows.

        A model trained on text columns takes either encoded feature rows (n_features
        numbers each) or raw rows, which ``encode`` turns into features.
        """
        if self.encoding is not None and not _is_feature_matrix(x, self.n_features):
            return self.encode(x, "x")
        try:
            return np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"inputs must be rows of {self.n_features} numbers, but a value is not a "
                f"number ({error}); this model was trained without text columns"
            ) from error

    def _prepare(self, x: Any) -> np.ndarray:
        array = self._features(x)
        if array.ndim == 1 and self.n_features == 1:
            array = array.reshape(-1, 1)  # (n_samples,) -> (n_samples, 1)
        if array.ndim != 2 or array.shape[1] != self.n_features:
            raise ValueError(
                f"inputs must have shape (n_samples, {self.n_features}), got {array.shape}"
            )
        return self.preprocessor.transform(array, self.network.dtype)

    def decision_function(self, x: Any) -> np.ndarray:
        """Raw network outputs (n_samples, n_outputs): logits for classification."""
        return self.network.forward_in_chunks(self._prepare(x))

    def predict_outputs(self, x: Any) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), or values (n_samples, n_outputs)."""
        logits = self.decision_function(x)
        if self.task == "regression":
            return logits
        with np.errstate(over="ignore", under="ignore"):
            if logits.shape[1] == 1:
                positive = sigmoid(logits)
                return np.concatenate([1 - positive, positive], axis=1)
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            return shifted / shifted.sum(axis=1, keepdims=True)

    def predict(self, x: Any) -> np.ndarray:
        """Predict class labels (n_samples,) for classification, or values (n_samples,) or
        (n_samples, n_outputs) for regression.

        x is feature rows of shape (n_samples, n_features), or, for a model trained on
        text columns, raw rows as ``encode`` takes them.
        """
        logits = self.decision_function(x)
        if self.task == "regression":
            return logits[:, 0] if logits.shape[1] == 1 else logits
        assert self.classes is not None
        return np.asarray(self.classes, dtype=object)[predict_classes(logits)]

    def parameters(self) -> dict[str, np.ndarray]:
        return self.network.parameters()


def _is_feature_matrix(x: Any, n_features: int) -> bool:
    """Tell whether x already is numeric feature rows, n_features wide."""
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return array.ndim == 2 and array.shape[1] == n_features
