import math

import numpy as np
import pytest

import core
from core.data import SPLIT_STREAM, seed_stream
from core.split import split_indices
from tests.core.helpers import TEA_SPEC, blobs, linear_regression_data, mlp_spec


class Recorder(core.Callback):
    """Stores every batch's progress and the parameters after every epoch."""

    def __init__(self):
        self.batches: list[core.BatchProgress] = []
        self.records: list[dict[str, float]] = []
        self.params: dict[int, np.ndarray] = {}

    def on_batch_end(self, trainer, progress):
        self.batches.append(progress)

    def on_epoch_end(self, trainer, record):
        self.records.append(record)
        self.params[trainer.epoch] = trainer.network.params.copy()


class StopAt(Recorder):
    """Requests a stop with ``reason`` after batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch, batch, reason="cancelled"):
        super().__init__()
        self.epoch, self.batch, self.reason = epoch, batch, reason

    def on_batch_end(self, trainer, progress):
        super().on_batch_end(trainer, progress)
        if (progress.epoch, progress.batch) == (self.epoch, self.batch):
            trainer.request_stop(self.reason, "stopped by the test")


def record_training_batch_lengths(trainer):
    """Wrap the trainer's forward pass and return the list it appends each training
    batch's number of rows to."""
    lengths = []
    forward = trainer.network.forward

    def recording_forward(x, training=False, rng=None):
        if training:
            lengths.append(len(x))
        return forward(x, training, rng)

    trainer.network.forward = recording_forward
    return lengths


def without_timing(history):
    return [{k: v for k, v in record.items() if k != "epoch_seconds"} for record in history]


def regression_spec(**training):
    return {
        "dataset": "test",
        "model": {"layers": [{"type": "dense", "units": 4, "activation": "tanh"},
                             {"type": "dense", "units": 1}]},
        "optimizer": {"type": "sgd", "lr": 0.05},
        "training": {"epochs": 5, "batch_size": 8, **training},
    }  # fmt: skip


# The one-weight example ----------------------------------------------------------


def test_tea_spec_trains_to_086():
    """The one-weight spec records a loss of exactly 81.0 and ends with w == 0.86."""
    data = core.load_builtin("builtin:tea")

    result = core.fit(TEA_SPEC, data.x, data.y)

    assert result.stop_reason == "completed"
    assert len(result.history) == 1
    assert result.history[0]["train_loss"] == 81.0
    assert result.history[0]["grad_norm.dense_0"] == 36.0
    assert result.params["dense_0.weight"].tolist() == [[0.86]]
    assert result.params["dense_0.weight"].dtype == np.float64


# Reproducibility -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_seeded_runs_identical(dtype):
    """The same spec and data twice give identical parameters and history."""
    x, y = blobs(n_samples=60)
    spec = mlp_spec(3, validation_split=0.2, dtype=dtype, seed=7)

    first = core.fit(spec, x, y)
    second = core.fit(spec, x, y)

    for name in first.params:
        assert np.array_equal(first.params[name], second.params[name]), name
    assert without_timing(first.history) == without_timing(second.history)


def test_different_seeds_differ():
    """Two seeds give different parameters and losses."""
    x, y = blobs(n_samples=60)

    first = core.fit(mlp_spec(3, seed=1), x, y)
    second = core.fit(mlp_spec(3, seed=2), x, y)

    assert not np.array_equal(first.params["dense_0.weight"], second.params["dense_0.weight"])
    assert first.history[-1]["train_loss"] != second.history[-1]["train_loss"]


# dtype ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_training_keeps_dtype(dtype, optimizer):
    """Parameters, gradients, optimizer state and outputs keep the spec's dtype, and
    integer labels and integer features do not change it."""
    x, y = blobs(n_samples=40)
    spec = {**mlp_spec(3, dtype=dtype, epochs=2), "optimizer": optimizer}
    trainer = core.make_trainer(spec, x.round().astype(np.int64), y)

    result = trainer.run()

    expected = np.dtype(dtype)
    assert trainer.data.x_train.dtype == expected
    assert trainer.network.params.dtype == expected
    assert trainer.network.grads.dtype == expected
    arrays, _ = trainer.optimizer.state_dict()
    assert all(value.dtype == expected for value in arrays.values())
    assert all(value.dtype == expected for value in result.params.values())
    assert result.model.decision_function(x).dtype == expected
    assert result.model.predict_outputs(x).dtype == expected


def test_default_dtype_float32():
    """Without training.dtype the run is float32 even for float64 inputs."""
    x, y = linear_regression_data()
    spec = regression_spec()
    del spec["training"]["epochs"]

    trainer = core.make_trainer(spec, x, y)

    assert trainer.network.params.dtype == np.float32
    assert trainer.data.x_train.dtype == np.float32
    assert trainer.data.y_train.values.dtype == np.float32


def test_binary_cross_entropy_targets_in_training_dtype():
    """binary_cross_entropy's 0/1 targets take the training dtype, not int64."""
    x, y = blobs(n_classes=2)
    spec = {**mlp_spec(1, loss="binary_cross_entropy", epochs=2)}

    trainer = core.make_trainer(spec, x, y)
    trainer.run()

    assert trainer.data.y_train.values.dtype == np.float32
    assert trainer.network.params.dtype == np.float32


# Divergence ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_huge_lr_diverges(dtype):
    """sgd with lr 10 stops as diverged in the epoch where the loss overflows, keeping only
    finite epochs and finite parameters."""
    x, y = linear_regression_data(n_samples=32)
    spec = {
        "dataset": "test",
        "model": {"layers": [{"type": "dense", "units": 1}]},
        "optimizer": {"type": "sgd", "lr": 10},
        "training": {"epochs": 1000, "batch_size": 32, "dtype": dtype,
                     "early_stopping": {"monitor": "train_loss", "patience": 1000}},
    }  # fmt: skip

    result = core.fit(spec, x, y)

    assert result.stop_reason == "diverged"
    assert len(result.history) > 1
    assert result.stopped_epoch == len(result.history) + 1
    assert f"epoch {result.stopped_epoch}" in (result.stop_message or "")
    assert all(math.isfinite(record["train_loss"]) for record in result.history)
    assert all(np.isfinite(value).all() for value in result.params.values())
    assert result.best_value is not None and math.isfinite(result.best_value)
    assert result.best_epoch == 1


def test_val_divergence_keeps_last_complete_epoch():
    """A val_loss that overflows in epoch 1 ends the run as diverged with the initial
    parameters, because that epoch is not recorded."""
    x, y = linear_regression_data(n_samples=20)
    _, val_index = split_indices(20, 0.25, seed_stream(0, SPLIT_STREAM))
    x[val_index] *= 1e200  # the validation rows alone overflow the squared error
    spec = regression_spec(validation_split=0.25, dtype="float64", seed=0)
    spec["model"] = {"layers": [{"type": "dense", "units": 1}]}  # unbounded outputs
    trainer = core.make_trainer(spec, x, y)
    initial = trainer.network.params.copy()

    result = trainer.run()

    assert result.stop_reason == "diverged"
    assert result.stopped_epoch == 1
    assert "val_loss" in (result.stop_message or "")
    assert result.history == []
    assert np.array_equal(trainer.network.params, initial)


def test_non_finite_value_never_improvement():
    """NaN and infinity never count as an improvement of the monitored value, even first."""
    x, y = linear_regression_data()
    spec = regression_spec(early_stopping={"monitor": "train_loss", "patience": 2})
    trainer = core.make_trainer(spec, x, y)

    assert not trainer._is_improvement(math.nan)
    assert not trainer._is_improvement(math.inf)
    assert trainer._is_improvement(1.0)


# Early stopping ------------------------------------------------------------------


def reference_early_stopping(values, patience, min_delta, direction="min"):
    """Return (stopped_epoch or None, best_epoch) for 1-based epochs.

    An epoch improves when it beats the best value so far by more than min_delta, and
    the run stops after patience epochs in a row without improvement.
    """
    best, best_epoch, waiting = None, None, 0
    for epoch, value in enumerate(values, start=1):
        better = best is None or (
            value < best - min_delta if direction == "min" else value > best + min_delta
        )
        if better:
            best, best_epoch, waiting = value, epoch, 0
            continue
        waiting += 1
        if waiting >= patience:
            return epoch, best_epoch
    return None, best_epoch


@pytest.mark.parametrize("patience", [1, 3])
def test_early_stopping_huge_min_delta(patience):
    """With a min_delta no change can beat, the run stops after 1 + patience epochs."""
    x, y = linear_regression_data()
    stopping = {"monitor": "train_loss", "patience": patience, "min_delta": 1e9}
    spec = regression_spec(epochs=20, early_stopping=stopping)

    result = core.fit(spec, x, y)

    assert result.stop_reason == "early_stopped"
    assert len(result.history) == 1 + patience
    assert result.stopped_epoch == 1 + patience
    assert result.best_epoch == 1


@pytest.mark.parametrize(("patience", "min_delta"), [(2, 0.0), (3, 0.005), (2, 0.02)])
def test_early_stopping_follows_rule(patience, min_delta):
    """Where the run stops and which epoch is best match the rule applied to the history."""
    x, y = blobs(n_samples=120, seed=1)
    stopping = {"monitor": "val_loss", "patience": patience, "min_delta": min_delta}
    spec = mlp_spec(3, epochs=60, validation_split=0.25, early_stopping=stopping)

    result = core.fit(spec, x, y)

    values = [record["val_loss"] for record in result.history]
    stopped_epoch, best_epoch = reference_early_stopping(values, patience, min_delta)
    assert result.stop_reason == "early_stopped"
    assert result.stopped_epoch == stopped_epoch == len(values)
    assert result.best_epoch == best_epoch
    assert result.best_value == values[best_epoch - 1]


@pytest.mark.parametrize("restore_best", [True, False])
def test_early_stopping_restore_best(restore_best):
    """restore_best ends with the best epoch's parameters, and without it the run ends
    with the last epoch's."""
    x, y = blobs(n_samples=120, seed=1)
    stopping = {"monitor": "val_loss", "patience": 3, "restore_best": restore_best}
    spec = mlp_spec(3, epochs=60, validation_split=0.25, early_stopping=stopping)
    recorder = Recorder()
    trainer = core.make_trainer(spec, x, y, callback=recorder)

    result = trainer.run()

    assert result.stop_reason == "early_stopped"
    assert result.best_epoch is not None and result.best_epoch < len(result.history)
    expected_epoch = result.best_epoch if restore_best else len(result.history)
    assert np.array_equal(trainer.network.params, recorder.params[expected_epoch])


@pytest.mark.parametrize("mode", ["auto", "max"])
def test_early_stopping_val_accuracy_maximized(mode):
    """val_accuracy is maximized: the best epoch is the first with the highest accuracy."""
    x, y = blobs(n_samples=120, seed=1)
    stopping = {"monitor": "val_accuracy", "mode": mode, "patience": 4}
    spec = mlp_spec(3, epochs=60, validation_split=0.25, early_stopping=stopping)

    result = core.fit(spec, x, y)

    values = [record["val_accuracy"] for record in result.history]
    stopped_epoch, best_epoch = reference_early_stopping(values, 4, 0.0, direction="max")
    assert result.monitor == "val_accuracy"
    assert result.best_value == max(values)
    assert result.best_epoch == best_epoch == values.index(max(values)) + 1
    assert result.stopped_epoch == stopped_epoch


def test_early_stopping_accuracy_needs_classification():
    """Monitoring accuracy on a regression raises ValueError naming the monitor."""
    x, y = linear_regression_data()
    spec = regression_spec(early_stopping={"monitor": "train_accuracy"})

    with pytest.raises(ValueError, match="train_accuracy"):
        core.fit(spec, x, y)


# Callbacks and stopping ----------------------------------------------------------


@pytest.mark.parametrize(
    ("batch_size", "n_batches", "last_batch_size"),
    [(1, 10, 1), (3, 4, 1), (10, 1, 10), (15, 1, 10)],
)
def test_on_batch_end_once_per_batch(batch_size, n_batches, last_batch_size):
    """on_batch_end runs once per batch with its epoch, index and count, for batch sizes
    of 1, ragged, equal to and above the number of samples."""
    x, y = linear_regression_data(n_samples=10)
    recorder = Recorder()
    spec = regression_spec(epochs=2, batch_size=batch_size)
    trainer = core.make_trainer(spec, x, y, callback=recorder)
    batch_lengths = record_training_batch_lengths(trainer)

    result = trainer.run()

    expected = [(epoch, batch, n_batches) for epoch in (1, 2) for batch in range(1, n_batches + 1)]
    assert [(p.epoch, p.batch, p.n_batches) for p in recorder.batches] == expected
    assert all(math.isfinite(p.loss) for p in recorder.batches)
    assert recorder.records == result.history
    assert len(result.history) == 2
    assert batch_lengths[n_batches - 1] == last_batch_size
    assert sum(batch_lengths[:n_batches]) == 10


def test_batch_count_uses_training_split():
    """With a validation split, batches cover only the training rows."""
    x, y = linear_regression_data(n_samples=20)
    recorder = Recorder()

    core.fit(regression_spec(epochs=1, batch_size=4, validation_split=0.2), x, y, callback=recorder)

    assert [p.batch for p in recorder.batches] == [1, 2, 3, 4]
    assert recorder.batches[0].n_batches == 4


def test_cancel_stops_within_epoch():
    """request_stop from on_batch_end stops after that batch, keeps the last complete
    epoch's parameters and does not record the unfinished epoch."""
    x, y = linear_regression_data(n_samples=32)
    callback = StopAt(epoch=3, batch=2)
    trainer = core.make_trainer(regression_spec(epochs=5), x, y, callback=callback)

    result = trainer.run()

    assert result.stop_reason == "cancelled"
    assert result.stop_message == "stopped by the test"
    assert result.stopped_epoch == 3
    assert len(result.history) == 2
    assert (callback.batches[-1].epoch, callback.batches[-1].batch) == (3, 2)
    assert len(callback.batches) == 4 + 4 + 2
    assert np.array_equal(trainer.network.params, callback.params[2])


def test_cancel_in_first_batch_keeps_initial_params():
    """A stop in the first batch ends with the initial parameters and no history."""
    x, y = linear_regression_data(n_samples=32)
    trainer = core.make_trainer(regression_spec(), x, y, callback=StopAt(epoch=1, batch=1))
    initial = trainer.network.params.copy()

    result = trainer.run()

    assert result.stop_reason == "cancelled"
    assert result.history == []
    assert np.array_equal(trainer.network.params, initial)


def test_time_limit_stops_run():
    """A max_seconds that has already passed stops after the first batch as time_limit."""
    x, y = linear_regression_data(n_samples=32)

    result = core.fit(regression_spec(max_seconds=1e-9), x, y)

    assert result.stop_reason == "time_limit"
    assert result.history == []


# History -------------------------------------------------------------------------


def test_history_classification_keys():
    """Classification records carry losses, accuracies, lr and per-layer gradient norms."""
    x, y = blobs(n_samples=40)

    result = core.fit(mlp_spec(3, epochs=2, validation_split=0.25), x, y)

    record = result.history[0]
    assert set(record) == {
        "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
        "grad_norm.dense_0", "grad_norm.dense_2", "epoch_seconds",
    }  # fmt: skip
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert 0.0 <= record["train_accuracy"] <= 1.0


def test_history_regression_keys():
    """Regression records carry losses, mae and r2 for both splits."""
    x, y = linear_regression_data()

    result = core.fit(regression_spec(epochs=1, validation_split=0.25), x, y)

    assert {"train_mae", "train_r2", "val_mae", "val_r2"} <= set(result.history[0])
    columns = result.history_columns()
    assert columns["epoch"] == [1]


# Stops between and inside epochs -------------------------------------------------------


class _StopAt(core.Callback):
    """Request a stop at (epoch, batch), where batch None means at that epoch's end."""

    def __init__(self, epoch, batch=None):
        self.epoch, self.batch = epoch, batch
        self.state = None

    def on_batch_end(self, trainer, progress):
        if (progress.epoch, progress.batch) == (self.epoch, self.batch):
            trainer.request_stop("cancelled")
            self.state = trainer.state_dict().to_bytes()

    def on_epoch_end(self, trainer, record):
        if self.batch is None and record["epoch"] == self.epoch:
            trainer.request_stop("cancelled")


def test_mid_epoch_stop_state_resumes_exactly():
    """After a stop inside an epoch, state_dict is the last epoch boundary: resuming from
    it ends with the same weights as a run that was never stopped."""
    x, y = blobs(n_samples=64)
    spec = mlp_spec(3, epochs=4)
    uninterrupted = core.fit(spec, x, y)
    stopper = _StopAt(epoch=3, batch=2)
    core.fit(spec, x, y, callback=stopper)

    state = core.TrainingState.from_bytes(stopper.state)
    resumed = core.fit(spec, x, y, resume_from=state)

    assert state.epoch == 2
    for name, value in uninterrupted.params.items():
        assert np.array_equal(resumed.params[name], value), name


def test_stop_from_epoch_end_names_that_epoch():
    """A stop requested in on_epoch_end reports the epoch that just finished."""
    x, y = blobs(n_samples=64)

    result = core.fit(mlp_spec(3, epochs=5), x, y, callback=_StopAt(epoch=2))

    assert result.stopped_epoch == 2
    assert result.epochs_completed == 2


def test_float32_norm_overflow_is_not_divergence():
    """A finite float32 gradient whose squared norm overflows float32 is clipped, not
    reported as diverged."""
    spec = {
        "dataset": "test",
        "model": {"layers": [{"type": "dense", "units": 1, "bias": False,
                              "init": {"type": "zeros"}}]},
        "loss": {"type": "squared_error", "reduction": "sum"},
        "optimizer": {"type": "sgd", "lr": 0.001, "clip_grad_norm": 1.0},
        "training": {"epochs": 1, "batch_size": 1, "shuffle": False},
    }  # fmt: skip
    # loss = 1e36 fits float32, but the gradient 2e19 squared (4e38) does not.
    x, y = np.array([[10.0]]), np.array([1e18])

    result = core.fit(spec, x, y, task="regression")

    assert result.stop_reason == "completed"
    assert result.params["dense_0.weight"][0, 0] == pytest.approx(0.001, rel=1e-5)
