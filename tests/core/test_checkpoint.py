import io

import numpy as np
import pytest

import core
from core.checkpoint import CHECKPOINT_FORMAT, TrainingState
from tests.core.helpers import blobs, mlp_spec

CHECKPOINT_EPOCHS = (1, 5, 10, 20)


class CheckpointEvery(core.Callback):
    """Stores the serialized training state after the epochs in CHECKPOINT_EPOCHS."""

    def __init__(self):
        self.saved: dict[int, bytes] = {}

    def on_epoch_end(self, trainer, record):
        if trainer.epoch in CHECKPOINT_EPOCHS:
            self.saved[trainer.epoch] = trainer.state_dict().to_bytes()


def resumable_spec(dtype):
    """Dropout, shuffling, adam and early stopping: every kind of state a resume must carry."""
    stopping = {"monitor": "val_loss", "patience": 3}
    return mlp_spec(
        3, epochs=40, validation_split=0.25, dtype=dtype, early_stopping=stopping, seed=0
    )


def losses(history):
    return [(record["train_loss"], record["val_loss"]) for record in history]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resume_matches_uninterrupted_run(dtype):
    """A run resumed from a checkpoint after epoch k ends with the same parameters, bit for
    bit, and the same losses as the run that was never interrupted."""
    x, y = blobs(n_samples=120, seed=1)
    spec = resumable_spec(dtype)
    saver = CheckpointEvery()
    full = core.fit(spec, x, y, callback=saver)
    assert full.stop_reason == "early_stopped"
    assert full.stopped_epoch is not None and full.stopped_epoch > max(CHECKPOINT_EPOCHS)
    assert set(saver.saved) == set(CHECKPOINT_EPOCHS)

    for epoch, data in saver.saved.items():
        state = TrainingState.from_bytes(data)

        resumed = core.fit(spec, x, y, resume_from=state)

        assert state.epoch == epoch
        for name, value in full.params.items():
            assert np.array_equal(resumed.params[name], value), (epoch, name)
            assert resumed.params[name].dtype == np.dtype(dtype)
        assert losses(resumed.history) == losses(full.history), epoch
        assert resumed.stop_reason == full.stop_reason
        assert resumed.stopped_epoch == full.stopped_epoch
        assert (resumed.best_epoch, resumed.best_value) == (full.best_epoch, full.best_value)


def test_state_round_trip():
    """to_bytes and from_bytes keep every array and the metadata."""
    x, y = blobs(n_samples=60)
    trainer = core.make_trainer(resumable_spec("float32"), x, y)
    trainer.run()
    state = trainer.state_dict()

    again = TrainingState.from_bytes(state.to_bytes())

    assert set(again.arrays) == set(state.arrays)
    for name, value in state.arrays.items():
        assert np.array_equal(again.arrays[name], value), name
        assert again.arrays[name].dtype == value.dtype, name
    assert again.meta["format"] == CHECKPOINT_FORMAT
    assert again.meta["history"] == state.meta["history"]
    assert again.meta["rng"] == state.meta["rng"]
    assert again.epoch == trainer.epoch


def test_state_holds_optimizer_arrays():
    """An adam checkpoint contains the parameters and both moment estimates."""
    x, y = blobs(n_samples=60)
    trainer = core.make_trainer(resumable_spec("float32"), x, y)

    state = trainer.state_dict()

    assert {"params", "optimizer.decayed_grad_sum", "optimizer.exp_avg_sq"} <= set(state.arrays)
    assert state.epoch == 0


def _as_format_1(state: TrainingState, beta1: float) -> TrainingState:
    """Return ``state`` as format 1 stored it, with Adam's first moment m in place of the
    decayed gradient sum."""
    arrays = dict(state.arrays)
    arrays["optimizer.exp_avg"] = arrays.pop("optimizer.decayed_grad_sum") * (1 - beta1)
    meta = {**state.meta, "format": "steep.checkpoint/1"}
    return TrainingState.from_bytes(TrainingState(arrays, meta).to_bytes())


def test_format_1_checkpoint_resumes():
    """A format 1 checkpoint, which contains m instead of the decayed gradient sum,
    resumes. The conversion rounds, so the run ends close to the uninterrupted run's
    parameters, not bit for bit equal."""
    x, y = blobs(n_samples=120, seed=1)
    spec = resumable_spec("float64")
    saver = CheckpointEvery()
    full = core.fit(spec, x, y, callback=saver)
    old = _as_format_1(TrainingState.from_bytes(saver.saved[5]), beta1=0.9)
    assert old.meta["format"] == "steep.checkpoint/1"

    resumed = core.fit(spec, x, y, resume_from=old)

    assert resumed.stopped_epoch == full.stopped_epoch
    for name, value in full.params.items():
        np.testing.assert_allclose(resumed.params[name], value, rtol=1e-9, atol=1e-12)


def test_from_bytes_rejects_garbage():
    """Bytes that are not an archive raise ValueError."""
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        TrainingState.from_bytes(b"not a checkpoint")


def test_from_bytes_rejects_other_npz():
    """An NPZ archive without steep's format marker raises ValueError naming the format."""
    buffer = io.BytesIO()
    np.savez(buffer, params=np.zeros(3))

    with pytest.raises(ValueError, match="checkpoint format must be"):
        TrainingState.from_bytes(buffer.getvalue())


def test_from_bytes_never_unpickles():
    """An archive with a pickled object array is rejected instead of unpickled."""
    buffer = io.BytesIO()
    np.savez(buffer, params=np.array([{"a": 1}], dtype=object))

    with pytest.raises(ValueError):
        TrainingState.from_bytes(buffer.getvalue())


def test_resume_rejects_other_spec():
    """A checkpoint from a spec with another optimizer raises ValueError naming the part."""
    x, y = blobs(n_samples=60)
    state = core.make_trainer(resumable_spec("float32"), x, y).state_dict()
    other = {**resumable_spec("float32"), "optimizer": {"type": "sgd"}}

    with pytest.raises(ValueError, match="'optimizer'"):
        core.make_trainer(other, x, y, resume_from=state)
