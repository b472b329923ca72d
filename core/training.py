"""The training loop: minibatches, validation, early stopping, divergence, callbacks.

One ``Trainer`` runs one job. Its state at any epoch boundary can be taken with
``state_dict`` and restored with ``load_state_dict``; a run resumed that way ends
with the same weights, bit for bit, as a run that was never interrupted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.checkpoint import TrainingState
from core.data import INIT_STREAM, TRAIN_STREAM, PreparedData, Targets, seed_stream
from core.losses import make_loss
from core.metrics import accuracy, mae, predict_classes, r2_from_sums, r2_score
from core.model import Model
from core.network import Network
from core.optimizers import clip_grad_norm, make_optimizer
from core.schedules import learning_rate
from core.spec import JobSpec

__all__ = ["BatchProgress", "Callback", "FitResult", "StopReason", "Trainer"]

StopReason = str  # completed | early_stopped | diverged | cancelled | time_limit


@dataclass(frozen=True)
class BatchProgress:
    epoch: int  # 1-based epoch in progress
    batch: int  # 1-based batch within the epoch
    n_batches: int
    loss: float  # this batch's loss


class Callback:
    """Hooks the loop calls; override what you need. Call ``trainer.request_stop`` to stop."""

    def on_batch_end(self, trainer: Trainer, progress: BatchProgress) -> None:
        """Called after every optimizer step."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        """Called after each complete epoch with its history record."""


@dataclass
class FitResult:
    """The outcome of a finished run."""

    history: list[dict[str, float]]  # one record per completed epoch
    params: dict[str, np.ndarray]  # "dense_0.weight": (n_in, units), ...
    stop_reason: StopReason
    stop_message: str | None
    stopped_epoch: int | None  # for diverged, the epoch in which it happened
    monitor: str
    best_epoch: int | None
    best_value: float | None
    model: Model
    n_parameters: int

    @property
    def epochs_completed(self) -> int:
        return len(self.history)

    def history_columns(self) -> dict[str, list[float]]:
        """Return the history as columns: ``{"epoch": [1, 2, ...], "train_loss": [...]}``."""
        keys = list(dict.fromkeys(key for record in self.history for key in record))
        return {key: [record.get(key, math.nan) for record in self.history] for key in keys}


class _EpochTotals:
    """Sums over an epoch's batches for the training loss, metrics and gradient norms."""

    def __init__(self, layer_names: list[str], n_outputs: int) -> None:
        self.loss = 0.0
        self.n_samples = 0
        self.n_correct = 0
        self.abs_error = 0.0
        self.sse = np.zeros(n_outputs)
        self.grad_norms = dict.fromkeys(layer_names, 0.0)
        self.n_batches = 0


class Trainer:
    """Runs the training loop of one spec on prepared data."""

    def __init__(self, spec: JobSpec, data: PreparedData, callback: Callback | None = None):
        self.spec = spec
        self.data = data
        self.callback = callback or Callback()
        self.loss = make_loss(data.loss)
        dtype = np.dtype(spec.training.dtype)
        self.network = Network(spec.model, data.x_train.shape[1], dtype)
        if self.network.n_outputs != data.n_outputs:
            last = len(spec.model.layers) - 1
            raise ValueError(
                f"model.layers[{last}].units is {self.network.n_outputs} but the data needs "
                f"{data.n_outputs} outputs for {data.loss.type}; set units to {data.n_outputs}"
            )
        self.network.initialize(seed_stream(spec.training.seed, INIT_STREAM))
        self.rng = seed_stream(spec.training.seed, TRAIN_STREAM)
        self.optimizer = make_optimizer(spec.optimizer, self.network.n_parameters, dtype)
        self.layer_slices = self.network.layer_slices()
        self.monitor = self._monitor_name()
        self.epoch = 0  # epochs completed
        self.history: list[dict[str, float]] = []
        self.elapsed_seconds = 0.0
        self.best_epoch: int | None = None
        self.best_value: float | None = None
        self.best_params: np.ndarray | None = None
        self.epochs_without_improvement = 0
        self.stop_reason: StopReason | None = None
        self.stop_message: str | None = None
        self.stopped_epoch: int | None = None
        self._epoch_start_params = self.network.params.copy()
        # Shuffled batches are gathered into this (min(batch_size, n_train), n_features) buffer.
        batch_rows = min(spec.training.batch_size, len(data.x_train))
        self._batch_buffer = np.empty((batch_rows, data.x_train.shape[1]), data.x_train.dtype)
        self._epoch_start_optimizer = self.optimizer.state_dict()
        self._epoch_start_rng = self.rng.bit_generator.state
        self._in_epoch = False

    def _monitor_name(self) -> str:
        stopping = self.spec.training.early_stopping
        if stopping is not None:
            if stopping.monitor.endswith("accuracy") and self.data.task != "classification":
                raise ValueError(
                    f"early_stopping.monitor {stopping.monitor!r} needs a classification task"
                )
            if stopping.monitor.endswith(("r2", "mae")) and self.data.task != "regression":
                raise ValueError(
                    f"early_stopping.monitor {stopping.monitor!r} needs a regression task"
                )
            return stopping.monitor
        return "val_loss" if self.data.x_val is not None else "train_loss"

    # Control ----------------------------------------------------------------

    def request_stop(self, reason: StopReason, message: str | None = None) -> None:
        """Ask the loop to stop after the current batch.

        A stop inside an epoch rewinds the trainer to that epoch's start (weights,
        optimizer state and RNG), so the unfinished epoch leaves no trace and
        ``state_dict`` afterwards is the state at the last epoch boundary.
        """
        if self.stop_reason is None:
            self.stop_reason, self.stop_message = reason, message
            self.stopped_epoch = self.epoch + 1 if self._in_epoch else self.epoch or None

    @property
    def should_stop(self) -> bool:
        return self.stop_reason is not None

    def run(self) -> FitResult:
        """Train until the epochs run out or something stops the run."""
        epochs = self.spec.training.epochs
        with np.errstate(all="ignore"):
            while self.epoch < epochs and not self.should_stop:
                self._run_epoch()
        if self.stop_reason is None:
            self.stop_reason = "completed"
        return self.result()

    # One epoch ----------------------------------------------------------------

    def _run_epoch(self) -> None:
        self._in_epoch = True
        try:
            self._train_epoch()
        finally:
            self._in_epoch = False

    def _remember_epoch_start(self) -> None:
        np.copyto(self._epoch_start_params, self.network.params)
        self._epoch_start_optimizer = self.optimizer.state_dict()
        self._epoch_start_rng = self.rng.bit_generator.state

    def _rewind_epoch(self) -> None:
        """Drop the unfinished epoch: restore the weights its history describes, and the
        optimizer and RNG states that go with them."""
        np.copyto(self.network.params, self._epoch_start_params)
        self.optimizer.load_state_dict(*self._epoch_start_optimizer)
        self.rng.bit_generator.state = self._epoch_start_rng

    def _train_epoch(self) -> None:
        started = time.perf_counter()
        epoch_number = self.epoch + 1
        lr = learning_rate(
            self.spec.schedule, self.spec.optimizer.lr, self.epoch, self.spec.training.epochs
        )
        self._remember_epoch_start()
        order, y = self._epoch_order()
        totals = _EpochTotals([name for name, _ in self.layer_slices], self.data.n_outputs)
        batch_size = self.spec.training.batch_size
        n_batches = math.ceil(len(y) / batch_size)

        for batch in range(n_batches):
            rows = slice(batch * batch_size, (batch + 1) * batch_size)
            x = self._batch_features(order, rows)
            loss = self._train_step(x, y.take(rows), lr, totals, epoch_number)
            if self.should_stop:
                break
            progress = BatchProgress(epoch_number, batch + 1, n_batches, loss)
            self.callback.on_batch_end(self, progress)
            self._check_time_limit(started)
            if self.should_stop:
                break
        if self.should_stop:
            self._rewind_epoch()
            return

        record = self._epoch_record(epoch_number, totals, lr)
        if not math.isfinite(record.get("val_loss", 0.0)):
            self._diverge(epoch_number, f"val_loss became {record['val_loss']}")
            self._rewind_epoch()
            return
        self.elapsed_seconds += time.perf_counter() - started
        record["epoch_seconds"] = time.perf_counter() - started
        self.history.append(record)
        self.epoch = epoch_number
        self._in_epoch = False
        self._update_early_stopping(record)
        self.callback.on_epoch_end(self, record)

    def _epoch_order(self) -> tuple[np.ndarray | None, Targets]:
        """Return this epoch's row order, drawn from ``rng`` (None without shuffling),
        and the training targets in that order."""
        if not self.spec.training.shuffle:
            return None, self.data.y_train
        order = self.rng.permutation(len(self.data.x_train))
        return order, self.data.y_train.take(order)

    def _batch_features(self, order: np.ndarray | None, rows: slice) -> np.ndarray:
        """Return the features of the batch at ``rows`` of the epoch order.

        Shuffled rows are gathered into ``_batch_buffer``, which the next call
        overwrites. That copies as much per epoch as one shuffled copy of x would,
        but into a small buffer that is still in cache for the batch's matmuls.
        """
        if order is None:
            return self.data.x_train[rows]
        index = order[rows]
        x = self._batch_buffer[: len(index)]
        # A permutation is always in range, and mode="clip" skips the bounds check
        # for which the default mode="raise" first copies into a temporary buffer.
        np.take(self.data.x_train, index, axis=0, out=x, mode="clip")
        return x

    def first_batch(self) -> tuple[np.ndarray, Targets, float]:
        """Draw the next epoch's first batch and learning rate exactly as ``run`` would.

        Returns x of shape (min(batch_size, n_train), n_features), its targets and
        the epoch's lr. The epoch's shuffle order comes from ``rng``, so a trainer
        that has drawn a batch here must not ``run`` afterwards: its shuffles would
        differ from an untouched run's.
        """
        lr = learning_rate(
            self.spec.schedule, self.spec.optimizer.lr, self.epoch, self.spec.training.epochs
        )
        order, y = self._epoch_order()
        rows = slice(0, self.spec.training.batch_size)
        # A copy, because a shuffled batch lives in a buffer that the next batch reuses.
        return self._batch_features(order, rows).copy(), y.take(rows), lr

    def _squared_norms(self, grads: np.ndarray) -> list[float]:
        """Return each layer's squared gradient norm. A float32 sum of squares overflows for norms
        above about 1.8e19, so finite gradients whose sum overflowed are summed again in
        float64; only a gradient that is itself non-finite gives an infinite norm."""
        squared = [float(np.dot(grads[s], grads[s])) for _, s in self.layer_slices]
        if not math.isfinite(sum(squared)) and np.isfinite(grads).all():
            wide = grads.astype(np.float64)
            squared = [float(np.dot(wide[s], wide[s])) for _, s in self.layer_slices]
        return squared

    def _train_step(
        self, x: np.ndarray, y: Targets, lr: float, totals: _EpochTotals, epoch_number: int
    ) -> float:
        network = self.network

        # forward pass and loss
        outputs = network.forward(x, training=True, rng=self.rng)  # (batch, n_outputs)
        loss, grad_outputs = self.loss.value_and_grad(outputs, y.values)

        # backward pass: dL/d(params) into network.grads
        network.backward(grad_outputs)
        grads = network.grads
        squared_norms = self._squared_norms(grads)
        total_norm = math.sqrt(sum(squared_norms))
        if not math.isfinite(loss):
            self._diverge(epoch_number, f"loss became {loss}")
            return loss
        if not math.isfinite(total_norm):
            self._diverge(epoch_number, "the gradient became non-finite")
            return loss

        # update, after clipping the gradient's global norm
        if self.spec.optimizer.clip_grad_norm is not None:
            clip_grad_norm(network.grads, total_norm, self.spec.optimizer.clip_grad_norm)
        self.optimizer.step(network.params, network.grads, lr)

        self._accumulate(totals, outputs, y, loss, squared_norms)
        return loss

    def _accumulate(
        self,
        totals: _EpochTotals,
        outputs: np.ndarray,
        y: Targets,
        loss: float,
        squared_norms: list[float],
    ) -> None:
        n = len(outputs)
        mean_reduction = self.data.loss.reduction == "mean"
        totals.loss += loss * n if mean_reduction else loss
        totals.n_samples += n
        totals.n_batches += 1
        for (name, _), squared in zip(self.layer_slices, squared_norms, strict=True):
            totals.grad_norms[name] += math.sqrt(squared)
        if y.labels is not None:
            totals.n_correct += int(np.count_nonzero(predict_classes(outputs) == y.labels))
        else:
            residual = outputs.astype(np.float64) - y.values
            totals.abs_error += float(np.abs(residual).sum())
            totals.sse += (residual**2).sum(axis=0)

    def _epoch_record(self, epoch_number: int, totals: _EpochTotals, lr: float) -> dict[str, float]:
        mean_reduction = self.data.loss.reduction == "mean"
        record: dict[str, float] = {
            "epoch": epoch_number,
            "train_loss": totals.loss / totals.n_samples if mean_reduction else totals.loss,
        }
        if self.data.task == "classification":
            record["train_accuracy"] = totals.n_correct / totals.n_samples
        else:
            y_train = self.data.y_train.values.astype(np.float64)
            sst = ((y_train - y_train.mean(axis=0)) ** 2).sum(axis=0)
            record["train_mae"] = totals.abs_error / (totals.n_samples * self.data.n_outputs)
            record["train_r2"] = r2_from_sums(totals.sse, sst)
        record.update(self._validation_metrics())
        record["lr"] = lr
        for name, total in totals.grad_norms.items():
            record[f"grad_norm.{name}"] = total / max(totals.n_batches, 1)
        return record

    def _validation_metrics(self) -> dict[str, float]:
        if self.data.x_val is None or self.data.y_val is None:
            return {}
        outputs = self.network.forward_in_chunks(self.data.x_val)
        targets = self.data.y_val
        metrics = {"val_loss": self.loss.value(outputs, targets.values)}
        if targets.labels is not None:
            metrics["val_accuracy"] = accuracy(outputs, targets.labels)
        else:
            metrics["val_mae"] = mae(outputs, targets.values)
            metrics["val_r2"] = r2_score(outputs, targets.values)
        return metrics

    # Stopping -----------------------------------------------------------------

    def _diverge(self, epoch_number: int, what: str) -> None:
        self.request_stop("diverged", f"training diverged in epoch {epoch_number}: {what}")
        self.stopped_epoch = epoch_number

    def _check_time_limit(self, started: float) -> None:
        limit = self.spec.training.max_seconds
        if limit is not None and self.elapsed_seconds + time.perf_counter() - started > limit:
            self.request_stop("time_limit", f"training reached max_seconds={limit:g}")

    def _is_improvement(self, value: float) -> bool:
        if not math.isfinite(value):
            return False  # NaN is never an improvement
        if self.best_value is None:
            return True
        stopping = self.spec.training.early_stopping
        min_delta = stopping.min_delta if stopping else 0.0
        direction = stopping.direction if stopping else "min"
        if direction == "min":
            return value < self.best_value - min_delta
        return value > self.best_value + min_delta

    def _update_early_stopping(self, record: dict[str, float]) -> None:
        value = record.get(self.monitor, math.nan)
        stopping = self.spec.training.early_stopping
        if self._is_improvement(value):
            self.best_value, self.best_epoch = value, self.epoch
            self.epochs_without_improvement = 0
            if stopping is not None and stopping.restore_best:
                self.best_params = self.network.params.copy()
            return
        self.epochs_without_improvement += 1
        if stopping is not None and self.epochs_without_improvement >= stopping.patience:
            self.stop_reason = "early_stopped"
            self.stopped_epoch = self.epoch
            self.stop_message = (
                f"{self.monitor} did not improve by more than {stopping.min_delta:g} for "
                f"{stopping.patience} epochs; best {self.best_value} at epoch {self.best_epoch}"
            )

    # Results and state ----------------------------------------------------------

    def result(self) -> FitResult:
        stopping = self.spec.training.early_stopping
        if stopping is not None and stopping.restore_best and self.best_params is not None:
            np.copyto(self.network.params, self.best_params)
        model = Model(
            self.spec,
            self.network,
            self.data.preprocessor,
            self.data.task,
            self.data.classes,
            self.data.feature_names,
            encoding=self.data.encoding,
        )
        return FitResult(
            history=self.history,
            params=self.network.parameters(),
            stop_reason=self.stop_reason or "completed",
            stop_message=self.stop_message,
            stopped_epoch=self.stopped_epoch,
            monitor=self.monitor,
            best_epoch=self.best_epoch,
            best_value=self.best_value,
            model=model,
            n_parameters=self.network.n_parameters,
        )

    def state_dict(self) -> TrainingState:
        """The full training state at the last epoch boundary, also when called mid-epoch.

        Only the loop's own decision to stop early is kept; a stop requested from
        outside (cancel, time limit, shutdown) is not, so a run resumed from this
        state trains on.
        """
        if self._in_epoch:
            params = self._epoch_start_params.copy()
            arrays, step_count = self._epoch_start_optimizer
            rng_state = self._epoch_start_rng
        else:
            params = self.network.params.copy()
            arrays, step_count = self.optimizer.state_dict()
            rng_state = self.rng.bit_generator.state
        named = {f"optimizer.{name}": value.copy() for name, value in arrays.items()}
        named["params"] = params
        if self.best_params is not None:
            named["best_params"] = self.best_params.copy()
        stopped_early = self.stop_reason == "early_stopped"
        meta: dict[str, Any] = {
            "epoch": self.epoch,
            "optimizer_steps": step_count,
            "rng": rng_state,
            "history": self.history,
            "elapsed_seconds": self.elapsed_seconds,
            "best_epoch": self.best_epoch,
            "best_value": self.best_value,
            "epochs_without_improvement": self.epochs_without_improvement,
            "stop_reason": self.stop_reason if stopped_early else None,
            "stop_message": self.stop_message if stopped_early else None,
            "stopped_epoch": self.stopped_epoch if stopped_early else None,
            "spec": self.spec.model_dump(mode="json"),
        }
        return TrainingState(named, meta)

    def load_state_dict(self, state: TrainingState) -> None:
        """Continue from ``state``, which must come from a run of the same spec."""
        own_spec = self.spec.model_dump(mode="json")
        for part in ("model", "loss", "optimizer", "schedule", "training", "preprocessing"):
            if state.meta.get("spec", {}).get(part) != own_spec.get(part):
                raise ValueError(f"the checkpoint was taken with a different {part!r} in the spec")
        arrays, meta = state.arrays, state.meta
        np.copyto(self.network.params, arrays["params"].astype(self.network.dtype, copy=False))
        optimizer_arrays = {
            name.removeprefix("optimizer."): value
            for name, value in arrays.items()
            if name.startswith("optimizer.")
        }
        self.optimizer.load_state_dict(optimizer_arrays, int(meta["optimizer_steps"]))
        self.best_params = arrays["best_params"].copy() if "best_params" in arrays else None
        self.rng.bit_generator.state = meta["rng"]
        self.epoch = int(meta["epoch"])
        self.history = [dict(record) for record in meta["history"]]
        self.elapsed_seconds = float(meta["elapsed_seconds"])
        self.best_epoch, self.best_value = meta["best_epoch"], meta["best_value"]
        self.epochs_without_improvement = int(meta["epochs_without_improvement"])
        self.stop_reason = meta.get("stop_reason")
        self.stop_message = meta.get("stop_message")
        self.stopped_epoch = meta.get("stopped_epoch")
