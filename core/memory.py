"""Estimate the memory a job takes while it trains, from its spec and its data's shape.

The estimate counts the arrays that ``core.data.prepare_data``, ``core.training.Trainer``
and a checkpoint allocate, in bytes, in two phases whose peaks do not overlap:

- preparation: the raw x as float64, the training rows gathered out of it, the
  prepared splits in the training dtype, and the temporaries of fitting and applying
  the preprocessing (NaN and infinity masks, the centred copy of ``std``). Loading a
  stored upload briefly keeps its compressed NPZ next to x, which this leaves out.
- training: the prepared splits and targets, each epoch's shuffle, the flat
  parameter vector, its gradient, the optimizer's state and scratch buffer, the
  epoch-start copies the trainer keeps to rewind an unfinished epoch, the
  best-weights copy (``restore_best``), and the activations of one batch and their
  gradients. On top of these comes the largest transient: the full validation pass,
  a checkpoint's copies (its arrays, the NPZ written to a buffer and the bytes taken
  from it), or the final weights file.

It leaves out the interpreter, the imported libraries and the BLAS buffers, so it
is the growth of a worker process while it runs the job.

NOTE: the per-value costs of the activation temporaries and of the history are
approximations. ``tests/core/test_memory.py`` compares the whole estimate with the
peak resident set size of real runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.spec import Dense, Dropout, JobSpec, Task

__all__ = ["MemoryEstimate", "estimate_memory", "format_bytes"]

FLOAT64_BYTES = 8
INDEX_BYTES = 8  # int64 class labels, shuffle orders and split indices
# The validation pass runs the network on chunks of this many rows (Network.forward_in_chunks).
VALIDATION_CHUNK_ROWS = 4096
# Extra (n_samples, units) arrays an activation's forward and backward create at once,
# besides z and a: masks, slopes, and GELU's tanh terms.
ACTIVATION_TEMPORARIES = {
    "linear": 0,
    "relu": 1,
    "leaky_relu": 2,
    "elu": 3,
    "gelu": 5,
    "tanh": 2,
    "sigmoid": 3,
    "softplus": 3,
}
# Arrays of (n_val, n_outputs) float64 values the validation loss and metrics create.
VALIDATION_LOSS_TEMPORARIES = 4
# One value of one history record: a float and its key in the record's dict. In a
# checkpoint it also takes its JSON text, the numpy string array (4 bytes per character)
# that stores it in the NPZ, and the NPZ's two copies of that array.
HISTORY_BYTES_PER_VALUE = 600
# Per optimizer type: how many state arrays of n_parameters values it keeps.
OPTIMIZER_STATE_ARRAYS = {"sgd": 1, "adam": 2, "adamw": 2, "rmsprop": 2, "adagrad": 1}


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated bytes of a job in a worker, by phase and by part.

    ``preparation_bytes`` is the peak while the data are split and preprocessed.
    ``training_bytes`` is the peak while the job trains: the sum of the other parts.
    ``dataset_bytes`` covers the prepared splits, the targets and each epoch's
    shuffle. ``parameter_bytes`` covers the parameters, the gradient, the optimizer
    state and the copies the trainer keeps. ``activation_bytes`` covers one batch's
    activations and their gradients. ``transient_bytes`` is the largest of the
    validation pass, a checkpoint and the final weights file.
    """

    preparation_bytes: int
    dataset_bytes: int
    parameter_bytes: int
    activation_bytes: int
    history_bytes: int
    transient_bytes: int
    transient_part: str  # "validation pass", "checkpoint" or "weights file"

    @property
    def training_bytes(self) -> int:
        return (
            self.dataset_bytes
            + self.parameter_bytes
            + self.activation_bytes
            + self.history_bytes
            + self.transient_bytes
        )

    @property
    def peak_bytes(self) -> int:
        return max(self.preparation_bytes, self.training_bytes)

    def describe(self, dtype: str) -> str:
        """Return the estimate as one clause: the peak, then the phases and parts."""
        return (
            f"about {format_bytes(self.peak_bytes)} in a worker (preparing the data "
            f"{format_bytes(self.preparation_bytes)}; training "
            f"{format_bytes(self.training_bytes)}: dataset {format_bytes(self.dataset_bytes)} "
            f"as {dtype}, parameters and optimizer state {format_bytes(self.parameter_bytes)}, "
            f"activations {format_bytes(self.activation_bytes)}, history "
            f"{format_bytes(self.history_bytes)}, {self.transient_part} "
            f"{format_bytes(self.transient_bytes)})"
        )


@dataclass(frozen=True)
class _Shape:
    """The sizes the estimate needs, resolved from the spec and the data."""

    n_train: int
    n_val: int
    n_features: int
    n_outputs: int
    itemsize: int  # bytes per value in the training dtype
    target_row_bytes: int  # bytes of one row of prepared targets
    batch_rows: int


def estimate_memory(
    spec: JobSpec, n_samples: int, n_features: int, n_outputs: int, task: Task
) -> MemoryEstimate:
    """Estimate the memory of training ``spec`` on (n_samples, n_features) data.

    ``n_outputs`` is the width of the network's last layer, and ``task`` the task
    the training loop resolves for the data. The estimate needs no data and no
    allocation, so it runs at submit time.
    """
    shape = _shape(spec, n_samples, n_features, n_outputs, task)
    n_parameters, state_copies = _parameter_arrays(spec, n_features)
    parameter_bytes = n_parameters * shape.itemsize * state_copies
    transients = {
        "validation pass": _validation_bytes(spec, shape),
        "checkpoint": _checkpoint_bytes(spec, shape, n_parameters),
        "weights file": 4 * n_parameters * shape.itemsize,
    }
    transient_part = max(transients, key=lambda part: transients[part])
    return MemoryEstimate(
        preparation_bytes=_preparation_bytes(spec, shape, n_samples),
        dataset_bytes=_dataset_bytes(shape),
        parameter_bytes=parameter_bytes,
        activation_bytes=_batch_activation_bytes(spec, shape),
        history_bytes=_history_bytes(spec, shape),
        transient_bytes=transients[transient_part],
        transient_part=transient_part,
    )


def format_bytes(n_bytes: int) -> str:
    """Format a size with a binary unit: ``512 B``, ``3.4 MiB``, ``6.2 GiB``."""
    size = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _shape(spec: JobSpec, n_samples: int, n_features: int, n_outputs: int, task: Task) -> _Shape:
    split = spec.training.validation_split
    # The held-out count of core.split.split_indices.
    n_val = max(1, round(split * n_samples)) if split > 0 else 0
    n_train = max(n_samples - n_val, 1)
    itemsize = 4 if spec.training.dtype == "float32" else 8
    loss = spec.resolved_loss(task).type
    if loss == "cross_entropy":
        # Targets.take copies the labels twice: as the loss's values and as the labels.
        target_row_bytes = 2 * INDEX_BYTES
    elif loss == "binary_cross_entropy":
        target_row_bytes = itemsize + INDEX_BYTES
    else:
        target_row_bytes = n_outputs * itemsize
    return _Shape(
        n_train=n_train,
        n_val=n_val,
        n_features=n_features,
        n_outputs=n_outputs,
        itemsize=itemsize,
        target_row_bytes=target_row_bytes,
        batch_rows=min(spec.training.batch_size, n_train),
    )


# Preparing the data ---------------------------------------------------------------


def _preparation_bytes(spec: JobSpec, shape: _Shape, n_samples: int) -> int:
    """Estimate the peak of ``prepare_data``: the raw float64 x plus its largest step's copies."""
    n_values = n_samples * shape.n_features
    train_values = shape.n_train * shape.n_features
    val_values = shape.n_val * shape.n_features
    raw = FLOAT64_BYTES * n_values + n_samples * (FLOAT64_BYTES + shape.target_row_bytes)
    preprocessing = spec.preprocessing
    fitted = preprocessing.standardize or preprocessing.impute != "none"
    # Data with NaN to impute fail the quick finite-sum check and get an infinity mask.
    check = n_values if preprocessing.impute != "none" else 0
    # With a validation split, the training rows are gathered out of x into a float64
    # copy that lives until the end. Without one, x itself is the training part.
    gathered = FLOAT64_BYTES * train_values if shape.n_val else 0
    # fit_preprocessor: std's centred copy, and nanmean's or nanmedian's copy, mask and
    # filled result.
    fit = gathered
    if preprocessing.standardize:
        fit += FLOAT64_BYTES * train_values
    if preprocessing.impute != "none":
        fit += (2 * FLOAT64_BYTES + 1) * train_values
    # Transforming makes the result in the training dtype, plus NaN and infinity masks
    # when a fitted preprocessor runs.
    masks = 2 if fitted else 0
    transform_train = gathered + (shape.itemsize + masks) * train_values
    transform_val = (
        gathered
        + shape.itemsize * train_values
        + (FLOAT64_BYTES + shape.itemsize + masks) * val_values
    )
    return raw + max(check, fit, transform_train, transform_val)


# Training ----------------------------------------------------------------------------


def _dataset_bytes(shape: _Shape) -> int:
    """Count the prepared splits and targets, each epoch's shuffled order and targets, and
    the batch buffer that shuffled rows are gathered into."""
    n_rows = shape.n_train + shape.n_val
    prepared = shape.itemsize * n_rows * shape.n_features + shape.target_row_bytes * n_rows
    shuffle = shape.n_train * (INDEX_BYTES + shape.target_row_bytes)
    batch_buffer = shape.batch_rows * shape.n_features * shape.itemsize
    return prepared + shuffle + batch_buffer


def _parameter_arrays(spec: JobSpec, n_features: int) -> tuple[int, int]:
    """Return the parameter count and how many arrays of that size training keeps.

    They are the parameters, the gradient, the optimizer's state arrays and scratch
    buffer, the epoch-start copies of the parameters and the optimizer state, and
    the best parameters when early stopping restores them. Renewing the epoch-start
    optimizer copies briefly keeps the old ones too.
    """
    n_parameters = 0
    width = n_features
    for layer in spec.model.layers:
        if isinstance(layer, Dense):
            n_parameters += width * layer.units + (layer.units if layer.bias else 0)
            width = layer.units
    n_state = OPTIMIZER_STATE_ARRAYS[spec.optimizer.type]
    copies = 2 + n_state + 1 + 1 + 2 * n_state + (1 if _keeps_best(spec) else 0)
    return n_parameters, copies


def _keeps_best(spec: JobSpec) -> bool:
    stopping = spec.training.early_stopping
    return stopping is not None and stopping.restore_best


def _checkpoint_bytes(spec: JobSpec, shape: _Shape, n_parameters: int) -> int:
    """Return the bytes of one checkpoint: its state copies, the NPZ buffer, and its bytes."""
    n_state = OPTIMIZER_STATE_ARRAYS[spec.optimizer.type]
    arrays = (1 + n_state + (1 if _keeps_best(spec) else 0)) * n_parameters * shape.itemsize
    return 3 * arrays


def _history_bytes(spec: JobSpec, shape: _Shape) -> int:
    """Return the bytes of the history records kept in memory and written to checkpoints."""
    n_dense = sum(isinstance(layer, Dense) for layer in spec.model.layers)
    # epoch, train_loss, train metrics, val_loss, val metrics, lr, epoch_seconds, grad norms
    n_values = 4 + 2 + (3 if shape.n_val else 0) + n_dense
    return spec.training.epochs * n_values * HISTORY_BYTES_PER_VALUE


def _layer_widths(spec: JobSpec, n_features: int) -> list[tuple[str, int, int]]:
    """Return (kind or activation, input width, output width) for each layer."""
    widths: list[tuple[str, int, int]] = []
    width = n_features
    for layer in spec.model.layers:
        if isinstance(layer, Dense):
            widths.append((layer.activation.type, width, layer.units))
            width = layer.units
        else:
            assert isinstance(layer, Dropout)
            widths.append(("dropout", width, width))
    return widths


def _batch_activation_bytes(spec: JobSpec, shape: _Shape) -> int:
    """Return the bytes of one training batch: every layer's retained arrays, plus the
    largest layer's temporaries.

    A dense layer keeps z and a (one array for linear) until the next batch, and a
    dropout layer its mask and output. The backward pass adds dL/d(input) and the
    activation's temporaries, one layer at a time.
    """
    rows = shape.batch_rows
    retained = 0
    largest_step = 0
    for kind, n_in, units in _layer_widths(spec, shape.n_features):
        if kind == "dropout":
            retained += 2 * rows * units * shape.itemsize
            step = rows * units * (shape.itemsize + 1)
        else:
            retained += (1 if kind == "linear" else 2) * rows * units * shape.itemsize
            step = rows * (n_in + ACTIVATION_TEMPORARIES[kind] * units) * shape.itemsize
        largest_step = max(largest_step, step)
    loss = VALIDATION_LOSS_TEMPORARIES * rows * shape.n_outputs * FLOAT64_BYTES
    return retained + largest_step + loss


def _validation_bytes(spec: JobSpec, shape: _Shape) -> int:
    """Return the bytes of the validation pass: one chunk's layer arrays, the outputs, and
    the loss's temporaries."""
    if shape.n_val == 0:
        return 0
    rows = min(shape.n_val, VALIDATION_CHUNK_ROWS)
    largest_layer = 0
    for kind, n_in, units in _layer_widths(spec, shape.n_features):
        temporaries = 1 if kind == "dropout" else 2 + ACTIVATION_TEMPORARIES[kind]
        largest_layer = max(largest_layer, rows * (n_in + temporaries * units) * shape.itemsize)
    # The chunks' outputs and their concatenation, then the loss and metrics on them.
    outputs = 2 * shape.n_val * shape.n_outputs * shape.itemsize
    loss = VALIDATION_LOSS_TEMPORARIES * shape.n_val * shape.n_outputs * FLOAT64_BYTES
    return largest_layer + outputs + loss
