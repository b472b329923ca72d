"""Checkpoints: the whole training state as an open format (NPZ with a JSON member).

A checkpoint holds the parameters, the optimizer state, the RNG state, the epoch,
the early-stopping state and the history. Loading one never unpickles anything.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CHECKPOINT_FORMAT", "TrainingState"]

# Format 2 stores Adam's first moment as the decayed gradient sum (see
# ``core.optimizers.AdamOptimizer``). Format 1 stored the moment itself.
CHECKPOINT_FORMAT = "steep.checkpoint/2"
_READABLE_FORMATS = ("steep.checkpoint/1", CHECKPOINT_FORMAT)
_META_KEY = "__meta__"


@dataclass
class TrainingState:
    """Arrays by name (``params``, ``optimizer.exp_avg_sq``, ...) and JSON-ready metadata."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        """Number of epochs completed when the state was taken."""
        return int(self.meta["epoch"])

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        meta = {"format": CHECKPOINT_FORMAT, **self.meta}
        members: dict[str, Any] = {**self.arrays, _META_KEY: np.array(json.dumps(meta))}
        np.savez(buffer, **members)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainingState:
        """Read a checkpoint written by ``to_bytes``.

        Raises:
            ValueError: the bytes are not a steep checkpoint.
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (OSError, ValueError, EOFError) as error:
            raise ValueError(f"not a readable checkpoint: {error}") from error
        meta_array = arrays.pop(_META_KEY, None)
        meta = json.loads(str(meta_array)) if meta_array is not None else {}
        if meta.get("format") not in _READABLE_FORMATS:
            raise ValueError(
                f"checkpoint format must be one of {', '.join(map(repr, _READABLE_FORMATS))}, "
                f"got {meta.get('format')!r}"
            )
        return cls(arrays, meta)
